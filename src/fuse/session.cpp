// session.cpp: the ops table, init (capabilities) and the helpers every handler uses.
#include <linux/capability.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

#include "src/fuse/frontend.h"

namespace vnopfs::fuse {

frontend& fe(fuse_req_t req) { return *static_cast<frontend*>(fuse_req_userdata(req)); }

namespace {

// Supplementary groups as fuse_req_getgroups reads them (/proc/PID/task/PID/status: an open, a formatted
// read of some 50 lines and a close, per request). A stat loop by a non-root user asked for them on every
// LOOKUP; each worker thread now keeps the last few answers for kGroupsTtlNs, keyed by the caller's thread
// id and credentials. A caller's setgroups(2) is therefore seen within that bound (the kernel sends the
// thread's id; a reused id with the same uid and gid inside the bound is the only other way to be stale).
constexpr uint64_t kGroupsTtlNs = 100'000'000;  // 100 ms
constexpr size_t kGroupsSlots = 8;

struct groups_slot {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t at_ns = 0;
  std::vector<gid_t> groups;
};

uint64_t mono_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

void read_groups(fuse_req_t req, std::vector<gid_t>* out) {
  out->clear();
  gid_t small[64];
  int n = fuse_req_getgroups(req, 64, small);
  if (n > 64) {
    std::vector<gid_t> big(static_cast<size_t>(n));
    n = fuse_req_getgroups(req, n, big.data());
    if (n > 0) out->assign(big.begin(), big.begin() + std::min<size_t>(static_cast<size_t>(n), big.size()));
  } else if (n > 0) {
    out->assign(small, small + n);
  }
}

const std::vector<gid_t>& caller_groups(fuse_req_t req, const fuse_ctx* c) {
  thread_local groups_slot slots[kGroupsSlots];
  groups_slot& s = slots[static_cast<size_t>(c->pid) % kGroupsSlots];
  uint64_t now = mono_ns();
  if (s.pid != c->pid || s.uid != c->uid || s.gid != c->gid || s.at_ns == 0 || now - s.at_ns > kGroupsTtlNs) {
    read_groups(req, &s.groups);
    s.pid = c->pid;
    s.uid = c->uid;
    s.gid = c->gid;
    s.at_ns = now ? now : 1;
  }
  return s.groups;
}

}  // namespace

vfs_context make_context(fuse_req_t req, bool with_groups) {
  const fuse_ctx* c = fuse_req_ctx(req);
  vfs_context ctx;
  ctx.uid = c->uid;
  ctx.gid = c->gid;
  ctx.pid = c->pid;
  ctx.umask = c->umask;
  // Only where permissions matter, and not for root (uid 0 passes every check).
  if (with_groups && c->uid != 0) ctx.groups = caller_groups(req, c);
  return ctx;
}

vfs_context::cap caller_fsetid(fuse_req_t req) {
  const fuse_ctx* c = fuse_req_ctx(req);
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%lu/task/%lu/status", static_cast<unsigned long>(c->pid),
                static_cast<unsigned long>(c->pid));
  std::FILE* fp = std::fopen(path, "re");
  if (!fp) return vfs_context::cap::unknown;
  char line[256];
  vfs_context::cap r = vfs_context::cap::unknown;
  while (std::fgets(line, sizeof line, fp)) {
    unsigned long long eff;
    if (std::sscanf(line, "CapEff: %llx", &eff) == 1) {
      r = (eff >> CAP_FSETID) & 1 ? vfs_context::cap::yes : vfs_context::cap::no;
      break;
    }
  }
  std::fclose(fp);
  return r;
}

void set_fsetid_from_kernel(const frontend& f, bool kill_bit, vfs_context* ctx) {
  if (f.kinit.killpriv_v2) ctx->fsetid = kill_bit ? vfs_context::cap::no : vfs_context::cap::yes;
}

void vattr_to_stat(const vnode_attr& va, struct stat* st) {
  std::memset(st, 0, sizeof *st);
  st->st_ino = va.va_fileid;
  st->st_mode = va.va_mode;
  st->st_nlink = va.va_nlink;
  st->st_uid = va.va_uid;
  st->st_gid = va.va_gid;
  st->st_rdev = va.va_rdev;
  st->st_size = va.va_size;
  st->st_blksize = va.va_blksize ? va.va_blksize : 4096;
  st->st_blocks = static_cast<blkcnt_t>(va.va_blocks);
  st->st_atim = va.va_atime;
  st->st_mtim = va.va_mtime;
  st->st_ctim = va.va_ctime;
}

int vn_stat(vnode* vp, const vfs_context& ctx, struct stat* st, uint32_t* gen) {
  vnode_attr va;
  TRY(VNOP_GETATTR(vp, &va, const_cast<vfs_context*>(&ctx)));
  vattr_to_stat(va, st);
  if (gen) *gen = va.va_gen;
  return 0;
}

int make_entry(fuse_req_t req, vnode* vp, const vfs_context& ctx, fuse_entry_param* e) {
  frontend& f = fe(req);
  std::memset(e, 0, sizeof *e);
  uint32_t gen = 0;
  TRY(vn_stat(vp, ctx, &e->attr, &gen));
  e->ino = f.inodes->to_fuse(vp->v_id);
  e->generation = gen;
  e->attr_timeout = f.attr_timeout;
  e->entry_timeout = f.entry_timeout;
  f.inodes->add_lookup(vp);
  return 0;
}

void reply_entry(fuse_req_t req, const fuse_entry_param& e) {
  frontend& f = fe(req);
  if (fuse_reply_entry(req, &e) != 0 && e.ino != 0) f.inodes->forget(e.ino, 1);
}

bool name_ok(const frontend& f, const char* name, int* err) {
  size_t n = std::strlen(name);
  if (n == 0) { *err = ENOENT; return false; }
  if (n > f.name_max) { *err = ENAMETOOLONG; return false; }
  return true;
}

namespace {

void ll_init(void* userdata, fuse_conn_info* conn) {
  auto* f = static_cast<frontend*>(userdata);
  const config::options& o = *f->opts;
  // 1 MiB writes (libfuse derives max_pages from it); reads as large.
  conn->max_write = 1u << 20;
  conn->max_readahead = 1u << 20;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  auto want = [&](unsigned cap) { if (conn->capable & cap) conn->want |= cap; };
  auto unwant = [&](unsigned cap) { conn->want &= ~cap; };
  want(FUSE_CAP_ASYNC_READ);
  want(FUSE_CAP_ATOMIC_O_TRUNC);     // open(O_TRUNC) truncates in VNOP order, no separate SETATTR
  want(FUSE_CAP_EXPORT_SUPPORT);     // lookups of "." and ".." for forgotten inodes (file handles)
  want(FUSE_CAP_PARALLEL_DIROPS);    // lookups/readdirs of one directory in parallel: the vnode lock orders
  want(FUSE_CAP_CACHE_SYMLINKS);     // a symlink's target never changes
  want(FUSE_CAP_AUTO_INVAL_DATA);
  want(FUSE_CAP_IOCTL_DIR);          // chattr/lsattr on directories (ioctl.cpp)
  // Killpriv v1 and v2: the kernel stops clearing suid/sgid with a GETATTR + mode SETATTR of its own after
  // a write, truncate or chown (fuse_setattr), and with v2 (SB_NOSEC) stops asking GETXATTR
  // security.capability before every write(2). ext2 does both itself as Linux decides them: set-ID bits in
  // VNOP_WRITE, VNOP_SETATTR (size, owner), VNOP_ALLOCATE (setattr_should_drop_suidgid; CAP_FSETID from the
  // request's KILL_SUIDGID bit), the capability with them (ext2_xattr_kill_caps). libfuse 3.14 sends
  // neither; kernelio.cpp adds them.
  want(FUSE_CAP_HANDLE_KILLPRIV);
  // Splice buys nothing here: every byte is copied into the buffer cache anyway, and memory buffers map
  // straight to iovecs.
  unwant(FUSE_CAP_SPLICE_READ);
  unwant(FUSE_CAP_SPLICE_WRITE);
  unwant(FUSE_CAP_SPLICE_MOVE);
  // POSIX ACLs: the kernel enforces them (and turns default_permissions on) and leaves the umask to us
  // (DONT_MASK): ext2 applies it, or the parent's default ACL instead (posix_acl_create).
  if (f->mp->mnt_flag & MNT_POSIXACL) {
    want(FUSE_CAP_POSIX_ACL);
    want(FUSE_CAP_DONT_MASK);
  } else {
    unwant(FUSE_CAP_POSIX_ACL);
    unwant(FUSE_CAP_DONT_MASK);
  }
  if (o.kcache_mode == config::kcache::writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    f->writeback = true;
  } else {
    unwant(FUSE_CAP_WRITEBACK_CACHE);
    f->writeback = false;
  }
  conn->time_gran = f->time_gran;
  // libfuse 3.14 drops these from its reply; kernelio.cpp adds them (when installed).
  f->kinit.add = init_flags_libfuse_drops(conn->want, o.killpriv_v2);
}

void ll_destroy(void*) {
  // The daemon unmounts the filesystem (VFS_UNMOUNT) after the session loop has returned: see main.cpp.
}

const fuse_lowlevel_ops kOps = [] {
  fuse_lowlevel_ops ops{};
  ops.init = ll_init;
  ops.destroy = ll_destroy;
  ops.lookup = ll_lookup;
  ops.forget = ll_forget;
  ops.forget_multi = ll_forget_multi;
  ops.getattr = ll_getattr;
  ops.setattr = ll_setattr;
  ops.readlink = ll_readlink;
  ops.mknod = ll_mknod;
  ops.mkdir = ll_mkdir;
  ops.unlink = ll_unlink;
  ops.rmdir = ll_rmdir;
  ops.symlink = ll_symlink;
  ops.rename = ll_rename;
  ops.link = ll_link;
  ops.open = ll_open;
  ops.create = ll_create;
  ops.read = ll_read;
  ops.write = ll_write;
  ops.write_buf = ll_write_buf;
  ops.flush = ll_flush;
  ops.release = ll_release;
  ops.fsync = ll_fsync;
  ops.opendir = ll_opendir;
  ops.readdir = ll_readdir;
  ops.readdirplus = ll_readdirplus;
  ops.releasedir = ll_releasedir;
  ops.fsyncdir = ll_fsyncdir;
  ops.statfs = ll_statfs;
  ops.setxattr = ll_setxattr;
  ops.getxattr = ll_getxattr;
  ops.listxattr = ll_listxattr;
  ops.removexattr = ll_removexattr;
  ops.access = ll_access;
  ops.fallocate = ll_fallocate;
  ops.lseek = ll_lseek;
  ops.copy_file_range = ll_copy_file_range;
  ops.ioctl = ll_ioctl;
  return ops;
}();

}  // namespace

const fuse_lowlevel_ops* lowlevel_ops() { return &kOps; }

}  // namespace vnopfs::fuse

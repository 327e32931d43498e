// frontend.h: the FUSE low-level frontend's shared state (only src/fuse/ sees FUSE headers).
//
// Every FUSE request becomes one VNOP call: the handler builds a uio over the request's buffers, an ioflag
// from the open flags and a vfs_context from the request's credentials, takes the vnode locks vnop.def asks
// for, calls the VNOP and sends exactly one reply. Handlers are `do_*` helpers that return an errno: 0 means
// "replied", anything else is replied by the caller (`run`) with fuse_reply_err. No exception crosses the
// FUSE boundary (bad_alloc -> ENOMEM, anything else -> EIO).
//
// FUSE inode numbers and lookup counts are the frontend's: an inode table maps a FUSE ino to its vnode, the
// kernel's lookup count and the number of open handles, holding one usecount (vnode_ref) per entry. An entry
// (and its usecount) goes when the lookup count is 0 and no handle is open: that is when an unlinked file
// can be freed (VNOP_INACTIVE). FUSE ino = ext2 inode number, except the root (FUSE_ROOT_ID = 1).
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "src/config/options.h"
#include "vnopfs/context.h"
#include "vnopfs/mount.h"
#include "vnopfs/result.h"
#include "vnopfs/vnops.h"

namespace vnopfs::fuse {

class inode_table {
 public:
  explicit inode_table(mount* mp) : mp_(mp) {}
  // Pins the root vnode (one usecount until release_all). vp has an iocount (kept by the caller).
  void set_root(vnode* vp);
  uint64_t root_id() const { return root_id_; }

  fuse_ino_t to_fuse(uint64_t vid) const { return vid == root_id_ ? FUSE_ROOT_ID : vid; }
  uint64_t to_vid(fuse_ino_t ino) const { return ino == FUSE_ROOT_ID ? root_id_ : ino; }

  // The vnode of ino with +iocount (vnode_put it). An ino the kernel has already forgotten (NFS-style
  // file handles, lookups of "." and "..") is found again through VFS_VGET.
  int get(fuse_ino_t ino, vnode** vpp);
  // The vnode's VX_* facts (vnode.h) if the table holds ino, else 0 ("unknown"). No iocount, no VNOP: the
  // table's usecount keeps the vnode alive while the table lock is held.
  uint32_t facts(fuse_ino_t ino);
  // Counts one lookup the kernel is about to get (entry reply, create, readdirplus). vp has an iocount.
  void add_lookup(vnode* vp);
  // Subtracts n lookups; the entry goes when nothing holds it.
  void forget(fuse_ino_t ino, uint64_t n);
  // An open handle keeps the entry (and the vnode) alive: open/create/opendir, release/releasedir.
  void add_open(vnode* vp);
  void drop_open(fuse_ino_t ino);
  // At unmount: drops every entry and the root (the kernel never forgets them all).
  void release_all();
  size_t size();

 private:
  struct entry {
    vnode* vp;
    uint64_t nlookup;
    uint32_t nopen;
  };
  void drop_if_unused(std::unique_lock<std::mutex>& g, std::unordered_map<fuse_ino_t, entry>::iterator it);

  mount* mp_;
  uint64_t root_id_ = 0;
  vnode* root_ = nullptr;
  std::mutex mu_;
  std::unordered_map<fuse_ino_t, entry> map_;
};

// An open file or directory: fi->fh points at one.
struct handle {
  vnode* vp;       // kept alive by the inode table's entry (nopen)
  fuse_ino_t ino;
  int flags;       // open flags
  // The file size as this handle last saw it: a write ending at or below it takes the vnode lock shared
  // (ext2's rule: shared inside EOF, exclusive to extend or append; a wrong guess costs one ERESTART).
  std::atomic<off_t> size_hint{0};
};

// What INIT negotiated, as the kernel saw it (kernelio.cpp fills it while INIT is answered; read after).
struct kernel_init {
  uint64_t add = 0;       // FUSE_* INIT bits ll_init wants that libfuse 3.14 would drop
  uint64_t offered = 0;   // the kernel's INIT flags
  uint64_t replied = 0;   // our reply's flags (0: the hook did not see INIT)
  bool killpriv_v2 = false;  // FUSE_HANDLE_KILLPRIV_V2 sent: the daemon removes privileges on its own
  uint32_t major = 0, minor = 0;
  uint32_t max_write = 0, max_pages = 0, max_readahead = 0;
  std::atomic<uint64_t> unique{0};  // the INIT request's id until it is answered
};

class page_invalidator;

struct frontend {
  mount* mp = nullptr;
  const config::options* opts = nullptr;
  inode_table* inodes = nullptr;
  fuse_session* se = nullptr;  // the session, for notify_inval (set once before the session loop)
  page_invalidator* inval = nullptr;  // page-cache invalidation off the workers' path (invalidator.h)
  double attr_timeout = 1.0;
  double entry_timeout = 1.0;
  unsigned time_gran = 1;  // ns: the finest time the mounted filesystem keeps (mount::mnt_time_gran)
  size_t name_max = 255;   // the mounted filesystem's name limit (VFS_STATFS f_namemax), set at mount
  bool writeback = false;  // FUSE writeback cache granted by the kernel
  bool direct_io = false;  // kcache=none
  kernel_init kinit;
};

// Installs the session's custom /dev/fuse I/O (kernelio.cpp), which sends the INIT flags libfuse 3.14
// drops (parallel dirops, handle_killpriv). Call after fuse_session_mount, before the session loop.
// Returns 0 or an errno; on failure the session keeps libfuse's own I/O (and the flags stay off).
int install_kernel_io(fuse_session* se);
// The FUSE_* INIT bits for the FUSE_CAP_* in want that libfuse 3.14 leaves out of its reply, plus
// FUSE_HANDLE_KILLPRIV_V2 (which 3.14 cannot ask for) when killpriv_v2.
uint64_t init_flags_libfuse_drops(unsigned want, bool killpriv_v2);
// Whether the request this thread is handling (opcode, ino) came with FUSE_WRITE_KILL_SUIDGID or
// FUSE_OPEN_KILL_SUIDGID (the kernel's "the caller lacks CAP_FSETID"), as the read hook saw it.
bool request_kills_suidgid(uint32_t opcode, fuse_ino_t ino);

// The ops table (session.cpp).
const fuse_lowlevel_ops* lowlevel_ops();

// Helpers shared by the handler files.
frontend& fe(fuse_req_t req);
// Credentials of the request. With_groups: supplementary groups too (read from /proc, so only for ops
// that check permissions, and not for root).
vfs_context make_context(fuse_req_t req, bool with_groups);
// The caller's CAP_FSETID from its effective capabilities (/proc/PID/task/PID/status): for chown and
// fallocate, which carry no KILL_SUIDGID bit. unknown if the caller is gone.
vfs_context::cap caller_fsetid(fuse_req_t req);
// ctx.fsetid for a request that kills set-ID bits (write, truncate, open O_TRUNC): the kernel sends the
// KILL_SUIDGID bit exactly when the caller lacks CAP_FSETID, under FUSE_HANDLE_KILLPRIV_V2 only.
void set_fsetid_from_kernel(const frontend& f, bool kill_bit, vfs_context* ctx);
// Fills st from a VNOP_GETATTR of vp (vp unlocked by the caller).
int vn_stat(vnode* vp, const vfs_context& ctx, struct stat* st, uint32_t* gen = nullptr);
void vattr_to_stat(const vnode_attr& va, struct stat* st);
// Builds the entry reply for vp (getattr) and counts the lookup. vp has an iocount.
int make_entry(fuse_req_t req, vnode* vp, const vfs_context& ctx, fuse_entry_param* e);
// Replies an entry; on a failed send un-counts the lookup.
void reply_entry(fuse_req_t req, const fuse_entry_param& e);
// ENOENT for an empty name, ENAMETOOLONG past the mounted filesystem's limit (f.name_max).
bool name_ok(const frontend& f, const char* name, int* err);

// Runs a do_ helper: non-zero return -> fuse_reply_err; exceptions -> ENOMEM/EIO.
// Each request is counted in the mount's mnt_requests gate for its whole run, reply included: a swap of
// the layer stack (daemon.cpp) closes the gate, so a request runs wholly on one stack.
template <class F>
inline void run(fuse_req_t req, F&& f) noexcept {
  quiesce_hold counted(&fe(req).mp->mnt_requests);
  int err;
  try {
    err = f();
  } catch (const std::bad_alloc&) {
    err = ENOMEM;
  } catch (...) {
    err = EIO;
  }
  if (err != 0) fuse_reply_err(req, err);
}
// The same for requests that take no reply (forget): exceptions are swallowed.
template <class F>
inline void run_noreply(fuse_req_t req, F&& f) noexcept {
  quiesce_hold counted(&fe(req).mp->mnt_requests);
  try {
    f();
  } catch (...) {
  }
  fuse_reply_none(req);
}

// Handler groups (node.cpp, file.cpp, dir.cpp, xattr.cpp, ioctl.cpp).
void ll_lookup(fuse_req_t, fuse_ino_t, const char*);
void ll_forget(fuse_req_t, fuse_ino_t, uint64_t);
void ll_forget_multi(fuse_req_t, size_t, fuse_forget_data*);
void ll_getattr(fuse_req_t, fuse_ino_t, fuse_file_info*);
void ll_setattr(fuse_req_t, fuse_ino_t, struct stat*, int, fuse_file_info*);
void ll_readlink(fuse_req_t, fuse_ino_t);
void ll_mknod(fuse_req_t, fuse_ino_t, const char*, mode_t, dev_t);
void ll_mkdir(fuse_req_t, fuse_ino_t, const char*, mode_t);
void ll_unlink(fuse_req_t, fuse_ino_t, const char*);
void ll_rmdir(fuse_req_t, fuse_ino_t, const char*);
void ll_symlink(fuse_req_t, const char*, fuse_ino_t, const char*);
void ll_rename(fuse_req_t, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned int);
void ll_link(fuse_req_t, fuse_ino_t, fuse_ino_t, const char*);
void ll_statfs(fuse_req_t, fuse_ino_t);
void ll_access(fuse_req_t, fuse_ino_t, int);

void ll_open(fuse_req_t, fuse_ino_t, fuse_file_info*);
void ll_create(fuse_req_t, fuse_ino_t, const char*, mode_t, fuse_file_info*);
void ll_read(fuse_req_t, fuse_ino_t, size_t, off_t, fuse_file_info*);
void ll_write_buf(fuse_req_t, fuse_ino_t, fuse_bufvec*, off_t, fuse_file_info*);
void ll_write(fuse_req_t, fuse_ino_t, const char*, size_t, off_t, fuse_file_info*);
void ll_flush(fuse_req_t, fuse_ino_t, fuse_file_info*);
void ll_release(fuse_req_t, fuse_ino_t, fuse_file_info*);
void ll_fsync(fuse_req_t, fuse_ino_t, int, fuse_file_info*);
void ll_fallocate(fuse_req_t, fuse_ino_t, int, off_t, off_t, fuse_file_info*);
void ll_lseek(fuse_req_t, fuse_ino_t, off_t, int, fuse_file_info*);
void ll_copy_file_range(fuse_req_t, fuse_ino_t, off_t, fuse_file_info*, fuse_ino_t, off_t, fuse_file_info*,
                        size_t, int);

int dir_open(fuse_req_t, fuse_ino_t, fuse_file_info*);  // file.cpp: handles are shared
void dir_close(fuse_req_t, fuse_file_info*);
void ll_opendir(fuse_req_t, fuse_ino_t, fuse_file_info*);
void ll_readdir(fuse_req_t, fuse_ino_t, size_t, off_t, fuse_file_info*);
void ll_readdirplus(fuse_req_t, fuse_ino_t, size_t, off_t, fuse_file_info*);
void ll_releasedir(fuse_req_t, fuse_ino_t, fuse_file_info*);
void ll_fsyncdir(fuse_req_t, fuse_ino_t, int, fuse_file_info*);

void ll_setxattr(fuse_req_t, fuse_ino_t, const char*, const char*, size_t, int);
void ll_getxattr(fuse_req_t, fuse_ino_t, const char*, size_t);
void ll_listxattr(fuse_req_t, fuse_ino_t, size_t);
void ll_removexattr(fuse_req_t, fuse_ino_t, const char*);

void ll_ioctl(fuse_req_t, fuse_ino_t, unsigned int, void*, fuse_file_info*, unsigned, const void*, size_t, size_t);

}  // namespace vnopfs::fuse

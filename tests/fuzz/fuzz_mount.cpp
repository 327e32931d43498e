// fuzz_mount: a libFuzzer target that mounts the input as an ext2 image through the VNOP API, over an
// in-memory device, and walks it: readdir and lookup of every directory (bounded), getattr, reads,
// readlink, listxattr/getxattr of every object, then a few writes (create, write, setxattr, mkdir, rmdir,
// rename, unlink, truncate), a sync and the unmount. Any crash, sanitizer report, or hang (libFuzzer's
// -timeout) is a bug; errors (EIO for damage, a refused mount) are the expected answers.
// Two drivers call it (tests/fuzz/meson.build): libFuzzer (-Dfuzz=true under clang; scripts/fuzz) and
// fuzz_smoke (smoke.cpp, every build; tests/fuzz/smoke.sh in scripts/test).
#include <linux/falloc.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "src/dev/mem.h"
#include "vnopfs/context.h"
#include "vnopfs/device.h"
#include "vnopfs/mount.h"
#include "vnopfs/uio.h"
#include "vnopfs/vnode.h"
#include "vnopfs/vnops.h"
#include "vnops/registry.h"

using namespace vnopfs;

namespace {

constexpr size_t kMaxImage = 4u << 20;
constexpr int kMaxObjects = 300;
constexpr int kMaxEntries = 2000;

vfs_context* K() { return const_cast<vfs_context*>(&vfs_context::kernel()); }

struct entry {
  std::string name;
  uint64_t ino;
};

struct walker {
  int objects = 0;
  std::set<uint64_t> dirs;

  void visit(vnode* vp) {
    vnode_attr va;
    {
      vn_shared l(vp);
      (void)VNOP_GETATTR(vp, &va, K());
    }
    std::vector<char> buf(1 << 16);
    if (vp->v_type == vtype::VREG) {
      for (off_t off = 0; off < (256 << 10);) {
        uio u(buf.data(), buf.size(), off, UIO_READ);
        vn_shared l(vp);
        if (VNOP_READ(vp, &u, 0, K()) != 0) break;
        size_t n = buf.size() - u.resid();
        if (n == 0) break;
        off += off_t(n);
      }
    } else if (vp->v_type == vtype::VLNK) {
      uio u(buf.data(), buf.size(), 0, UIO_READ);
      vn_shared l(vp);
      (void)VNOP_READLINK(vp, &u, K());
    }
    size_t size = 0;
    int err;
    {
      vn_shared l(vp);
      err = VNOP_LISTXATTR(vp, static_cast<uio*>(nullptr), &size, 0, K());
    }
    if (err || size == 0 || size > buf.size()) return;
    uio u(buf.data(), size, 0, UIO_READ);
    {
      vn_shared l(vp);
      if (VNOP_LISTXATTR(vp, &u, &size, 0, K()) != 0) return;
    }
    std::string names(buf.data(), std::min(size, buf.size()));
    for (size_t i = 0; i < names.size();) {
      std::string name(names.c_str() + i);
      i += name.size() + 1;
      if (name.empty()) continue;
      std::vector<char> val(1 << 16);
      uio v(val.data(), val.size(), 0, UIO_READ);
      size_t vs = 0;
      vn_shared l(vp);
      (void)VNOP_GETXATTR(vp, name.c_str(), &v, &vs, 0, K());
    }
  }

  void walk(vnode* dvp, int depth) {
    if (depth > 16 || objects >= kMaxObjects) return;
    std::vector<entry> ents;
    int eof = 0;
    auto fill = [](void* p, const dirent_entry& e) -> int {
      auto* v = static_cast<std::vector<entry>*>(p);
      if (v->size() >= size_t(kMaxEntries)) return 1;
      v->push_back({std::string(e.name), e.ino});
      return 0;
    };
    {
      vn_shared l(dvp);
      if (VNOP_READDIR(dvp, uint64_t(0), +fill, static_cast<void*>(&ents), &eof, K()) != 0 && ents.empty()) return;
    }
    for (const entry& e : ents) {
      if (e.name == "." || e.name == ".." || objects >= kMaxObjects) continue;
      componentname cn{e.name.data(), e.name.size()};
      vnode* vp = nullptr;
      int err;
      {
        vn_shared l(dvp);
        err = VNOP_LOOKUP(dvp, &cn, &vp, K());
      }
      if (err) continue;
      objects++;
      visit(vp);
      if (vp->v_type == vtype::VDIR && dirs.insert(vp->v_id).second) walk(vp, depth + 1);
      vnode_put(vp);
    }
  }
};

int lookup1(vnode* dvp, const char* name, vnode** vpp) {
  componentname cn{name, std::strlen(name)};
  vn_shared l(dvp);
  return VNOP_LOOKUP(dvp, &cn, vpp, K());
}

// A few writes in the root; every error is an acceptable answer on a damaged image.
void write_a_little(vnode* root) {
  vnode_attr va;
  va.va_mode = S_IFREG | 0644;
  va.va_active = VA_MODE;
  componentname f{"fz_new", 6};
  vnode* vp = nullptr;
  int err;
  {
    vn_exclusive l(root);
    err = VNOP_CREATE(root, &f, &va, &vp, K());
  }
  if (err == 0) {
    std::string data(20000, 'z');
    {
      uio u(data.data(), data.size(), 0, UIO_WRITE);
      vn_exclusive l(vp);
      (void)VNOP_WRITE(vp, &u, 0, K());
    }
    {
      std::string x = "v";
      uio u(x.data(), x.size(), 0, UIO_WRITE);
      vn_exclusive l(vp);
      (void)VNOP_SETXATTR(vp, "user.fz", &u, 0, K());
    }
    {
      vnode_attr sa;
      sa.va_size = 5000;
      sa.va_active = VA_SIZE;
      vn_exclusive l(vp);
      (void)VNOP_SETATTR(vp, &sa, K());
    }
    // Paths the walk never takes: fallocate (allocate, punch, zero range), a write and a read that bypass
    // the cache (IO_NOCACHE, as O_DIRECT), and an fsync (the ordered data-then-metadata path).
    for (int mode : {0, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE}) {
      vn_exclusive l(vp);
      (void)VNOP_ALLOCATE(vp, mode, 1000, 30000, K());
    }
    {
      std::string blk(4096, 'd');
      uio u(blk.data(), blk.size(), 8192, UIO_WRITE);
      vn_exclusive l(vp);
      (void)VNOP_WRITE(vp, &u, IO_NOCACHE, K());
    }
    {
      std::string blk(4096, 0);
      uio u(blk.data(), blk.size(), 8192, UIO_READ);
      vn_shared l(vp);
      (void)VNOP_READ(vp, &u, IO_NOCACHE, K());
    }
    (void)VNOP_FSYNC(vp, MNT_WAIT, K());
    vnode_put(vp);
  }
  va.va_mode = S_IFDIR | 0755;
  componentname d{"fz_dir", 6};
  vnode* dp = nullptr;
  {
    vn_exclusive l(root);
    err = VNOP_MKDIR(root, &d, &va, &dp, K());
  }
  if (err == 0) {
    vn_lock_pair(root, dp);
    (void)VNOP_RMDIR(root, dp, &d, K());
    vn_unlock_pair(root, dp);
    vnode_put(dp);
  }
  vnode* fv = nullptr;
  if (lookup1(root, "fz_new", &fv) == 0) {
    componentname to{"fz_moved", 8};
    (void)VNOP_RENAME(root, fv, &f, root, static_cast<vnode*>(nullptr), &to, 0u, K());
    vnode_put(fv);
  }
  if (lookup1(root, "fz_moved", &fv) == 0) {
    componentname n{"fz_moved", 8};
    vn_lock_pair(root, fv);
    (void)VNOP_REMOVE(root, fv, &n, 0, K());
    vn_unlock_pair(root, fv);
    vnode_put(fv);
  }
}

bool registered = [] {
  vnops_register_filesystems();
  return true;
}();

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2048 || size > kMaxImage) return -1;  // smaller than a superblock's end: nothing to mount
  (void)registered;
  dev::mem_options o;
  o.size = (size + 4095) / 4096 * 4096;
  auto dev = dev::make_mem_device(o);
  if (!dev) return 0;
  if (dev::dev_sync_io(*dev, dev::io_op::write, 0, const_cast<uint8_t*>(data), size) != 0) return 0;
  auto mp = std::make_unique<mount>();
  mp->mnt_op = vfs_lookup_fs("ext2");
  mp->mnt_from = "fuzz";
  mp->mnt_device = dev.get();
  mount_args args;
  args.cache_bytes = 4u << 20;
  args.posix_acl = true;  // as the daemon mounts (-o acl is its default): ACLs are loaded with each inode
  if (VFS_MOUNT(mp.get(), args, vfs_context::kernel()) != 0) return 0;
  vnode* root = nullptr;
  if (VFS_ROOT(mp.get(), &root, vfs_context::kernel()) == 0) {
    walker w;
    w.visit(root);
    w.walk(root, 0);
    write_a_little(root);
    vnode_put(root);
  }
  (void)VFS_SYNC(mp.get(), MNT_WAIT, vfs_context::kernel());
  (void)VFS_UNMOUNT(mp.get(), true, vfs_context::kernel());
  return 0;
}

// mount.cpp: VFS_* calls, the filesystem registry and the log.
#include "vnopfs/mount.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>

namespace vnopfs {

int VFS_MOUNT(mount* mp, const mount_args& args, const vfs_context& ctx) { return mp->mnt_op->vfs_mount(mp, args, ctx); }
int VFS_UNMOUNT(mount* mp, bool force, const vfs_context& ctx) { return mp->mnt_op->vfs_unmount(mp, force, ctx); }
int VFS_ROOT(mount* mp, vnode** vpp, const vfs_context& ctx) { return mp->mnt_op->vfs_root(mp, vpp, ctx); }
int VFS_STATFS(mount* mp, struct statvfs* sbp, const vfs_context& ctx) { return mp->mnt_op->vfs_statfs(mp, sbp, ctx); }
int VFS_SYNC(mount* mp, int waitfor, const vfs_context& ctx) { return mp->mnt_op->vfs_sync(mp, waitfor, ctx); }
int VFS_VGET(mount* mp, uint64_t ino, vnode** vpp, const vfs_context& ctx) {
  return mp->mnt_op->vfs_vget(mp, ino, vpp, ctx);
}

namespace {
std::mutex& registry_mutex() { static std::mutex m; return m; }
std::map<std::string, const vfsops*>& registry() { static std::map<std::string, const vfsops*> r; return r; }
}  // namespace

void vfs_register_fs(const vfsops* ops) {
  std::lock_guard g(registry_mutex());
  registry()[ops->name] = ops;
}

const vfsops* vfs_lookup_fs(const std::string& name) {
  std::lock_guard g(registry_mutex());
  auto it = registry().find(name);
  return it == registry().end() ? nullptr : it->second;
}

void vfs_log(const char* level, const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "vnopfs: %s: %s\n", level, msg);
}

}  // namespace vnopfs

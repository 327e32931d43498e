// mount.h: a mounted filesystem and the VFS operations, after XNU bsd/sys/mount_internal.h.
//
// A mount owns: its device (src/dev/, the bottom of the I/O stack), its device vnode (metadata buffers by
// physical block, VSYSTEM), its buffer cache, its vnode hash and the filesystem's private data. The
// frontend (or a test) creates it with vfs_mount and ends it with vfs_unmount, which flushes everything and
// frees everything the mount owns.
#pragma once

#include <sys/statvfs.h>
#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "vnopfs/context.h"
#include "vnopfs/quiesce.h"
#include "vnopfs/vnode.h"

namespace vnopfs {

namespace dev { class device; }
class bufcache;
struct vfsops;
struct vnop_table;

enum : uint32_t {  // mnt_flag
  MNT_RDONLY = 0x1,
  MNT_SYNCHRONOUS = 0x2,  // every write is IO_SYNC (-o sync)
  MNT_NOATIME = 0x4,      // no atime updates; otherwise relatime rules unless MNT_STRICTATIME
  MNT_STRICTATIME = 0x8,  // every read updates atime
  MNT_NODIRATIME = 0x10,  // no atime updates on directories
  MNT_LAZYTIME = 0x20,    // timestamp-only changes stay in memory until fsync, sync, last reference or 12 h
                          // (Linux's lazytime: MNT_LAZY syncs skip them)
  MNT_POSIXACL = 0x40,    // the filesystem stores and applies POSIX ACLs (system.posix_acl_*)
  MNT_DIRSYNC = 0x80,     // directory changes are on the device before the op returns (-o dirsync; -o sync too)
};

struct mount {
  const vfsops* mnt_op = nullptr;
  uint32_t mnt_flag = 0;
  std::string mnt_from;           // the image path, for messages and df's source column
  dev::device* mnt_device = nullptr;  // not owned here: the daemon/test that built the device stack owns it
  vnode* mnt_devvp = nullptr;     // device vnode, created by the filesystem's mount with the cache
  bufcache* mnt_cache = nullptr;  // owned by the filesystem's mount, freed at unmount
  void* mnt_data = nullptr;       // the filesystem's private mount data
  // The table new vnodes get: the filesystem's, or a layer on top. Set by the filesystem's vfs_mount, and
  // changed while mounted only by vfs_set_vnops; read it with vfs_vnops().
  const vnop_table* mnt_vnops = nullptr;
  // The finest time step the filesystem stores, in ns (set by its vfs_mount): the frontend must not let the
  // kernel cache finer times than that. Limits such as the name length come from vfs_statfs.
  uint32_t mnt_time_gran = 1000000000u;

  // vnode hash and refcounts (vnode.h)
  std::mutex mnt_vnode_mutex;
  std::condition_variable mnt_vnode_cv;  // a terminating vnode is gone
  std::unordered_map<uint64_t, vnode*> mnt_vnodes;
  uint64_t mnt_vnode_count = 0;  // live vnodes, hashed or not
  // Tables vfs_set_vnops replaced (a vnode created on one before the change and hashed after gets the new).
  std::vector<const vnop_table*> mnt_vnops_retired;

  // The frontend's requests in progress (one count per FUSE request, around its VNOP calls): closed by
  // whoever changes what every request uses (vfs_set_vnops' caller). Threads of the mount's own (the
  // flusher, the syncer) do not count here: they may run while it is closed, so nothing a request waits for
  // waits on the gate (quiesce.h).
  quiesce_gate mnt_requests;
};

// Mount-time options the filesystem reads (the daemon fills them from -o and the JSON config).
struct mount_args {
  bool rdonly = false;
  bool synchronous = false;
  bool posix_acl = false;  // POSIX ACLs, if the format can store them (then MNT_POSIXACL)
  size_t cache_bytes = 256u << 20;   // buffer cache size
  uint32_t flush_age_ms = 30000;     // delayed writes older than this are written (bufcache_config)
  // A write whose whole-block part is at least this many bytes, to a file with no dirty buffer, skips the
  // buffer cache: its blocks go straight to the device from the request's memory (ext2 table; 0: never).
  size_t direct_min = 0;
  const vnop_table* layers = nullptr;  // nullptr: the filesystem's own table
  // MNT_UPDATE: change a mounted filesystem to rdonly (only that field counts; mnt_flag keeps its mount-time
  // value, VFS_STATFS's ST_RDONLY tells the state). To read-only: everything is flushed and the filesystem
  // marked clean, later writes get EROFS (the caller stops writers first); to read-write: marked in use
  // again (EROFS if it was never mounted read-write, or has errors).
  bool update = false;
};

// VFS operations, XNU's vfsops (mount, unmount, root, statfs, sync, vget).
struct vfsops {
  const char* name;
  // Reads and validates the on-disk format, sets up mp (cache, devvp, mnt_data). Errors: EINVAL (bad
  // format, with a log line naming the field and value), ENOTSUP (unsupported feature), EIO.
  int (*vfs_mount)(mount* mp, const mount_args& args, const vfs_context& ctx);
  // Flushes all dirty state, marks the filesystem clean, frees everything. EBUSY if vnodes are still
  // referenced and force is false.
  int (*vfs_unmount)(mount* mp, bool force, const vfs_context& ctx);
  int (*vfs_root)(mount* mp, vnode** vpp, const vfs_context& ctx);  // +iocount
  int (*vfs_statfs)(mount* mp, struct statvfs* sbp, const vfs_context& ctx);
  // MNT_WAIT: everything dirty written and waited for, then a device flush; MNT_NOWAIT: every file's data
  // write started and in-core metadata copied into delayed-write buffers, whose writes the flusher orders
  // (ext2: docs/durability.md); MNT_LAZY: only in-core metadata copied into delayed-write buffers (vnode.h). Safe to call
  // while other VNOPs run (it takes what VNOP_FSYNC takes). Returns the first error.
  int (*vfs_sync)(mount* mp, int waitfor, const vfs_context& ctx);
  int (*vfs_vget)(mount* mp, uint64_t ino, vnode** vpp, const vfs_context& ctx);  // +iocount
};

// Calls through mp->mnt_op.
int VFS_MOUNT(mount* mp, const mount_args& args, const vfs_context& ctx);
int VFS_UNMOUNT(mount* mp, bool force, const vfs_context& ctx);
int VFS_ROOT(mount* mp, vnode** vpp, const vfs_context& ctx);
int VFS_STATFS(mount* mp, struct statvfs* sbp, const vfs_context& ctx);
int VFS_SYNC(mount* mp, int waitfor, const vfs_context& ctx);
int VFS_VGET(mount* mp, uint64_t ino, vnode** vpp, const vfs_context& ctx);

// The mount's current top table (an acquire load: vfs_set_vnops may change it).
const vnop_table* vfs_vnops(const mount* mp);
// Replaces the VNOP table of the mount and of every vnode that has the current one (a layer stack swapped
// while mounted, docs/experiments.md). The caller holds mnt_requests closed, so no request runs; an op of
// the mount's own threads that started on the old table finishes on it, so the caller keeps the old table
// (and everything under it) alive until the unmount. Takes mnt_vnode_mutex. Returns the vnodes changed.
size_t vfs_set_vnops(mount* mp, const vnop_table* t);

// Filesystems by name ("ext2"), registered at startup by vnops/registry.cpp.
const vfsops* vfs_lookup_fs(const std::string& name);
void vfs_register_fs(const vfsops* ops);

// Logging: one line to stderr with a level prefix; the daemon may redirect it. printf-style.
void vfs_log(const char* level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
#define VLOG_ERR(...) ::vnopfs::vfs_log("error", __VA_ARGS__)
#define VLOG_WARN(...) ::vnopfs::vfs_log("warning", __VA_ARGS__)
#define VLOG_INFO(...) ::vnopfs::vfs_log("info", __VA_ARGS__)

}  // namespace vnopfs

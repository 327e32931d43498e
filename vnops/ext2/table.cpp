// table.cpp: the ext2 VNOP table, and the four tables of the registry made from it (ext2_variants).
//
// Ops that exist (everything else falls to the vnop.def default: err_* = ENOTSUP, nop_* = 0):
//   files:      read, write, fsync, strategy, bwrite (vn_bwrite), blockmap, getattr, setattr, access,
//               allocate (fallocate 0 / KEEP_SIZE / PUNCH_HOLE|KEEP_SIZE / ZERO_RANGE), ioctl (FIOSEEKDATA/HOLE,
//               FIOGETFLAGS/SETFLAGS), open (refuses writes to immutable / append-only files), inactive,
//               reclaim.
//   namespace:  lookup, create, mknod, mkdir, rmdir, remove, link, symlink, readlink, readdir, rename,
//               getxattr/setxattr/listxattr/removexattr.
// close is nop (ext2 keeps no per-open state).
//
// Locking for callers (the FUSE frontend), per vnop.def, plus ext2's rule for VNOP_WRITE (see ext2.h):
// take the vnode lock SHARED for a write that stays inside EOF, EXCLUSIVE for IO_APPEND or a write that may
// extend the file; a write holding it shared that would extend returns ERESTART: retry exclusive.
#include <mutex>

#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

vnop_table ext2_vnop_table;

void ext2_sync_table_init();  // syncpath.cpp

const std::vector<ext2_variant>& ext2_variants() {
  static const std::vector<ext2_variant> v = {
      {&ext2_vfsops, &ext2_vnop_table, ext2_wpath::cluster,
       "the cluster layer: write-behind clusters, read-ahead, runs coalesced into large writes (default)"},
      {&ext2_buf_vfsops, &ext2_vnop_table, ext2_wpath::buf,
       "the BSD buffer path: bread/bdwrite per block, no read-ahead, every block its own device write"},
      {&ext2_direct_vfsops, &ext2_vnop_table, ext2_wpath::direct,
       "file data never cached: reads and writes go from the caller's memory to the device"},
      {&ext2_sync_vfsops, &ext2_sync_vnop_table, ext2_wpath::sync,
       "every change (data and all metadata) on the device before the op returns"},
  };
  return v;
}

void ext2_table_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    vnop_table_build(&ext2_vnop_table, "ext2", {
        // files
        vnop_entry(ext2_vnop_read),
        vnop_entry(ext2_vnop_write),
        vnop_entry(ext2_vnop_fsync),
        vnop_entry(ext2_vnop_strategy),
        vnop_entry(vn_bwrite),
        vnop_entry(ext2_vnop_blockmap),
        vnop_entry(ext2_vnop_getattr),
        vnop_entry(ext2_vnop_setattr),
        vnop_entry(ext2_vnop_access),
        vnop_entry(ext2_vnop_allocate),
        vnop_entry(ext2_vnop_ioctl),
        vnop_entry(ext2_vnop_open),
        vnop_entry(ext2_vnop_inactive),
        vnop_entry(ext2_vnop_reclaim),
        // the namespace
        vnop_entry(ext2_vnop_lookup),
        // (the ops that change a directory wait for it under dirsync: dirsync.cpp)
        vnop_entry(ext2_dirsync_op<vnop_create_args, ext2_vnop_create>),
        vnop_entry(ext2_dirsync_op<vnop_mknod_args, ext2_vnop_mknod>),
        vnop_entry(ext2_dirsync_op<vnop_mkdir_args, ext2_vnop_mkdir>),
        vnop_entry(ext2_dirsync_op<vnop_symlink_args, ext2_vnop_symlink>),
        vnop_entry(ext2_vnop_readlink),
        vnop_entry(ext2_dirsync_op<vnop_link_args, ext2_vnop_link>),
        vnop_entry(ext2_dirsync_op<vnop_remove_args, ext2_vnop_remove>),
        vnop_entry(ext2_dirsync_op<vnop_rmdir_args, ext2_vnop_rmdir>),
        vnop_entry(ext2_vnop_readdir),
        vnop_entry(ext2_dirsync_op<vnop_rename_args, ext2_vnop_rename>),
        vnop_entry(ext2_vnop_getxattr),
        vnop_entry(ext2_vnop_setxattr),
        vnop_entry(ext2_vnop_listxattr),
        vnop_entry(ext2_vnop_removexattr),
    });
    ext2_sync_table_init();
  });
}

}  // namespace vnopfs::ext2

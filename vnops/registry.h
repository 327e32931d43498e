// registry.h: the tables a mount can be made with, by name: each names the vfsops it mounts with (registered
// with the VFS, vfs_register_fs) and the VNOP table its vnodes get (the bottom of a layer stack). The
// frontend asks this registry and knows no filesystem by name, nor any filesystem's limits (those come from
// the mounted filesystem: VFS_STATFS).
//
// The ext2 tables share all of vnops/ext2 and differ only in the write path the mount records
// (vnops/ext2/ext2.h, ext2_wpath; docs/experiments.md compares them):
//   ext2         the cluster layer: write-behind clusters, read-ahead, runs coalesced at push (the default)
//   ext2-buf     the classic BSD buffer path: bread/bdwrite per block, no read-ahead, every buffer its own I/O
//   ext2-direct  file data never cached: VNOP_READ/VNOP_WRITE do strategy I/O straight from the uio
//   ext2-sync    data and every metadata block an op changed are on the device before the op returns
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "vnopfs/mount.h"
#include "vnopfs/vnops.h"

namespace vnopfs {

struct fs_table {
  const char* name;            // what -o table= takes
  const vfsops* vfs;           // mounts it (vfs->name == name)
  const vnop_table* vnops;     // the table its vnodes get when no layer is stacked
  const char* description;     // one line, for --help and errors
};

// Idempotent and thread-safe; builds every table and registers every vfsops. Call before anything below.
void vnops_register_filesystems();
// Every table, the default ("ext2") first.
const std::vector<fs_table>& vnops_tables();
// The table of that name, or nullptr.
const fs_table* vnops_lookup_table(std::string_view name);
// "ext2, ext2-buf, ext2-direct, ext2-sync": for the error that refuses an unknown name.
std::string vnops_table_names();

}  // namespace vnopfs

// registry.cpp: names to filesystems. Tables are built before their vfsops become visible.
#include "vnops/registry.h"

#include "vnopfs/mount.h"
#include "vnops/ext2/ext2.h"

namespace vnopfs {

void vnops_register_filesystems() {
  ext2::ext2_table_init();
  vfs_register_fs(&ext2::ext2_vfsops);
}

}  // namespace vnopfs

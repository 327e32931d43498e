#include "src/fuse/fsglue.h"

#include "vnops/ext2/ext2.h"

namespace vnopfs::fuse {

void register_filesystems() {
  ext2::ext2_table_init();
  vfs_register_fs(&ext2::ext2_vfsops);
}

const vnop_table* filesystem_table(const std::string& name) {
  if (name == "ext2") return &ext2::ext2_vnop_table;
  return nullptr;
}

}  // namespace vnopfs::fuse

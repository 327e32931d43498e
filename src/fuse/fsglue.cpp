#include "src/fuse/fsglue.h"

#include "vnops/ext2/ext2.h"
#include "vnops/registry.h"

namespace vnopfs::fuse {

void register_filesystems() {
  vnops_register_filesystems();
}

const vnop_table* filesystem_table(const std::string& name) {
  if (name == "ext2") return &ext2::ext2_vnop_table;
  return nullptr;
}

}  // namespace vnopfs::fuse

// registry.cpp: names to tables and filesystems. Tables are built before their vfsops become visible.
#include "vnops/registry.h"

#include <mutex>

#include "vnops/ext2/ext2.h"

namespace vnopfs {

namespace {

std::vector<fs_table>& tables() {
  static std::vector<fs_table> t;
  return t;
}

}  // namespace

void vnops_register_filesystems() {
  static std::once_flag once;
  std::call_once(once, [] {
    ext2::ext2_table_init();
    for (const ext2::ext2_variant& v : ext2::ext2_variants()) {
      vfs_register_fs(v.vfs);
      tables().push_back({v.vfs->name, v.vfs, v.vnops, v.description});
    }
  });
}

const std::vector<fs_table>& vnops_tables() {
  vnops_register_filesystems();
  return tables();
}

const fs_table* vnops_lookup_table(std::string_view name) {
  for (const fs_table& t : vnops_tables())
    if (name == t.name) return &t;
  return nullptr;
}

std::string vnops_table_names() {
  std::string s;
  for (const fs_table& t : vnops_tables()) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

}  // namespace vnopfs

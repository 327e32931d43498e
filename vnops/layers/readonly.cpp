// readonly.cpp: the readonly layer. Every VNOP that would change the filesystem returns EROFS before it
// reaches the table below; reads, lookups, getattr, readdir, xattr reads and fsync pass through. Unlike
// `-o ro`, the filesystem below is mounted read-write (its superblock marked in use, its flusher running):
// this is the VNOP-level answer only, for experiments that stack it at run time or over another layer.
//
// Refused: create, mknod, mkdir, symlink, link, remove, rmdir, rename, setattr, write, allocate, setxattr,
// removexattr; open with O_WRONLY, O_RDWR or O_TRUNC; access asking W_OK (Linux answers EROFS there too).
#include <fcntl.h>
#include <unistd.h>

#include "vnops/layers/layer.h"

namespace vnopfs {
namespace {

template <class A>
int erofs(A*) { return EROFS; }

int ro_open(vnop_open_args* ap) {
  if ((ap->a_mode & O_ACCMODE) != O_RDONLY || (ap->a_mode & O_TRUNC)) return EROFS;
  return vnop_call_below(vnop_running_table(), ap);
}

int ro_access(vnop_access_args* ap) {
  if (ap->a_mode & W_OK) return EROFS;
  return vnop_call_below(vnop_running_table(), ap);
}

class readonly_layer final : public layer {
 public:
  explicit readonly_layer(const vnop_table* below) {
    vnop_layer_build(&table_, "readonly", below,
                     {erofs<vnop_create_args>, erofs<vnop_mknod_args>, erofs<vnop_mkdir_args>,
                      erofs<vnop_symlink_args>, erofs<vnop_link_args>, erofs<vnop_remove_args>,
                      erofs<vnop_rmdir_args>, erofs<vnop_rename_args>, erofs<vnop_setattr_args>,
                      erofs<vnop_write_args>, erofs<vnop_allocate_args>, erofs<vnop_setxattr_args>,
                      erofs<vnop_removexattr_args>, ro_open, ro_access});
  }
  const vnop_table* table() const override { return &table_; }
  const char* name() const override { return "readonly"; }

 private:
  vnop_table table_;
};

}  // namespace

std::unique_ptr<layer> make_readonly_layer(const vnop_table* below) {
  return std::make_unique<readonly_layer>(below);
}

}  // namespace vnopfs

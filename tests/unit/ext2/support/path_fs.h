// path_fs.h: an ext2 image made by mke2fs and mounted through the VFS (a `mounted`, ext2_fixture.h), with
// path-level helpers that make VNOP calls holding exactly the vnode locks vnop.def asks for. Every helper
// returns an errno, so a test can check error codes; paths are relative to the root ("a/b/c", "" = root).
#pragma once

#include <sys/stat.h>

#include <memory>
#include <string>
#include <vector>

#include "ext2/support/ext2_fixture.h"
#include "vnopfs/context.h"
#include "vnopfs/device.h"
#include "vnopfs/mount.h"
#include "vnopfs/vnops.h"

namespace ext2test {

struct dir_entry {
  std::string name;
  uint64_t ino;
  uint8_t type;
  uint64_t next;
};

class path_fs {
 public:
  // Makes an image with `mke2fs -q -F -t ext2 MKFS_OPTS IMG SIZE` in a temp dir (or adopts `image` when
  // given: a copy the test owns) and mounts it read-write.
  // table: which table of the registry (vnops/registry.h) the image is mounted as.
  explicit path_fs(const std::string& mkfs_opts = "-b 1024", const std::string& size = "16M",
                   const std::string& table = "ext2");
  // with_faults: a faults layer (src/dev/faults.h) sits under the mount (faults()), across remounts too.
  static std::unique_ptr<path_fs> adopt(const std::string& image, int* mount_err, bool with_faults = false);
  vnopfs::dev::faults_device* faults() const { return m_ ? m_->faults() : nullptr; }
  ~path_fs();

  // Unmounts (if mounted) and returns VFS_UNMOUNT's result; the image can then be checked.
  int unmount();
  int remount();
  bool is_mounted() const { return m_ != nullptr; }
  const std::string& image() const { return img_; }
  vnopfs::mount* mp() const { return m_ ? m_->mp() : nullptr; }

  // Path helpers; ctx defaults to root.
  int lookup(const std::string& path, vnopfs::vnode** vpp, const vnopfs::vfs_context& c = root());
  int create(const std::string& path, mode_t mode = 0644, const vnopfs::vfs_context& c = root());
  int mknod(const std::string& path, mode_t mode, dev_t rdev = 0, const vnopfs::vfs_context& c = root());
  int mkdir(const std::string& path, mode_t mode = 0755, const vnopfs::vfs_context& c = root());
  int symlink(const std::string& path, const std::string& target, const vnopfs::vfs_context& c = root());
  int readlink(const std::string& path, std::string* out, const vnopfs::vfs_context& c = root());
  int link(const std::string& from, const std::string& to, const vnopfs::vfs_context& c = root());
  int unlink(const std::string& path, const vnopfs::vfs_context& c = root());
  int rmdir(const std::string& path, const vnopfs::vfs_context& c = root());
  int rename(const std::string& from, const std::string& to, uint32_t flags = 0,
             const vnopfs::vfs_context& c = root());
  int write(const std::string& path, off_t off, const std::string& data, const vnopfs::vfs_context& c = root());
  int read(const std::string& path, std::string* out, const vnopfs::vfs_context& c = root());
  int truncate(const std::string& path, off_t size, const vnopfs::vfs_context& c = root());
  int chmod(const std::string& path, mode_t mode, const vnopfs::vfs_context& c = root());
  int chgrp(const std::string& path, gid_t gid, const vnopfs::vfs_context& c = root());
  int getattr(const std::string& path, vnopfs::vnode_attr* va, const vnopfs::vfs_context& c = root());
  int readdir(const std::string& path, std::vector<dir_entry>* out, const vnopfs::vfs_context& c = root());
  int setxattr(const std::string& path, const std::string& name, const std::string& value, int options = 0,
               const vnopfs::vfs_context& c = root());
  int getxattr(const std::string& path, const std::string& name, std::string* value, size_t bufsize = 65536,
               const vnopfs::vfs_context& c = root());
  int listxattr(const std::string& path, std::vector<std::string>* names, const vnopfs::vfs_context& c = root());
  int removexattr(const std::string& path, const std::string& name, const vnopfs::vfs_context& c = root());
  int fsync(const std::string& path);

  static const vnopfs::vfs_context& root() { return vnopfs::vfs_context::kernel(); }

  // The parent directory vnode (+iocount) and the last component of path.
  int parent(const std::string& path, vnopfs::vnode** dvpp, std::string* name, const vnopfs::vfs_context& c);

 private:
  struct adopt_tag {};
  explicit path_fs(adopt_tag) {}
  int mount_image();
  tmpdir tmp_;
  std::string img_;
  std::string table_ = "ext2";
  bool with_faults_ = false;
  std::unique_ptr<mounted> m_;
};

// Splits "a/b/c" into components.
std::vector<std::string> path_components(const std::string& path);

}  // namespace ext2test

// writeback_test.cpp: metadata changed only in memory reaches the image without fsync through
// VFS_SYNC(MNT_LAZY), the syncer's call (vnopfs/syncer.h), and lazytime keeps timestamp-only changes out
// of it until fsync. "The flusher" is played by writing every dirty buffer of the file and the device.
#include <sys/stat.h>

#include <string>

#include <catch2/catch.hpp>

#include "ext2/support/path_fs.h"
#include "vnopfs/buf.h"
#include "vnopfs/cluster.h"
#include "vnops/ext2/ext2.h"

using namespace ext2test;
using namespace vnopfs;

namespace {

// What the flusher does with delayed writes once they are old enough: writes them all (file data, then the
// device's metadata). Nothing in core is copied into buffers here.
void flush_delayed(path_fs& fs, vnode* vp) {
  REQUIRE(cluster_push(vp, IO_SYNC) == 0);
  REQUIRE(buf_flushdirtyblks(vp, MNT_WAIT) == 0);
  REQUIRE(buf_flushdirtyblks(fs.mp()->mnt_devvp, MNT_WAIT) == 0);
}

std::string field(const std::string& stat, const std::string& name) {
  size_t at = stat.find(name);
  if (at == std::string::npos) return "";
  return stat.substr(at, stat.find('\n', at) - at);
}

}  // namespace

TEST_CASE("writeback: a lazy sync puts a written file's size and block map on the image", "[ext2][writeback]") {
  path_fs fs("-b 4096", "16M");
  REQUIRE(fs.create("f") == 0);
  vnode* vp = nullptr;
  REQUIRE(fs.lookup("f", &vp) == 0);  // held, as an open file is: no last reference writes the inode
  const std::string d = pattern(40000, 7);
  REQUIRE(fs.write("f", 0, d) == 0);
  flush_delayed(fs, vp);
  // The size and block pointers live in the in-core inode only: writing buffers alone does not reach them.
  std::string before = debugfs(fs.image(), "stat /f");
  INFO(before);
  CHECK(field(before, "Size:").find("Size: 0") != std::string::npos);
  REQUIRE(VFS_SYNC(fs.mp(), MNT_LAZY, vfs_context::kernel()) == 0);
  flush_delayed(fs, vp);
  std::string after = debugfs(fs.image(), "stat /f");
  INFO(after);
  CHECK(field(after, "Size:").find("Size: 40000") != std::string::npos);
  CHECK((debugfs_cat(fs.image(), "/f") == d));
  vnode_put(vp);
  REQUIRE(fs.unmount() == 0);
  CHECK(fsck_clean(fs.image()));
}

TEST_CASE("writeback: lazytime keeps an atime or overwrite's mtime in memory until fsync", "[ext2][writeback]") {
  const bool lazy = GENERATE(true, false);
  INFO("lazytime " << lazy);
  path_fs fs("-b 4096 -I 256", "16M");
  REQUIRE(fs.create("f") == 0);
  REQUIRE(fs.write("f", 0, pattern(8192, 1)) == 0);
  REQUIRE(VFS_SYNC(fs.mp(), MNT_WAIT, vfs_context::kernel()) == 0);
  fs.mp()->mnt_flag |= MNT_STRICTATIME | (lazy ? uint32_t{MNT_LAZYTIME} : 0u);
  vnode* vp = nullptr;
  REQUIRE(fs.lookup("f", &vp) == 0);
  const std::string st0 = debugfs(fs.image(), "stat /f");

  std::string got;
  REQUIRE(fs.read("f", &got) == 0);               // atime now, in core
  REQUIRE(fs.write("f", 0, pattern(4096, 2)) == 0);  // an overwrite: mtime and ctime only
  auto* ip = ext2::VTOI(vp);
  {
    std::lock_guard g(ip->i_lock);
    CHECK(ip->i_dirty == !lazy);
    CHECK(ip->i_time_dirty == lazy);
  }
  REQUIRE(VFS_SYNC(fs.mp(), MNT_LAZY, vfs_context::kernel()) == 0);
  flush_delayed(fs, vp);
  const std::string st1 = debugfs(fs.image(), "stat /f");
  INFO(st0 << "\n----\n" << st1);
  for (const char* f : {"atime:", "mtime:", "ctime:"}) {
    INFO(f);
    CHECK((field(st1, f) == field(st0, f)) == lazy);
  }
  REQUIRE(vfsync(vp, MNT_WAIT) == 0);  // fsync writes lazy times too
  const std::string st2 = debugfs(fs.image(), "stat /f");
  INFO(st2);
  for (const char* f : {"atime:", "mtime:", "ctime:"}) CHECK(field(st2, f) != field(st0, f));
  {
    std::lock_guard g(ip->i_lock);
    CHECK_FALSE(ip->i_time_dirty);
  }
  vnode_put(vp);
  REQUIRE(fs.unmount() == 0);
  CHECK(fsck_clean(fs.image()));
}

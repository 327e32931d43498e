// Names that survive fsync (docs/durability.md): after fsync or fdatasync of a file, its name and the names
// of the new directories above it are on the device, with no fsync of any directory. The "crash" is a copy
// of the image file taken while the filesystem is still mounted (what the device holds at that moment,
// without the cache), repaired with e2fsck -fy and read through a fresh mount of the copy.
//
// The FUSE frontend keeps a reference on every inode the kernel knows, so the in-core inodes (and what
// they remember about their new names) live until the kernel forgets them. The tests do the same with
// `held` (otherwise the last vnode_put reclaims the inode at once); one case lets them go, which takes the
// path of names whose trail was lost.
#include <catch2/catch.hpp>

#include "ext2/support/path_fs.h"
#include "vnops/ext2/ext2.h"

using namespace vnopfs;
using namespace ext2test;

namespace {

const char* kConfigs[] = {"-b 1024 -I 128", "-b 4096 -I 256"};

// The device as it is now, after e2fsck -fy, mounted afresh. The copy lives in dir.
std::unique_ptr<path_fs> crash_copy(path_fs& fs, const tmpdir& dir) {
  std::string copy = dir.path + "/crash.img";
  sh_ok("cp " + quote(fs.image()) + " " + quote(copy));
  int rc = 0;
  std::string out = sh("e2fsck -fy " + quote(copy), &rc);
  INFO("e2fsck -fy of the crash copy:\n" << out);
  REQUIRE(rc < 4);  // 0: clean, 1: repaired; 4 and up: left damaged
  int err = 0;
  auto f = path_fs::adopt(copy, &err);
  REQUIRE(err == 0);
  return f;
}

int fsync_path(path_fs& fs, const std::string& path, int waitfor) {
  vnode* vp = nullptr;
  if (int err = fs.lookup(path, &vp)) return err;
  int err = VNOP_FSYNC(vp, waitfor, kctx());
  vnode_put(vp);
  return err;
}

// Vnodes kept referenced, as the kernel keeps what it has looked up.
struct held {
  std::vector<vnode*> vps;
  ~held() { release(); }
  void release() {
    for (vnode* vp : vps) vnode_put(vp);
    vps.clear();
  }
  // Creates a file or directory at path and keeps its vnode.
  void make(path_fs& fs, const std::string& path, bool dir) { make_node(fs, path, dir ? S_IFDIR | 0755 : S_IFREG | 0644); }
  // The same for any type (a symlink to target).
  void make_node(path_fs& fs, const std::string& path, mode_t mode, const std::string& target = {}) {
    size_t slash = path.rfind('/');
    std::string parent = slash == std::string::npos ? "" : path.substr(0, slash);
    std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    vnode* dvp = nullptr;
    REQUIRE(fs.lookup(parent, &dvp) == 0);
    componentname cn{name.data(), name.size()};
    vnode_attr va;
    va.va_mode = mode;
    va.va_active = VA_MODE;
    vnode* vp = nullptr;
    int err;
    {
      vn_exclusive l(dvp);
      if (S_ISDIR(mode)) err = VNOP_MKDIR(dvp, &cn, &va, &vp, kctx());
      else if (S_ISREG(mode)) err = VNOP_CREATE(dvp, &cn, &va, &vp, kctx());
      else if (S_ISLNK(mode)) err = VNOP_SYMLINK(dvp, &cn, &va, target.c_str(), &vp, kctx());
      else err = VNOP_MKNOD(dvp, &cn, &va, &vp, kctx());
    }
    vnode_put(dvp);
    REQUIRE(err == 0);
    vps.push_back(vp);
  }
  // Keeps the vnode of what path names now.
  void keep(path_fs& fs, const std::string& path) {
    vnode* vp = nullptr;
    REQUIRE(fs.lookup(path, &vp) == 0);
    vps.push_back(vp);
  }
};

std::string read_all(path_fs& fs, const std::string& path) {
  std::string out;
  int err = fs.read(path, &out);
  INFO(path);
  REQUIRE(err == 0);
  return out;
}

bool trail_intact(path_fs& fs) {
  ext2::ext2_mount* m = ext2::ext2_mount_of(fs.mp());
  return m->m_names_lost.load() == m->m_names_synced.load();
}

// A file and a directory on the device before the test's new names.
void old_tree(path_fs& fs) {
  REQUIRE(fs.mkdir("old") == 0);
  REQUIRE(fs.create("old/x") == 0);
  REQUIRE(fs.write("old/x", 0, pattern(5000, 1)) == 0);
  REQUIRE(fsync_path(fs, "old/x", MNT_WAIT) == 0);
  REQUIRE(fsync_path(fs, "old", MNT_WAIT) == 0);
  REQUIRE(fsync_path(fs, "", MNT_WAIT) == 0);
}

}  // namespace

TEST_CASE("fsync of a new file in new directories writes their names", "[fsync_names]") {
  for (const char* cfg : kConfigs) {
    for (int waitfor : {MNT_WAIT, MNT_DWAIT}) {
      INFO(cfg << (waitfor == MNT_WAIT ? " fsync" : " fdatasync"));
      path_fs fs(cfg);
      tmpdir dir;
      old_tree(fs);
      held refs;
      refs.make(fs, "a", true);
      refs.make(fs, "a/b", true);
      refs.make(fs, "a/b/f", false);
      const std::string data = pattern(20000, 2);
      REQUIRE(fs.write("a/b/f", 0, data) == 0);
      refs.make(fs, "old/y", false);
      REQUIRE(fs.write("old/y", 0, "y-bytes") == 0);
      refs.make(fs, "a/unsynced", false);  // nobody fsyncs it: may vanish, must not disturb the others
      REQUIRE(trail_intact(fs));  // the walk, not the whole-mount sync, does the work below
      REQUIRE(fsync_path(fs, "a/b/f", waitfor) == 0);
      REQUIRE(fsync_path(fs, "old/y", waitfor) == 0);
      REQUIRE(trail_intact(fs));

      auto crashed = crash_copy(fs, dir);
      CHECK(read_all(*crashed, "a/b/f") == data);
      CHECK(read_all(*crashed, "old/y") == "y-bytes");
      CHECK(read_all(*crashed, "old/x") == pattern(5000, 1));
      std::vector<dir_entry> lost;
      REQUIRE(crashed->readdir("lost+found", &lost) == 0);
      CHECK(lost.size() == 2);  // "." and ".." only: nothing fsync'd was orphaned
      REQUIRE(crashed->unmount() == 0);
      require_fsck_clean(crashed->image());
      refs.release();
      REQUIRE(fs.unmount() == 0);
      require_fsck_clean(fs.image());
    }
  }
}

TEST_CASE("fsync after link or rename keeps the new name", "[fsync_names]") {
  path_fs fs("-b 1024 -I 256");
  tmpdir dir;
  held refs;
  refs.make(fs, "d", true);
  refs.make(fs, "d/target", false);
  REQUIRE(fs.write("d/target", 0, "old contents") == 0);
  REQUIRE(fsync_path(fs, "d/target", MNT_WAIT) == 0);
  // write-temp, fsync, rename over, fsync: the new contents under the old name.
  refs.make(fs, "d/target.tmp", false);
  REQUIRE(fs.write("d/target.tmp", 0, "new contents") == 0);
  REQUIRE(fsync_path(fs, "d/target.tmp", MNT_WAIT) == 0);
  REQUIRE(fs.rename("d/target.tmp", "d/target") == 0);
  REQUIRE(fsync_path(fs, "d/target", MNT_WAIT) == 0);
  // A rename into a new directory, and a link into another one.
  refs.make(fs, "n", true);
  refs.make(fs, "n/m", true);
  refs.make(fs, "d/moved", false);
  REQUIRE(fs.write("d/moved", 0, "moved bytes") == 0);
  REQUIRE(fs.rename("d/moved", "n/m/moved") == 0);
  REQUIRE(fsync_path(fs, "n/m/moved", MNT_DWAIT) == 0);
  refs.make(fs, "l", true);
  REQUIRE(fs.link("d/target", "l/second") == 0);
  REQUIRE(fsync_path(fs, "l/second", MNT_WAIT) == 0);
  REQUIRE(trail_intact(fs));

  auto crashed = crash_copy(fs, dir);
  CHECK(read_all(*crashed, "d/target") == "new contents");
  CHECK(read_all(*crashed, "n/m/moved") == "moved bytes");
  CHECK(read_all(*crashed, "l/second") == "new contents");
  REQUIRE(crashed->unmount() == 0);
  refs.release();
  REQUIRE(fs.unmount() == 0);
  require_fsck_clean(fs.image());
}

TEST_CASE("fsync keeps new names whose in-core inodes were reclaimed meanwhile", "[fsync_names]") {
  for (bool table_full : {false, true}) {
    INFO((table_full ? "the trail table is full: the whole mount is synced" : "the trails are kept"));
    path_fs fs("-b 1024 -I 128");
    tmpdir dir;
    old_tree(fs);
    ext2::ext2_mount* m = ext2::ext2_mount_of(fs.mp());
    if (table_full) m->m_names_kept_max = 0;
    // path_fs lets every vnode go at once: each new directory and file is reclaimed right after it is made.
    REQUIRE(fs.mkdir("p") == 0);
    REQUIRE(fs.mkdir("p/q") == 0);
    REQUIRE(fs.create("p/q/f") == 0);
    REQUIRE(fs.write("p/q/f", 0, "reclaimed") == 0);
    CHECK(trail_intact(fs) == !table_full);
    {
      std::lock_guard g(m->m_names_lock);
      CHECK(m->m_names_kept.size() == (table_full ? 0u : 3u));  // p, p/q and p/q/f
    }
    REQUIRE(fsync_path(fs, "p/q/f", MNT_WAIT) == 0);
    CHECK(trail_intact(fs));  // the walk, or the whole-mount sync that caught up
    auto crashed = crash_copy(fs, dir);
    CHECK(read_all(*crashed, "p/q/f") == "reclaimed");
    REQUIRE(crashed->unmount() == 0);
    REQUIRE(fs.unmount() == 0);
  }
}

namespace {

uint32_t flags_at(path_fs& fs, const std::string& path) {
  vnode* vp = nullptr;
  REQUIRE(fs.lookup(path, &vp) == 0);
  uint32_t fl = 0;
  REQUIRE(ext2::ext2_getflags(ext2::VTOI(vp), &fl) == 0);
  vnode_put(vp);
  return fl;
}

void set_flags(path_fs& fs, const std::string& path, uint32_t fl) {
  vnode* vp = nullptr;
  REQUIRE(fs.lookup(path, &vp) == 0);
  CHECK(ext2::ext2_setflags(ext2::VTOI(vp), fl, *kctx()) == 0);
  vnode_put(vp);
  REQUIRE(fsync_path(fs, path, MNT_WAIT) == 0);
}

bool exists(path_fs& fs, const std::string& path) {
  vnode* vp = nullptr;
  int err = fs.lookup(path, &vp);
  if (err == 0) vnode_put(vp);
  INFO(path << ": " << err);
  REQUIRE((err == 0 || err == ENOENT));
  return err == 0;
}

}  // namespace

TEST_CASE("new inodes take their directory's chattr flags, as Linux's ext2 passes them down", "[dirsync][flags]") {
  path_fs fs("-b 1024 -I 128");
  REQUIRE(fs.mkdir("s") == 0);
  const uint32_t all = ext2::EXT2_SYNC_FL | ext2::EXT2_NOATIME_FL | ext2::EXT2_NODUMP_FL | ext2::EXT2_DIRSYNC_FL;
  set_flags(fs, "s", all | ext2::EXT2_APPEND_FL);
  REQUIRE(fs.create("s/f") == 0);
  REQUIRE(fs.mkdir("s/d") == 0);
  REQUIRE(fs.symlink("s/l", "f") == 0);
  REQUIRE(fs.mknod("s/p", S_IFIFO | 0644) == 0);
  CHECK(flags_at(fs, "s/d") == all);                                            // directories: all of them
  CHECK(flags_at(fs, "s/f") == (all & ~ext2::EXT2_DIRSYNC_FL));                 // files: not D
  CHECK(flags_at(fs, "s/l") == (ext2::EXT2_NOATIME_FL | ext2::EXT2_NODUMP_FL));  // the rest: A and d
  CHECK(flags_at(fs, "s/p") == (ext2::EXT2_NOATIME_FL | ext2::EXT2_NODUMP_FL));
  CHECK(flags_at(fs, "") == 0);  // append-only and immutable are never passed down
  REQUIRE(fs.unmount() == 0);
  require_fsck_clean(fs.image());
}

TEST_CASE("dirsync: changes in a chattr +D directory, or anywhere on a dirsync mount, are on the device "
          "when the op returns", "[dirsync]") {
  for (bool mount_wide : {false, true}) {
    INFO((mount_wide ? "-o dirsync (MNT_DIRSYNC)" : "chattr +D on old/"));
    path_fs fs("-b 1024 -I 128");
    tmpdir dir;
    old_tree(fs);
    if (mount_wide) fs.mp()->mnt_flag |= MNT_DIRSYNC;
    else set_flags(fs, "old", ext2::EXT2_DIRSYNC_FL);
    // Every vnode stays referenced, as the kernel keeps what it looked up: a last vnode_put would write
    // the inode and its new name on its own (VNOP_INACTIVE), and the test would pass without dirsync.
    held refs;
    refs.keep(fs, "old");
    refs.keep(fs, "old/x");
    refs.make(fs, "old/f", false);
    refs.make(fs, "old/d", true);  // inherits +D
    refs.make(fs, "old/d/g", false);
    refs.make_node(fs, "old/s", S_IFLNK | 0777, std::string(300, 't'));  // a slow symlink: its block too
    refs.make_node(fs, "old/p", S_IFIFO | 0600);
    if (mount_wide) refs.make(fs, "top", true);
    {  // (a rename or rmdir writes its directory blocks synchronously anyway, so the creates come alone)
      auto crashed = crash_copy(fs, dir);
      CHECK(exists(*crashed, "old/f"));
      CHECK(exists(*crashed, "old/d/g"));
      CHECK(exists(*crashed, "old/p"));
      std::string target;
      CHECK(crashed->readlink("old/s", &target) == 0);
      CHECK(target == std::string(300, 't'));
      if (mount_wide) CHECK(exists(*crashed, "top"));
      std::vector<dir_entry> lost;
      REQUIRE(crashed->readdir("lost+found", &lost) == 0);
      CHECK(lost.size() == 2);  // nothing orphaned
      REQUIRE(crashed->unmount() == 0);
    }
    REQUIRE(fs.link("old/f", "old/d/f2") == 0);
    {
      auto crashed = crash_copy(fs, dir);
      CHECK(exists(*crashed, "old/d/f2"));
      REQUIRE(crashed->unmount() == 0);
    }
    REQUIRE(fs.rename("old/x", "old/d/x2") == 0);
    refs.make(fs, "old/gone", true);
    REQUIRE(fs.rmdir("old/gone") == 0);
    {
      auto crashed = crash_copy(fs, dir);
      CHECK(!exists(*crashed, "old/x"));
      CHECK(!exists(*crashed, "old/gone"));
      CHECK(read_all(*crashed, "old/d/x2") == pattern(5000, 1));
      REQUIRE(crashed->unmount() == 0);
    }
    REQUIRE(fs.unlink("old/d/f2") == 0);
    REQUIRE(fs.rename("old/d", "old/d3") == 0);
    {
      auto crashed = crash_copy(fs, dir);
      CHECK(!exists(*crashed, "old/d/f2"));
      CHECK(!exists(*crashed, "old/d"));
      CHECK(exists(*crashed, "old/d3/g"));
      REQUIRE(crashed->unmount() == 0);
    }
    refs.release();
    REQUIRE(fs.unmount() == 0);
    require_fsck_clean(fs.image());
  }
}


// The namespace VNOPs through the VFS on real images: effects and Linux's error codes, checked after
// unmount by e2fsck -fn and by debugfs reading back what we wrote.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <map>
#include <regex>
#include <set>

#include "ext2/support/path_fs.h"

using namespace vnopfs;
using namespace ext2test;

namespace {

// Unmounts and checks the image with e2fsck -fn.
void finish(path_fs& fs) {
  REQUIRE(fs.unmount() == 0);
  require_fsck_clean(fs.image());
}

std::map<std::string, dir_entry> listing(path_fs& fs, const std::string& dir) {
  std::vector<dir_entry> v;
  REQUIRE(fs.readdir(dir, &v) == 0);
  std::map<std::string, dir_entry> m;
  for (auto& e : v) {
    INFO(e.name);
    CHECK(m.count(e.name) == 0);
    m[e.name] = e;
  }
  return m;
}

uint32_t nlink(path_fs& fs, const std::string& path) {
  vnode_attr va;
  REQUIRE(fs.getattr(path, &va) == 0);
  return va.va_nlink;
}

std::string stat_of(const std::string& img, const std::string& path) { return debugfs(img, "stat " + path); }

const char* kConfigs[] = {"-b 1024 -I 128", "-b 4096 -I 256", "-b 1024 -I 256 -O ^dir_index,^resize_inode",
                          "-b 2048 -I 128 -O ^filetype"};

}  // namespace

TEST_CASE("create, mkdir, mknod, symlink and link show up in readdir and in debugfs", "[ns]") {
  for (const char* cfg : kConfigs) {
    INFO(cfg);
    path_fs fs(cfg);
    REQUIRE(fs.create("f", 0640) == 0);
    REQUIRE(fs.mkdir("d", 0750) == 0);
    REQUIRE(fs.mkdir("d/sub") == 0);
    REQUIRE(fs.mknod("fifo", S_IFIFO | 0600) == 0);
    REQUIRE(fs.mknod("sock", S_IFSOCK | 0600) == 0);
    REQUIRE(fs.mknod("chr", S_IFCHR | 0600, makedev(4, 5)) == 0);
    REQUIRE(fs.mknod("blk", S_IFBLK | 0600, makedev(300, 70000)) == 0);  // new encoding
    REQUIRE(fs.symlink("fast", "f") == 0);
    std::string longtarget(200, 'x');
    REQUIRE(fs.symlink("slow", longtarget) == 0);
    REQUIRE(fs.link("f", "d/f2") == 0);
    REQUIRE(fs.write("f", 0, "hello") == 0);

    auto root = listing(fs, "");
    for (const char* n : {".", "..", "lost+found", "f", "d", "fifo", "sock", "chr", "blk", "fast", "slow"})
      CHECK(root.count(n) == 1);
    CHECK(root["f"].type == DT_REG);
    CHECK(root["d"].type == DT_DIR);
    CHECK(root["fifo"].type == DT_FIFO);
    CHECK(root["sock"].type == DT_SOCK);
    CHECK(root["chr"].type == DT_CHR);
    CHECK(root["blk"].type == DT_BLK);
    CHECK(root["fast"].type == DT_LNK);
    CHECK(root["."].ino == 2);
    CHECK(root[".."].ino == 2);
    auto d = listing(fs, "d");
    CHECK(d["f2"].ino == root["f"].ino);
    CHECK(d[".."].ino == 2);
    CHECK(d["."].ino == root["d"].ino);
    CHECK(nlink(fs, "d") == 3);
    CHECK(nlink(fs, "") == 4);  // ., .., lost+found/.., d/..
    CHECK(nlink(fs, "f") == 2);
    std::string s;
    REQUIRE(fs.readlink("fast", &s) == 0);
    CHECK(s == "f");
    REQUIRE(fs.readlink("slow", &s) == 0);
    CHECK(s == longtarget);
    vnode_attr va;
    REQUIRE(fs.getattr("blk", &va) == 0);
    CHECK(va.va_rdev == makedev(300, 70000));
    REQUIRE(fs.getattr("f", &va) == 0);
    CHECK((va.va_mode & 07777) == 0640);  // no second umask
    finish(fs);

    const std::string& img = fs.image();
    CHECK(debugfs(img, "cat /d/f2") == "hello");
    CHECK(stat_of(img, "/fast").find("Fast link dest: \"f\"") != std::string::npos);
    CHECK(debugfs(img, "cat /slow") == longtarget);
    CHECK(stat_of(img, "/chr").find("Device major/minor number: 04:05") != std::string::npos);
    CHECK(std::regex_search(stat_of(img, "/blk"), std::regex("Device major/minor number: 300:70000")));
    CHECK(stat_of(img, "/d").find("Links: 3") != std::string::npos);
    CHECK(stat_of(img, "/f").find("Links: 2") != std::string::npos);
  }
}

TEST_CASE("names longer than 255 bytes are ENAMETOOLONG on every op", "[ns]") {
  path_fs fs;
  std::string n255(255, 'a'), n256(256, 'b');
  REQUIRE(fs.create(n255) == 0);
  REQUIRE(fs.create("f") == 0);
  REQUIRE(fs.mkdir("d") == 0);
  vnode* vp;
  CHECK(fs.lookup(n256, &vp) == ENAMETOOLONG);
  CHECK(fs.create(n256) == ENAMETOOLONG);
  CHECK(fs.mkdir(n256) == ENAMETOOLONG);
  CHECK(fs.mknod(n256, S_IFIFO | 0600) == ENAMETOOLONG);
  CHECK(fs.symlink(n256, "x") == ENAMETOOLONG);
  CHECK(fs.link("f", n256) == ENAMETOOLONG);
  CHECK(fs.rename("f", n256) == ENAMETOOLONG);
  // remove/rmdir/rename source with an over-long name, by calling the VNOPs directly
  vnode *root, *f, *d;
  REQUIRE(fs.lookup("", &root) == 0);
  REQUIRE(fs.lookup("f", &f) == 0);
  REQUIRE(fs.lookup("d", &d) == 0);
  componentname cn{n256.data(), n256.size()}, ok{"f", 1};
  {
    vn_lock_pair(root, f);
    CHECK(VNOP_REMOVE(root, f, &cn, 0, const_cast<vfs_context*>(&path_fs::root())) == ENAMETOOLONG);
    vn_unlock_pair(root, f);
    vn_lock_pair(root, d);
    CHECK(VNOP_RMDIR(root, d, &cn, const_cast<vfs_context*>(&path_fs::root())) == ENAMETOOLONG);
    vn_unlock_pair(root, d);
  }
  CHECK(VNOP_RENAME(root, f, &cn, root, static_cast<vnode*>(nullptr), &ok, 0u,
                    const_cast<vfs_context*>(&path_fs::root())) == ENAMETOOLONG);
  vnode_put(root);
  vnode_put(f);
  vnode_put(d);
  CHECK(fs.symlink("s", std::string(1023, 'x')) == 0);  // 1023 + NUL fits a 1 KiB block
  CHECK(fs.symlink("s2", std::string(1024, 'x')) == ENAMETOOLONG);
  finish(fs);
  CHECK(debugfs(fs.image(), "ls /").find(n255) != std::string::npos);
}

TEST_CASE("lookup, create and remove errors are Linux's", "[ns]") {
  path_fs fs;
  REQUIRE(fs.create("f") == 0);
  REQUIRE(fs.mkdir("d") == 0);
  REQUIRE(fs.create("d/x") == 0);
  vnode* vp;
  CHECK(fs.lookup("nope", &vp) == ENOENT);
  CHECK(fs.lookup("f/x", &vp) == ENOTDIR);
  CHECK(fs.create("f") == EEXIST);
  CHECK(fs.mkdir("d") == EEXIST);
  CHECK(fs.mkdir("f") == EEXIST);
  CHECK(fs.symlink("f", "y") == EEXIST);
  CHECK(fs.link("f", "d") == EEXIST);
  CHECK(fs.create("f/x") == ENOTDIR);
  CHECK(fs.unlink("d") == EISDIR);
  CHECK(fs.rmdir("f") == ENOTDIR);
  CHECK(fs.rmdir("d") == ENOTEMPTY);
  CHECK(fs.link("d", "d2") == EPERM);
  CHECK(fs.unlink("nope") == ENOENT);
  std::string s;
  CHECK(fs.readlink("f", &s) == EINVAL);
  CHECK(fs.symlink("empty", "") == ENOENT);
  // "." and ".." by name
  vnode *root, *d;
  REQUIRE(fs.lookup("", &root) == 0);
  REQUIRE(fs.lookup("d", &d) == 0);
  componentname dot{".", 1}, dotdot{"..", 2};
  vnode* got;
  {
    vn_shared l(d);
    REQUIRE(VNOP_LOOKUP(d, &dot, &got, const_cast<vfs_context*>(&path_fs::root())) == 0);
    CHECK(got == d);
    vnode_put(got);
    REQUIRE(VNOP_LOOKUP(d, &dotdot, &got, const_cast<vfs_context*>(&path_fs::root())) == 0);
    CHECK(got == root);
    vnode_put(got);
  }
  {
    vn_shared l(root);
    REQUIRE(VNOP_LOOKUP(root, &dotdot, &got, const_cast<vfs_context*>(&path_fs::root())) == 0);
    CHECK(got == root);
    vnode_put(got);
  }
  {
    vn_exclusive l(d);
    CHECK(VNOP_RMDIR(d, d, &dot, const_cast<vfs_context*>(&path_fs::root())) == EINVAL);
  }
  {
    vn_exclusive l(root);
    componentname rn{"root", 4};
    CHECK(VNOP_RMDIR(root, root, &rn, const_cast<vfs_context*>(&path_fs::root())) == EBUSY);
  }
  vnode_put(root);
  vnode_put(d);
  REQUIRE(fs.unlink("d/x") == 0);
  REQUIRE(fs.rmdir("d") == 0);
  CHECK(fs.lookup("d", &vp) == ENOENT);
  CHECK(nlink(fs, "") == 3);
  finish(fs);
}

TEST_CASE("link counts stop at 32000: EMLINK for link and mkdir", "[ns]") {
  path_fs fs;
  REQUIRE(fs.create("f") == 0);
  REQUIRE(fs.mkdir("d") == 0);
  REQUIRE(fs.unmount() == 0);
  // Pretend 31998 more names exist (restored before e2fsck).
  debugfs_w(fs.image(), "sif /f links_count 32000");
  debugfs_w(fs.image(), "sif /d links_count 32000");
  REQUIRE(fs.remount() == 0);
  CHECK(fs.link("f", "g") == EMLINK);
  CHECK(fs.mkdir("d/sub") == EMLINK);
  REQUIRE(fs.unmount() == 0);
  debugfs_w(fs.image(), "sif /f links_count 1");
  debugfs_w(fs.image(), "sif /d links_count 2");
  require_fsck_clean(fs.image());
}

TEST_CASE("rename: files, directories, replacement, NOREPLACE, EXCHANGE, subtree, link counts", "[ns][rename]") {
  for (const char* cfg : {"-b 1024", "-b 4096 -O ^filetype"}) {
    INFO(cfg);
    path_fs fs(cfg);
    REQUIRE(fs.mkdir("a") == 0);
    REQUIRE(fs.mkdir("b") == 0);
    REQUIRE(fs.mkdir("a/sub") == 0);
    REQUIRE(fs.create("a/f") == 0);
    REQUIRE(fs.write("a/f", 0, "F") == 0);
    REQUIRE(fs.create("b/g") == 0);
    REQUIRE(fs.write("b/g", 0, "G") == 0);
    REQUIRE(fs.mkdir("b/empty") == 0);
    REQUIRE(fs.mkdir("b/full") == 0);
    REQUIRE(fs.create("b/full/x") == 0);

    // plain, same directory
    REQUIRE(fs.rename("a/f", "a/f1") == 0);
    std::string s;
    REQUIRE(fs.read("a/f1", &s) == 0);
    CHECK(s == "F");
    vnode* vp;
    CHECK(fs.lookup("a/f", &vp) == ENOENT);
    // over an existing file: the old one loses its last link
    REQUIRE(fs.rename("a/f1", "b/g") == 0);
    REQUIRE(fs.read("b/g", &s) == 0);
    CHECK(s == "F");
    // file onto a directory and back
    REQUIRE(fs.create("a/h") == 0);
    CHECK(fs.rename("a/h", "b/empty") == EISDIR);
    CHECK(fs.rename("b/empty", "a/h") == ENOTDIR);
    // directory over an empty and a full directory
    CHECK(fs.rename("a/sub", "b/full") == ENOTEMPTY);
    REQUIRE(fs.rename("a/sub", "b/empty") == 0);  // cross-directory, replaces an empty dir
    CHECK(nlink(fs, "a") == 2);
    CHECK(nlink(fs, "b") == 4);  // b/.. , b/empty(=old sub)/.., b/full/..
    auto e = listing(fs, "b/empty");
    vnode_attr bva;
    REQUIRE(fs.getattr("b", &bva) == 0);
    CHECK(e[".."].ino == bva.va_fileid);
    // into its own subtree
    REQUIRE(fs.mkdir("b/empty/deeper") == 0);
    CHECK(fs.rename("b", "b/empty/deeper/b") == EINVAL);
    CHECK(fs.rename("b/empty", "b/empty/deeper/x") == EINVAL);
    // NOREPLACE
    CHECK(fs.rename("a/h", "b/g", VNOP_RENAME_NOREPLACE) == EEXIST);
    REQUIRE(fs.rename("a/h", "b/h", VNOP_RENAME_NOREPLACE) == 0);
    // EXCHANGE of a file and a directory across directories
    CHECK(fs.rename("b/h", "a/none", VNOP_RENAME_EXCHANGE) == ENOENT);
    CHECK(fs.rename("b/h", "a/none", VNOP_RENAME_EXCHANGE | VNOP_RENAME_NOREPLACE) == EINVAL);
    REQUIRE(fs.mkdir("a/dx") == 0);
    REQUIRE(fs.create("a/dx/inner") == 0);
    REQUIRE(fs.rename("b/g", "a/dx", VNOP_RENAME_EXCHANGE) == 0);
    REQUIRE(fs.read("a/dx", &s) == 0);
    CHECK(s == "F");
    REQUIRE(fs.lookup("b/g/inner", &vp) == 0);
    vnode_put(vp);
    CHECK(nlink(fs, "a") == 2);
    CHECK(nlink(fs, "b") == 5);
    e = listing(fs, "b/g");
    CHECK(e[".."].ino == bva.va_fileid);
    // renaming a name onto another name of the same inode does nothing
    REQUIRE(fs.link("a/dx", "a/dx2") == 0);
    REQUIRE(fs.rename("a/dx", "a/dx2") == 0);
    CHECK(nlink(fs, "a/dx") == 2);
    finish(fs);
    CHECK(debugfs(fs.image(), "cat /b/h").empty());
    CHECK(debugfs(fs.image(), "ls -l /b/g").find("inner") != std::string::npos);
  }
}

TEST_CASE("rename with WHITEOUT leaves a character device 0:0 at the old name", "[ns][rename][whiteout]") {
  for (const char* cfg : {"-b 1024", "-b 4096 -O ^filetype"}) {
    INFO(cfg);
    path_fs fs(cfg);
    REQUIRE(fs.mkdir("a") == 0);
    REQUIRE(fs.mkdir("b") == 0);
    REQUIRE(fs.create("a/f") == 0);
    REQUIRE(fs.write("a/f", 0, "F") == 0);
    REQUIRE(fs.create("b/old") == 0);
    REQUIRE(fs.mkdir("a/d") == 0);
    REQUIRE(fs.create("a/d/inner") == 0);
    vnode_attr fva;
    REQUIRE(fs.getattr("a/f", &fva) == 0);

    CHECK(fs.rename("a/f", "b/old", VNOP_RENAME_WHITEOUT | VNOP_RENAME_EXCHANGE) == EINVAL);
    CHECK(fs.rename("a/f", "b/old", VNOP_RENAME_WHITEOUT | VNOP_RENAME_NOREPLACE) == EEXIST);
    CHECK(fs.rename("a/f", "a/d", VNOP_RENAME_WHITEOUT) == EISDIR);
    CHECK(fs.rename("a/none", "b/x", VNOP_RENAME_WHITEOUT) == ENOENT);
    // a file, across directories, over an existing file
    REQUIRE(fs.rename("a/f", "b/old", VNOP_RENAME_WHITEOUT) == 0);
    std::string s;
    REQUIRE(fs.read("b/old", &s) == 0);
    CHECK(s == "F");
    vnode_attr va;
    REQUIRE(fs.getattr("b/old", &va) == 0);
    CHECK(va.va_fileid == fva.va_fileid);
    REQUIRE(fs.getattr("a/f", &va) == 0);
    CHECK(va.va_mode == S_IFCHR);  // no permission bits: Linux's WHITEOUT_MODE
    CHECK(va.va_rdev == makedev(0, 0));
    CHECK(va.va_nlink == 1);
    CHECK(va.va_fileid != fva.va_fileid);
    auto e = listing(fs, "a");
    CHECK(e["f"].type == DT_CHR);
    // a directory, across directories, with NOREPLACE: links move as in a plain rename
    REQUIRE(fs.rename("a/d", "b/d", VNOP_RENAME_WHITEOUT | VNOP_RENAME_NOREPLACE) == 0);
    CHECK(nlink(fs, "a") == 2);
    CHECK(nlink(fs, "b") == 3);
    REQUIRE(fs.getattr("a/d", &va) == 0);
    CHECK(va.va_mode == S_IFCHR);
    vnode_attr bva;
    REQUIRE(fs.getattr("b", &bva) == 0);
    e = listing(fs, "b/d");
    CHECK(e[".."].ino == bva.va_fileid);
    CHECK(e.count("inner") == 1);
    // in one directory: a whiteout can itself be renamed with a whiteout
    REQUIRE(fs.rename("a/f", "a/f2", VNOP_RENAME_WHITEOUT) == 0);
    REQUIRE(fs.getattr("a/f2", &va) == 0);
    CHECK(va.va_mode == S_IFCHR);
    REQUIRE(fs.getattr("a/f", &va) == 0);
    CHECK(va.va_mode == S_IFCHR);
    finish(fs);
    std::string st = stat_of(fs.image(), "/a/d");
    CHECK(st.find("Type: character special") != std::string::npos);
    CHECK(st.find("Links: 1") != std::string::npos);
    CHECK(debugfs(fs.image(), "cat /b/old") == "F");
  }
}

TEST_CASE("rename with WHITEOUT and no free inode is ENOSPC and changes nothing", "[ns][rename][whiteout]") {
  path_fs fs("-b 1024 -N 32", "4M");
  REQUIRE(fs.create("src") == 0);
  REQUIRE(fs.write("src", 0, "S") == 0);
  int err = 0;
  for (int i = 0; i < 1000 && err == 0; i++) err = fs.create("fill" + std::to_string(i));
  REQUIRE(err == ENOSPC);
  CHECK(fs.rename("src", "dst", VNOP_RENAME_WHITEOUT) == ENOSPC);
  std::string s;
  REQUIRE(fs.read("src", &s) == 0);
  CHECK(s == "S");
  vnode* vp;
  CHECK(fs.lookup("dst", &vp) == ENOENT);
  REQUIRE(fs.unlink("fill0") == 0);  // one inode: enough for the whiteout
  REQUIRE(fs.rename("src", "dst", VNOP_RENAME_WHITEOUT) == 0);
  REQUIRE(fs.read("dst", &s) == 0);
  CHECK(s == "S");
  finish(fs);
}

TEST_CASE("an open unlinked file stays readable until its last reference", "[ns]") {
  path_fs fs("-b 1024", "8M");
  REQUIRE(fs.create("f") == 0);
  std::string data(300000, 'q');
  REQUIRE(fs.write("f", 0, data) == 0);
  vnode* vp;
  REQUIRE(fs.lookup("f", &vp) == 0);
  vnode_ref(vp);  // a long-term reference, as an open file has
  vnode_put(vp);
  struct statvfs before, during, after;
  REQUIRE(VFS_STATFS(fs.mp(), &before, path_fs::root()) == 0);
  REQUIRE(fs.unlink("f") == 0);
  CHECK(fs.lookup("f", &vp) == ENOENT);
  std::string got(data.size(), '\0');
  uio u(got.data(), got.size(), 0, UIO_READ);
  {
    vn_shared l(vp);
    REQUIRE(VNOP_READ(vp, &u, 0, const_cast<vfs_context*>(&path_fs::root())) == 0);
  }
  CHECK(got == data);
  vnode_attr va;
  REQUIRE(VNOP_GETATTR(vp, &va, const_cast<vfs_context*>(&path_fs::root())) == 0);
  CHECK(va.va_nlink == 0);
  REQUIRE(VFS_STATFS(fs.mp(), &during, path_fs::root()) == 0);
  CHECK(during.f_bfree == before.f_bfree);
  vnode_rele(vp);
  REQUIRE(VFS_STATFS(fs.mp(), &after, path_fs::root()) == 0);
  CHECK(after.f_bfree > before.f_bfree + 250);
  finish(fs);
}

TEST_CASE("a directory of 10,000 entries: readdir returns each once, cookies survive removals", "[ns][bigdir]") {
  path_fs fs("-b 1024 -N 12000", "32M");
  REQUIRE(fs.mkdir("big") == 0);
  const int N = 10000;
  for (int i = 0; i < N; i++) REQUIRE(fs.create("big/entry_" + std::to_string(i)) == 0);
  auto all = listing(fs, "big");
  CHECK(all.size() == size_t(N) + 2);
  // List in pages of 100 while removing every third entry not yet listed, and some already listed.
  vnode* dvp;
  REQUIRE(fs.lookup("big", &dvp) == 0);
  std::set<std::string> seen, removed;
  uint64_t cookie = 0;
  int eof = 0;
  struct page { std::vector<dir_entry> v; size_t max; };
  auto fill = [](void* p, const dirent_entry& e) -> int {
    auto* pg = static_cast<page*>(p);
    if (pg->v.size() >= pg->max) return 1;
    pg->v.push_back({std::string(e.name), e.ino, e.d_type, e.next_cookie});
    return 0;
  };
  int round = 0;
  while (!eof) {
    page pg{{}, 100};
    {
      vn_shared l(dvp);
      REQUIRE(VNOP_READDIR(dvp, cookie, +fill, static_cast<void*>(&pg), &eof,
                           const_cast<vfs_context*>(&path_fs::root())) == 0);
    }
    for (auto& e : pg.v) {
      INFO(e.name);
      CHECK(seen.insert(e.name).second);
      CHECK(removed.count(e.name) == 0);
      cookie = e.next;
    }
    // remove a few not yet seen and one already seen
    for (int k = 0; k < 3; k++) {
      std::string n = "entry_" + std::to_string((round * 97 + k * 31) % N);
      if (!seen.count(n) && !removed.count(n) && fs.unlink("big/" + n) == 0) removed.insert(n);
    }
    if (!pg.v.empty() && pg.v.front().name.rfind("entry_", 0) == 0 && !removed.count(pg.v.front().name)) {
      if (fs.unlink("big/" + pg.v.front().name) == 0) removed.insert(pg.v.front().name);
    }
    round++;
  }
  vnode_put(dvp);
  for (auto& [name, e] : all) {
    if (!removed.count(name)) CHECK(seen.count(name) == 1);
  }
  finish(fs);
  std::string ls = debugfs(fs.image(), "ls /big");
  CHECK((ls.find("entry_9999") != std::string::npos || removed.count("entry_9999") == 1));
}

TEST_CASE("htree directories are read linearly and lose EXT2_INDEX_FL when changed", "[ns][htree]") {
  tmpdir src;
  sh_ok("mkdir " + src.path + "/h && cd " + src.path + "/h && for i in $(seq 1 400); do : > name_$i; done");
  path_fs fs("-b 1024 -O dir_index -d " + src.path);
  REQUIRE(fs.unmount() == 0);
  sh_ok("e2fsck -fyD " + fs.image() + " >/dev/null 2>&1 || true");  // builds the hashed index
  REQUIRE(stat_of(fs.image(), "/h").find("Flags: 0x1000") != std::string::npos);
  REQUIRE(fs.remount() == 0);
  auto h = listing(fs, "h");
  CHECK(h.size() == 402);
  vnode* vp;
  REQUIRE(fs.lookup("h/name_399", &vp) == 0);
  vnode_put(vp);
  REQUIRE(fs.create("h/new") == 0);
  REQUIRE(fs.unlink("h/name_1") == 0);
  finish(fs);
  CHECK(stat_of(fs.image(), "/h").find("Flags: 0x0") != std::string::npos);
  CHECK(debugfs(fs.image(), "ls /h").find("new") != std::string::npos);
}

TEST_CASE("xattrs: set, get, list, remove, and debugfs reads them back", "[ns][xattr]") {
  for (const char* cfg : {"-b 1024 -I 128", "-b 4096 -I 256"}) {
    INFO(cfg);
    path_fs fs(cfg);
    REQUIRE(fs.create("f") == 0);
    REQUIRE(fs.mkdir("d") == 0);
    REQUIRE(fs.symlink("l", "f") == 0);
    REQUIRE(fs.setxattr("f", "user.one", "1") == 0);
    REQUIRE(fs.setxattr("f", "user.two", std::string(100, 't')) == 0);
    REQUIRE(fs.setxattr("f", "trusted.t", "T") == 0);
    REQUIRE(fs.setxattr("f", "security.s", "S") == 0);
    REQUIRE(fs.setxattr("f", "user.empty", "") == 0);
    REQUIRE(fs.setxattr("d", "user.dir", "D") == 0);
    CHECK(fs.setxattr("f", "user.one", "x", XATTR_OPT_CREATE) == EEXIST);
    CHECK(fs.setxattr("f", "user.none", "x", XATTR_OPT_REPLACE) == ENODATA);
    REQUIRE(fs.setxattr("f", "user.one", "uno", XATTR_OPT_REPLACE) == 0);
    CHECK(fs.setxattr("l", "user.x", "x") == EPERM);
    CHECK(fs.setxattr("f", "os2.x", "x") == EOPNOTSUPP);
    CHECK(fs.setxattr("f", "user.", "x") == EINVAL);
    CHECK(fs.setxattr("f", "user." + std::string(251, 'n'), "x") == ERANGE);
    CHECK(fs.setxattr("f", "user.big", std::string(70000, 'b')) == E2BIG);
    std::string v;
    REQUIRE(fs.getxattr("f", "user.one", &v) == 0);
    CHECK(v == "uno");
    REQUIRE(fs.getxattr("f", "user.two", &v, 0) == 0);  // size query
    CHECK(v.size() == 100);
    CHECK(fs.getxattr("f", "user.two", &v, 10) == ERANGE);
    CHECK(fs.getxattr("f", "user.none", &v) == ENODATA);
    std::vector<std::string> names;
    REQUIRE(fs.listxattr("f", &names) == 0);
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"security.s", "trusted.t", "user.empty", "user.one", "user.two"});
    auto other = user_ctx(1000, 1000);
    REQUIRE(fs.listxattr("f", &names, other) == 0);
    CHECK(std::find(names.begin(), names.end(), "trusted.t") == names.end());
    CHECK(fs.getxattr("f", "trusted.t", &v, 100, other) == ENODATA);
    CHECK(fs.setxattr("f", "user.one", "x", 0, other) == EACCES);  // mode 0644, not the owner
    CHECK(fs.setxattr("f", "trusted.t", "x", 0, other) == EPERM);
    CHECK(fs.removexattr("f", "user.none") == ENODATA);
    REQUIRE(fs.removexattr("f", "user.two") == 0);
    // filling the block: ENOSPC, and nothing lost
    int err = 0;
    for (int i = 0; i < 200 && !err; i++) err = fs.setxattr("f", "user.fill" + std::to_string(i), std::string(100, 'f'));
    CHECK(err == ENOSPC);
    REQUIRE(fs.getxattr("f", "user.one", &v) == 0);
    CHECK(v == "uno");
    // ACL names are refused on a mount without ACLs (mount_args.posix_acl false), as on a noacl mount
    CHECK(fs.setxattr("d", "system.posix_acl_default", std::string("\x02\0\0\0", 4)) == EOPNOTSUPP);
    finish(fs);
    const std::string& img = fs.image();
    std::string list = debugfs(img, "ea_list /f");
    CHECK(list.find("user.one") != std::string::npos);
    CHECK(list.find("trusted.t") != std::string::npos);
    CHECK(list.find("user.two") == std::string::npos);
    CHECK(debugfs(img, "ea_get /f user.one") .find("uno") != std::string::npos);
    CHECK(debugfs(img, "ea_get /d user.dir").find("D") != std::string::npos);
  }
}

TEST_CASE("xattrs written in the inode by debugfs are read, replaced and removed", "[ns][xattr]") {
  path_fs fs("-b 1024 -I 256");
  REQUIRE(fs.create("f") == 0);
  REQUIRE(fs.unmount() == 0);
  debugfs_w(fs.image(), "ea_set /f user.inode here");
  debugfs_w(fs.image(), "ea_set /f user.keep kept");
  REQUIRE(stat_of(fs.image(), "/f").find("File ACL: 0") != std::string::npos);
  REQUIRE(fs.remount() == 0);
  std::string v;
  REQUIRE(fs.getxattr("f", "user.inode", &v) == 0);
  CHECK(v == "here");
  REQUIRE(fs.setxattr("f", "user.inode", "moved") == 0);
  REQUIRE(fs.getxattr("f", "user.inode", &v) == 0);
  CHECK(v == "moved");
  std::vector<std::string> names;
  REQUIRE(fs.listxattr("f", &names) == 0);
  CHECK(names.size() == 2);
  REQUIRE(fs.removexattr("f", "user.keep") == 0);
  CHECK(fs.getxattr("f", "user.keep", &v) == ENODATA);
  finish(fs);
  CHECK(debugfs(fs.image(), "ea_get /f user.inode").find("moved") != std::string::npos);
  CHECK(debugfs(fs.image(), "ea_list /f").find("user.keep") == std::string::npos);
}

TEST_CASE("permissions of non-root callers: search, write, sticky, setgid directories", "[ns][perm]") {
  path_fs fs;
  auto alice = user_ctx(1000, 1000), bob = user_ctx(1001, 1001), carol = user_ctx(1002, 2000, {1000});
  REQUIRE(fs.mkdir("open", 0777) == 0);
  REQUIRE(fs.mkdir("closed", 0700) == 0);
  REQUIRE(fs.create("closed/secret") == 0);
  REQUIRE(fs.mkdir("ro", 0755) == 0);
  vnode* vp;
  CHECK(fs.lookup("closed/secret", &vp, alice) == EACCES);
  CHECK(fs.create("ro/x", 0644, alice) == EACCES);
  CHECK(fs.mkdir("ro/x", 0755, alice) == EACCES);
  // new inodes belong to the caller
  REQUIRE(fs.create("open/a", 0644, alice) == 0);
  vnode_attr va;
  REQUIRE(fs.getattr("open/a", &va) == 0);
  CHECK(va.va_uid == 1000);
  CHECK(va.va_gid == 1000);
  // sticky: bob may not remove or rename alice's file; alice and root may
  REQUIRE(fs.mkdir("tmp", 01777) == 0);
  REQUIRE(fs.create("tmp/af", 0644, alice) == 0);
  REQUIRE(fs.create("tmp/bf", 0644, bob) == 0);
  CHECK(fs.unlink("tmp/af", bob) == EPERM);
  CHECK(fs.rename("tmp/af", "tmp/z", 0, bob) == EPERM);
  CHECK(fs.rename("tmp/bf", "tmp/af", 0, bob) == EPERM);  // replacing alice's file
  REQUIRE(fs.mkdir("tmp/ad", 0777, alice) == 0);
  CHECK(fs.rmdir("tmp/ad", bob) == EPERM);
  REQUIRE(fs.unlink("tmp/af", alice) == 0);
  REQUIRE(fs.rmdir("tmp/ad") == 0);
  // setgid directory: group and S_ISGID pass down
  REQUIRE(fs.mkdir("sg", 02777) == 0);
  vnode_attr sg;
  REQUIRE(fs.chgrp("sg", 1000) == 0);
  REQUIRE(fs.getattr("sg", &sg) == 0);
  REQUIRE(fs.create("sg/f", 0644, bob) == 0);
  REQUIRE(fs.mkdir("sg/d", 0755, bob) == 0);
  REQUIRE(fs.getattr("sg/f", &va) == 0);
  CHECK(va.va_gid == 1000);
  CHECK(va.va_uid == 1001);
  REQUIRE(fs.getattr("sg/d", &va) == 0);
  CHECK(va.va_gid == 1000);
  CHECK((va.va_mode & S_ISGID) != 0);
  // a supplementary group grants access
  REQUIRE(fs.mkdir("grp", 0770) == 0);
  REQUIRE(fs.chmod("grp", 0770) == 0);
  REQUIRE(fs.chgrp("grp", 1000) == 0);
  CHECK(fs.create("grp/c", 0644, carol) == 0);
  CHECK(fs.create("grp/b", 0644, bob) == EACCES);
  // xattr on a sticky dir by a non-owner
  CHECK(fs.setxattr("tmp", "user.x", "x", 0, bob) == EPERM);
  finish(fs);
  CHECK(stat_of(fs.image(), "/sg/d").find("Group:  1000") != std::string::npos);
}

TEST_CASE("a shared xattr block is copied on write; its refcount stays right", "[ns][xattr]") {
  path_fs fs("-b 1024 -I 128");
  REQUIRE(fs.create("f") == 0);
  REQUIRE(fs.create("g") == 0);
  REQUIRE(fs.setxattr("f", "user.s", "shared") == 0);
  REQUIRE(fs.unmount() == 0);
  // Share f's block with g, as the kernel's mbcache would have.
  std::smatch m;
  std::string st = stat_of(fs.image(), "/f");
  REQUIRE(std::regex_search(st, m, std::regex("File ACL: (\\d+)")));
  uint64_t blk = std::stoull(m[1]);
  debugfs_w(fs.image(), "sif /g file_acl " + std::to_string(blk));
  debugfs_w(fs.image(), "sif /g blocks 2");
  auto b = read_block(fs.image(), blk, 1024);
  b[4] = 2;  // h_refcount
  write_block(fs.image(), blk, b);
  require_fsck_clean(fs.image());
  REQUIRE(fs.remount() == 0);
  std::string v;
  REQUIRE(fs.getxattr("g", "user.s", &v) == 0);
  CHECK(v == "shared");
  REQUIRE(fs.setxattr("g", "user.t", "mine") == 0);  // copy on write
  CHECK(fs.getxattr("f", "user.t", &v) == ENODATA);
  REQUIRE(fs.getxattr("f", "user.s", &v) == 0);
  REQUIRE(fs.unmount() == 0);
  require_fsck_clean(fs.image());
  CHECK(stat_of(fs.image(), "/g").find("File ACL: " + std::to_string(blk)) == std::string::npos);
  CHECK(read_block(fs.image(), blk, 1024)[4] == 1);
  REQUIRE(fs.remount() == 0);
  REQUIRE(fs.unlink("f") == 0);  // the last reference to the old block: freed
  REQUIRE(fs.removexattr("g", "user.s") == 0);
  finish(fs);
  std::string list = debugfs(fs.image(), "ea_list /g");
  CHECK(list.find("user.t") != std::string::npos);
  CHECK(list.find("user.s") == std::string::npos);
  CHECK(debugfs(fs.image(), "testb " + std::to_string(blk)).find("not in use") != std::string::npos);
}

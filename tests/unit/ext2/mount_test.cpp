// mount_test.cpp: mount, statfs, unmount state, and the refusal of images the superblock or descriptors
// make untrustworthy (each refused or read-only, with the field named in the log).
#include <sys/statvfs.h>

#include <catch2/catch.hpp>

#include "support/ext2_fixture.h"

using namespace ext2test;

TEST_CASE("mount: clean images mount read-write, count the mount and unmount clean", "[ext2][mount]") {
  image_config c = GENERATE(from_range(all_configs()));
  INFO(c.label());
  tmpdir t;
  std::string img = t.path + "/img";
  make_image(img, c, 8192);
  uint64_t free_blocks = dumpe2fs_field(img, "Free blocks");
  uint64_t free_inodes = dumpe2fs_field(img, "Free inodes");
  uint64_t reserved = dumpe2fs_field(img, "Reserved block count");
  {
    mounted m(img);
    REQUIRE(m.mount_error() == 0);
    struct statvfs st;
    REQUIRE(VFS_STATFS(m.mp(), &st, vfs_context::kernel()) == 0);
    CHECK(st.f_bsize == c.block_size);
    CHECK(st.f_bfree == free_blocks);
    // f_bavail: free - reserved, less the indirect blocks one file holding all of it needs (generic/103).
    const uint64_t usable = free_blocks - reserved, per = c.block_size / 4;
    CHECK(st.f_bavail < usable);
    CHECK(st.f_bavail > usable - usable / (per - 1) - 16);
    CHECK(st.f_ffree == free_inodes);
    CHECK(st.f_namemax == 255);
    vnode* root = m.root();
    vnode_attr va;
    REQUIRE(vgetattr(root, &va) == 0);
    CHECK(va.va_type == vtype::VDIR);
    CHECK(va.va_fileid == 2);
    CHECK(va.va_nlink >= 3);
    vnode_put(root);
    // While mounted the superblock says "not clean".
    CHECK(dumpe2fs_value(img, "Filesystem state") == "not clean");
    REQUIRE(m.unmount() == 0);
  }
  std::string out;
  bool fsck_ok = fsck_clean(img, &out);
  INFO(out);
  CHECK(fsck_ok);
  CHECK(dumpe2fs_field(img, "Mount count") == 1);
  // The whole value: "not clean" contains "clean".
  CHECK(dumpe2fs_value(img, "Filesystem state") == "clean");
  CHECK(dumpe2fs_field(img, "Free blocks") == free_blocks);
  CHECK(dumpe2fs_field(img, "Free inodes") == free_inodes);
}

TEST_CASE("mount: unmount with a referenced vnode is EBUSY", "[ext2][mount]") {
  tmpdir t;
  std::string img = t.path + "/img";
  make_image(img, {}, 4096);
  mounted m(img);
  REQUIRE(m.mount_error() == 0);
  vnode* root = m.root();
  CHECK(m.unmount() == EBUSY);
  vnode_put(root);
  CHECK(m.unmount() == 0);
  CHECK(fsck_clean(img));
}

namespace {

struct bad_image {
  const char* what;
  uint32_t block_size;
  const char* debugfs_req;  // applied with debugfs -w
  int err;                  // 0: mounts read-only
  const char* log;          // expected in the log line
};

const bad_image kBad[] = {
    {"bad magic", 4096, "raw 1080 \\064\\022", EINVAL, "s_magic: 0x1234"},
    {"future revision", 4096, "ssv rev_level 2", EINVAL, "s_rev_level"},
    {"block size 128 KiB", 4096, "ssv log_block_size 7", EINVAL, "s_log_block_size"},
    {"inode count", 4096, "ssv inodes_count 12345", EINVAL, "s_inodes_count"},
    {"first data block", 1024, "ssv first_data_block 0", EINVAL, "s_first_data_block"},
    {"blocks per group", 4096, "ssv blocks_per_group 0", EINVAL, "s_blocks_per_group"},
    {"inode size", 4096, "ssv inode_size 100", EINVAL, "s_inode_size"},
    {"inode size past block", 1024, "ssv inode_size 2048", EINVAL, "s_inode_size"},
    {"blocks past the device", 4096, "ssv blocks_count 99999999", EINVAL, "s_blocks_count"},
    {"first inode", 4096, "ssv first_ino 3", EINVAL, "s_first_ino"},
    {"unknown incompat bit", 4096, "ssv feature_incompat 0x40000002", ENOTSUP, "unknown 0x40000000"},
    {"extents", 4096, "feature extent", ENOTSUP, "extent"},
    {"64bit", 4096, "ssv feature_incompat 0x82", ENOTSUP, "64bit"},
    {"flex_bg", 4096, "feature flex_bg", ENOTSUP, "flex_bg"},
    {"meta_bg", 4096, "ssv feature_incompat 0x12", ENOTSUP, "meta_bg"},
    {"inline data", 4096, "ssv feature_incompat 0x8002", ENOTSUP, "inline_data"},
    {"journal", 4096, "feature has_journal", ENOTSUP, "has_journal"},
    {"needs recovery", 4096, "feature needs_recovery", ENOTSUP, "needs_recovery"},
    {"journal device", 4096, "ssv feature_incompat 0xa", ENOTSUP, "journal_dev"},
    {"inode table over the bitmap", 4096, "set_bg 0 inode_table 0", EINVAL, "bg_inode_table"},
    {"block bitmap outside", 4096, "set_bg 0 block_bitmap 999999", EINVAL, "bg_block_bitmap"},
    {"inode bitmap on block bitmap", 1024, "set_bg 1 inode_bitmap 8195", EINVAL, "bg_inode_bitmap"},
    {"unknown ro_compat bit", 4096, "ssv feature_ro_compat 0x40000003", 0, "unknown 0x40000000"},
    {"metadata_csum", 4096, "ssv feature_ro_compat 0x403", 0, "metadata_csum"},
    {"not clean", 4096, "ssv state 0", 0, "s_state"},
    {"errors found", 4096, "ssv state 3", 0, "s_state"},
};

}  // namespace

TEST_CASE("mount: untrustworthy superblocks and descriptors are refused or mounted read-only", "[ext2][mount]") {
  const bad_image& b = GENERATE(from_range(std::begin(kBad), std::end(kBad)));
  INFO(b.what << ": " << b.debugfs_req);
  tmpdir t;
  std::string img = t.path + "/img";
  make_image(img, {b.block_size, 256, true, true}, 16384);
  std::string req = b.debugfs_req;
  if (req.rfind("raw ", 0) == 0) {  // "raw OFFSET BYTES": bytes (printf escapes) written at a byte offset
    auto sp = req.find(' ', 4);
    sh("printf '" + req.substr(sp + 1) + "' | dd of=" + quote(img) + " bs=1 seek=" + req.substr(4, sp - 4) +
       " conv=notrunc status=none");
  } else {
    debugfs_w(img, req);
  }
  std::string before = sh("md5sum < " + quote(img));
  stderr_capture cap;
  mounted m(img);
  std::string log;
  if (b.err) {
    log = cap.text();
    INFO("log: " << log);
    CHECK(m.mount_error() == b.err);
    CHECK(log.find(b.log) != std::string::npos);
    CHECK(std::count(log.begin(), log.end(), '\n') == 1);
  } else {
    REQUIRE(m.mount_error() == 0);
    log = cap.text();
    INFO("log: " << log);
    CHECK(log.find(b.log) != std::string::npos);
    CHECK(log.find("read-only") != std::string::npos);
    vnode* root = m.root();
    vnode_attr va;
    CHECK(vgetattr(root, &va) == 0);
    vnode_put(root);
    struct statvfs st;
    REQUIRE(VFS_STATFS(m.mp(), &st, vfs_context::kernel()) == 0);
    CHECK((st.f_flag & ST_RDONLY) != 0);
    CHECK(m.unmount() == 0);
  }
  CHECK(sh("md5sum < " + quote(img)) == before);  // a refused or read-only mount writes nothing
}

TEST_CASE("mount: a read-only mount writes nothing and refuses writes", "[ext2][mount]") {
  tmpdir t;
  std::string img = t.path + "/img";
  std::string dir = t.path + "/d";
  sh("mkdir -p " + quote(dir) + " && printf hello > " + quote(dir + "/f"));
  make_image(img, {}, 4096, dir);
  std::string before = sh("md5sum < " + quote(img));
  {
    mounted m(img, /*rdonly=*/true);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(img, "/f"));
    std::string got;
    CHECK(vread(vp, 0, 100, &got) == 0);
    CHECK(got == "hello");
    CHECK(vwrite(vp, 0, "x") == EROFS);
    CHECK(vtruncate(vp, 0) == EROFS);
    vnode_put(vp);
    CHECK(m.unmount() == 0);
  }
  CHECK(sh("md5sum < " + quote(img)) == before);
}

TEST_CASE("mount: vget validates the inode number", "[ext2][mount]") {
  tmpdir t;
  std::string img = t.path + "/img";
  make_image(img, {}, 4096);
  mounted m(img);
  REQUIRE(m.mount_error() == 0);
  vnode* vp = nullptr;
  CHECK(VFS_VGET(m.mp(), 0, &vp, vfs_context::kernel()) == EINVAL);
  CHECK(VFS_VGET(m.mp(), 7, &vp, vfs_context::kernel()) == EINVAL);   // reserved (resize inode)
  CHECK(VFS_VGET(m.mp(), 1u << 30, &vp, vfs_context::kernel()) == EINVAL);
  CHECK(VFS_VGET(m.mp(), 20, &vp, vfs_context::kernel()) == ESTALE);  // free inode
  CHECK(m.unmount() == 0);
  CHECK(fsck_clean(img));
}

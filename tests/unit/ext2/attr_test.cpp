// attr_test.cpp: getattr against debugfs, setattr's permission rules (chmod/chown/chgrp/utimensat),
// suid/sgid clearing on chown and truncate, nanosecond times in large inodes, access.
#include <fcntl.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include "support/ext2_fixture.h"

using namespace ext2test;

namespace {

struct attr_image {
  tmpdir t;
  std::string img = t.path + "/img";
  explicit attr_image(const image_config& c = {}) {
    std::string d = t.path + "/d";
    sh("mkdir -p " + quote(d) + " && printf 0123456789 > " + quote(d + "/f"));
    make_image(img, c, 4096, d);
  }
};

vnode_attr attrs(vnode* vp) {
  vnode_attr va;
  REQUIRE(vgetattr(vp, &va) == 0);
  return va;
}

int set_owner(vnode* vp, uid_t uid, gid_t gid, mode_t mode) {
  vnode_attr va;
  va.va_active = VA_UID | VA_GID | VA_MODE;
  va.va_uid = uid;
  va.va_gid = gid;
  va.va_mode = mode;
  return vsetattr(vp, va);
}

}  // namespace

TEST_CASE("getattr: matches what debugfs reads", "[ext2][attr]") {
  attr_image a;
  mounted m(a.img);
  REQUIRE(m.mount_error() == 0);
  uint32_t ino = ino_of(a.img, "/f");
  vnode* vp = m.vget(ino);
  vnode_attr va = attrs(vp);
  CHECK(va.va_type == vtype::VREG);
  CHECK(va.va_fileid == ino);
  CHECK(va.va_size == 10);
  CHECK(va.va_nlink == 1);
  CHECK(va.va_mode == stat_field(a.img, "/f", "Mode") + S_IFREG);
  CHECK(va.va_blocks == stat_field(a.img, "/f", "Blockcount"));
  CHECK(va.va_blksize == 4096);
  vnode_put(vp);
  REQUIRE(m.unmount() == 0);
}

TEST_CASE("setattr: chmod, chown and chgrp follow the kernel's permission rules", "[ext2][attr][perm]") {
  attr_image a;
  {
    mounted m(a.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(a.img, "/f"));
    REQUIRE(set_owner(vp, 1000, 100, 0644) == 0);
    vfs_context owner = user_ctx(1000, 100, {200});
    vfs_context other = user_ctx(2000, 2000);
    vnode_attr va;
    va.va_active = VA_MODE;
    va.va_mode = 0600;
    CHECK(vsetattr(vp, va, &other) == EPERM);
    CHECK(vsetattr(vp, va, &owner) == 0);
    CHECK((attrs(vp).va_mode & 07777) == 0600);
    va.va_active = VA_UID;
    va.va_uid = 2000;
    CHECK(vsetattr(vp, va, &owner) == EPERM);  // giving a file away needs root
    va.va_uid = 1000;
    CHECK(vsetattr(vp, va, &owner) == 0);      // to oneself: allowed
    va.va_active = VA_GID;
    va.va_gid = 300;
    CHECK(vsetattr(vp, va, &owner) == EPERM);  // not a member of 300
    va.va_gid = 200;
    CHECK(vsetattr(vp, va, &owner) == 0);      // a supplementary group
    CHECK(attrs(vp).va_gid == 200);
    CHECK(vsetattr(vp, va, &other) == EPERM);
    // chmod by a non-member of the file's group drops S_ISGID.
    REQUIRE(set_owner(vp, 1000, 500, 0644) == 0);
    va.va_active = VA_MODE;
    va.va_mode = 02755;
    CHECK(vsetattr(vp, va, &owner) == 0);
    CHECK((attrs(vp).va_mode & 07777) == 0755);
    // chown clears setuid (even by root) and setgid when group-exec is set.
    va.va_mode = 06755;
    REQUIRE(vsetattr(vp, va) == 0);
    va.va_active = VA_UID;
    va.va_uid = 1001;
    REQUIRE(vsetattr(vp, va) == 0);
    CHECK((attrs(vp).va_mode & 07777) == 0755);
    // Truncate by a non-root caller clears them too.
    REQUIRE(set_owner(vp, 1000, 100, 06755) == 0);
    REQUIRE(set_owner(vp, 1000, 100, 06755) == 0);
    va.va_active = VA_MODE;
    va.va_mode = 06755;
    REQUIRE(vsetattr(vp, va) == 0);
    REQUIRE(vtruncate(vp, 5, &owner) == 0);
    CHECK((attrs(vp).va_mode & 07777) == 0755);
    CHECK(attrs(vp).va_size == 5);
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  CHECK(fsck_clean(a.img));
  CHECK((stat_field(a.img, "/f", "Mode") & 07777) == 0755);
  CHECK(stat_field(a.img, "/f", "User") == 1000);
  CHECK(stat_field(a.img, "/f", "Size") == 5);
}

TEST_CASE("setattr: utimensat rules and nanosecond times", "[ext2][attr][perm]") {
  image_config c = GENERATE(image_config{4096, 256, true, true}, image_config{4096, 128, true, true});
  INFO(c.label());
  attr_image a(c);
  {
    mounted m(a.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(a.img, "/f"));
    REQUIRE(set_owner(vp, 1000, 100, 0664) == 0);
    vfs_context owner = user_ctx(1000, 100);
    vfs_context writer = user_ctx(2000, 100);  // group-writable
    vfs_context other = user_ctx(3000, 3000);
    vnode_attr va;
    va.va_active = VA_ATIME | VA_MTIME;
    va.va_atime = {1600000000, 123456789};
    va.va_mtime = {1500000000, 987654321};
    CHECK(vsetattr(vp, va, &writer) == EPERM);  // explicit times: owner or root
    CHECK(vsetattr(vp, va, &other) == EPERM);
    REQUIRE(vsetattr(vp, va, &owner) == 0);
    vnode_attr got = attrs(vp);
    CHECK(got.va_atime.tv_sec == 1600000000);
    CHECK(got.va_mtime.tv_sec == 1500000000);
    if (c.inode_size > 128) {
      CHECK(got.va_atime.tv_nsec == 123456789);
      CHECK(got.va_mtime.tv_nsec == 987654321);
    } else {
      CHECK(got.va_atime.tv_nsec == 0);
    }
    va.va_active = VA_ATIME_NOW | VA_MTIME_NOW;
    CHECK(vsetattr(vp, va, &other) == EACCES);  // "now": owner, root or a writer
    CHECK(vsetattr(vp, va, &writer) == 0);
    CHECK(attrs(vp).va_mtime.tv_sec > 1600000000);
    // Times past 2038 survive in large inodes (epoch bits).
    va.va_active = VA_MTIME;
    va.va_mtime = {4000000000ll, 5};
    REQUIRE(vsetattr(vp, va) == 0);
    if (c.inode_size > 128) CHECK(attrs(vp).va_mtime.tv_sec == 4000000000ll);
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  CHECK(fsck_clean(a.img));
  if (c.inode_size > 128) {
    std::string st = debugfs(a.img, "stat /f");
    INFO(st);
    CHECK(st.find("mtime: 0xee6b2800:00000015") != std::string::npos);  // 4000000000 s: epoch bit 1, 5 ns
  }
}

TEST_CASE("access: owner, group, other and root", "[ext2][attr][perm]") {
  attr_image a;
  mounted m(a.img);
  REQUIRE(m.mount_error() == 0);
  vnode* vp = m.vget(ino_of(a.img, "/f"));
  REQUIRE(set_owner(vp, 1000, 100, 0640) == 0);
  vfs_context owner = user_ctx(1000, 5);
  vfs_context member = user_ctx(2000, 5, {100});
  vfs_context other = user_ctx(3000, 3000);
  CHECK(VNOP_ACCESS(vp, 06, &owner) == 0);
  CHECK(VNOP_ACCESS(vp, 01, &owner) == EACCES);
  CHECK(VNOP_ACCESS(vp, 04, &member) == 0);
  CHECK(VNOP_ACCESS(vp, 02, &member) == EACCES);
  CHECK(VNOP_ACCESS(vp, 04, &other) == EACCES);
  CHECK(VNOP_ACCESS(vp, 06, kctx()) == 0);
  CHECK(VNOP_ACCESS(vp, 01, kctx()) == EACCES);  // root executes only what someone may execute
  vnode* root = m.root();
  CHECK(VNOP_ACCESS(root, 01, kctx()) == 0);
  vnode_put(root);
  vnode_put(vp);
  REQUIRE(m.unmount() == 0);
}

namespace {

int ioctl_flags(vnode* vp, unsigned long cmd, uint32_t* fl, vfs_context* ctx = kctx()) {
  vn_exclusive l(vp);
  return VNOP_IOCTL(vp, cmd, fl, 0, ctx);
}
int open_as(vnode* vp, int flags, vfs_context* ctx = kctx()) { return VNOP_OPEN(vp, flags, ctx); }

}  // namespace

TEST_CASE("flags: FIOGETFLAGS/FIOSETFLAGS follow chattr's rules and immutable/append-only are enforced",
          "[ext2][attr][flags]") {
  constexpr uint32_t kSync = 0x8, kImmutable = 0x10, kAppend = 0x20, kNodump = 0x40, kNoatime = 0x80;
  attr_image a;
  {
    mounted m(a.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(a.img, "/f"));
    REQUIRE(set_owner(vp, 1000, 100, 0644) == 0);
    vfs_context owner = user_ctx(1000, 100);
    vfs_context other = user_ctx(2000, 2000);
    uint32_t fl = kNodump | kNoatime | kSync;
    CHECK(ioctl_flags(vp, FIOSETFLAGS, &fl, &other) == EPERM);  // not the owner
    CHECK(ioctl_flags(vp, FIOSETFLAGS, &fl, &owner) == 0);
    fl = 0;
    REQUIRE(ioctl_flags(vp, FIOGETFLAGS, &fl) == 0);
    CHECK(fl == (kNodump | kNoatime | kSync));
    CHECK(vwrite(vp, 10, "sync") == 0);  // chattr +S: written synchronously, still a write

    fl = kImmutable;
    CHECK(ioctl_flags(vp, FIOSETFLAGS, &fl, &owner) == EPERM);  // CAP_LINUX_IMMUTABLE: root only
    REQUIRE(ioctl_flags(vp, FIOSETFLAGS, &fl) == 0);
    CHECK(open_as(vp, O_RDONLY) == 0);
    CHECK(open_as(vp, O_WRONLY) == EPERM);
    CHECK(open_as(vp, O_RDONLY | O_TRUNC) == EPERM);
    CHECK(vwrite(vp, 0, "x") == EPERM);
    CHECK(vtruncate(vp, 0) == EPERM);
    CHECK(set_owner(vp, 1000, 100, 0600) == EPERM);
    CHECK(vsize(vp) == 14);

    fl = kAppend;
    REQUIRE(ioctl_flags(vp, FIOSETFLAGS, &fl) == 0);
    CHECK(open_as(vp, O_WRONLY) == EPERM);
    CHECK(open_as(vp, O_WRONLY | O_APPEND) == 0);
    CHECK(open_as(vp, O_WRONLY | O_APPEND | O_TRUNC) == EPERM);
    CHECK(vwrite(vp, 0, "x") == EPERM);                       // not an append
    CHECK(vwrite(vp, 0, "tail", IO_UNIT | IO_APPEND) == 0);
    CHECK(vtruncate(vp, 0) == EPERM);
    CHECK(set_owner(vp, 1000, 100, 0600) == EPERM);
    CHECK(vsize(vp) == 18);
    fl = 0;
    CHECK(ioctl_flags(vp, FIOSETFLAGS, &fl, &owner) == EPERM);  // clearing append-only: root only too
    REQUIRE(ioctl_flags(vp, FIOSETFLAGS, &fl) == 0);
    CHECK(vtruncate(vp, 0) == 0);
    fl = kNodump | 0x00080000;  // extents: not chattr's to set
    REQUIRE(ioctl_flags(vp, FIOSETFLAGS, &fl) == 0);
    REQUIRE(ioctl_flags(vp, FIOGETFLAGS, &fl) == 0);
    CHECK(fl == kNodump);
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  require_fsck_clean(a.img);
  CHECK(debugfs(a.img, "stat /f").find("Flags: 0x40") != std::string::npos);
}

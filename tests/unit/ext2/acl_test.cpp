// acl_test.cpp: POSIX ACL codecs (ext2's on-disk form against the user-space xattr form, byte for byte as
// the kernel's fs/ext2/acl.c and posix_acl_xattr.h lay them out) and the rules the kernel applies on
// create (posix_acl_create_masq), chmod (__posix_acl_chmod), setfacl (posix_acl_equiv_mode) and access.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include "vnops/ext2/acl.h"

using namespace vnopfs;
using namespace vnopfs::ext2;

namespace {

const posix_acl kNamed = {{ACL_TAG_USER_OBJ, 7, kAclUndefinedId}, {ACL_TAG_USER, 6, 1001},
                          {ACL_TAG_GROUP_OBJ, 5, kAclUndefinedId}, {ACL_TAG_GROUP, 4, 2000},
                          {ACL_TAG_MASK, 7, kAclUndefinedId},    {ACL_TAG_OTHER, 1, kAclUndefinedId}};

vfs_context user(uid_t uid, gid_t gid, std::vector<gid_t> groups = {}) {
  vfs_context c;
  c.uid = uid;
  c.gid = gid;
  c.groups = std::move(groups);
  return c;
}

}  // namespace

TEST_CASE("acl: ext2 disk form: short entries for the *_OBJ, MASK, OTHER tags, long ones with an id", "[ext2][acl]") {
  std::string d = acl_to_disk(kNamed);
  // header 4 + 4 short entries of 4 + 2 long entries of 8
  REQUIRE(d.size() == 4 + 4 * 4 + 2 * 8);
  CHECK(d.substr(0, 4) == std::string("\x01\x00\x00\x00", 4));
  CHECK(d.substr(4, 4) == std::string("\x01\x00\x07\x00", 4));                  // USER_OBJ rwx
  CHECK(d.substr(8, 8) == std::string("\x02\x00\x06\x00\xe9\x03\x00\x00", 8));  // USER 1001 rw-
  posix_acl back;
  REQUIRE(acl_from_disk(d, &back));
  CHECK(back == kNamed);
}

TEST_CASE("acl: user-space xattr form: version 2, 8-byte entries, undefined ids for the *_OBJ", "[ext2][acl]") {
  std::string x = acl_to_xattr(kNamed);
  REQUIRE(x.size() == 4 + 6 * 8);
  CHECK(x.substr(0, 4) == std::string("\x02\x00\x00\x00", 4));
  CHECK(x.substr(4, 8) == std::string("\x01\x00\x07\x00\xff\xff\xff\xff", 8));
  posix_acl back;
  REQUIRE(acl_from_xattr(x, &back));
  CHECK(back == kNamed);
  // the two forms carry the same ACL
  posix_acl from_disk;
  REQUIRE(acl_from_disk(acl_to_disk(back), &from_disk));
  CHECK(acl_to_xattr(from_disk) == x);
}

TEST_CASE("acl: malformed values are refused", "[ext2][acl]") {
  posix_acl a;
  std::string x = acl_to_xattr(kNamed);
  CHECK_FALSE(acl_from_xattr(x.substr(0, x.size() - 1), &a));          // not whole entries
  CHECK_FALSE(acl_from_xattr(std::string("\x01\x00\x00\x00", 4), &a));  // disk version in xattr form
  std::string d = acl_to_disk(kNamed);
  CHECK_FALSE(acl_from_disk(d.substr(0, d.size() - 2), &a));           // cut inside an entry
  std::string bad = d;
  bad[6] = 8;  // USER_OBJ perm with a bit beyond rwx
  CHECK_FALSE(acl_from_disk(bad, &a));
  bad = d;
  bad[4] = 0x40;  // unknown tag
  CHECK_FALSE(acl_from_disk(bad, &a));
}

TEST_CASE("acl: validity as posix_acl_valid decides it", "[ext2][acl]") {
  CHECK(acl_valid(kNamed) == 0);
  posix_acl no_mask = kNamed;
  no_mask.erase(no_mask.begin() + 4);
  CHECK(acl_valid(no_mask) == EINVAL);  // named entries need a mask
  posix_acl dup = kNamed;
  dup.insert(dup.begin() + 1, {ACL_TAG_USER, 4, 1001});
  CHECK(acl_valid(dup) == EINVAL);
  posix_acl unsorted = {kNamed[5], kNamed[0], kNamed[2]};
  CHECK(acl_valid(unsorted) == EINVAL);
  acl_sort(&unsorted);
  CHECK(acl_valid(unsorted) == 0);
}

TEST_CASE("acl: equivalent mode, create mask, chmod", "[ext2][acl]") {
  posix_acl minimal = {{ACL_TAG_USER_OBJ, 6, kAclUndefinedId}, {ACL_TAG_GROUP_OBJ, 4, kAclUndefinedId},
                       {ACL_TAG_OTHER, 4, kAclUndefinedId}};
  mode_t mode = S_IFREG | S_ISGID | 0777;
  CHECK(acl_equiv_mode(minimal, &mode) == 0);
  CHECK(mode == (S_IFREG | S_ISGID | 0644));
  mode = S_IFREG | 0600;
  CHECK(acl_equiv_mode(kNamed, &mode) == 1);
  CHECK(mode == (S_IFREG | 0771));  // group bits from the mask

  // a file created with 0666 under a default ACL: the entries are cut by the mode, the mask too
  posix_acl inherit = kNamed;
  mode = S_IFREG | 0666;
  CHECK(acl_create_masq(&inherit, &mode) == 1);
  CHECK(mode == (S_IFREG | 0660));  // owner rw (rwx & rw-), mask rw-, other --x & rw- = ---
  CHECK(inherit[0].perm == 6);
  CHECK(inherit[4].perm == 6);  // mask
  CHECK(inherit[1].perm == 6);  // named entries keep theirs (the mask limits them)
  posix_acl plain = minimal;
  mode = S_IFDIR | 0700;
  CHECK(acl_create_masq(&plain, &mode) == 0);  // no named entries: the mode says it all
  CHECK(mode == (S_IFDIR | 0600));

  posix_acl c = kNamed;
  acl_chmod(&c, 0751);
  CHECK(c[0].perm == 7);
  CHECK(c[2].perm == 5);  // GROUP_OBJ untouched when there is a mask
  CHECK(c[4].perm == 5);  // the mask takes the group bits
  CHECK(c[5].perm == 1);
}

TEST_CASE("acl: permission: owner, named user under the mask, groups, other", "[ext2][acl]") {
  // file owned by 1000:1000 with kNamed (mask rwx): 1001 rw-, group 2000 r--, other --x
  CHECK(acl_permission(kNamed, 1000, 1000, 7, user(1000, 1000)) == 0);
  CHECK(acl_permission(kNamed, 1000, 1000, 6, user(1001, 1001)) == 0);
  CHECK(acl_permission(kNamed, 1000, 1000, 1, user(1001, 1001)) == EACCES);
  CHECK(acl_permission(kNamed, 1000, 1000, 4, user(1002, 1002, {2000})) == 0);
  CHECK(acl_permission(kNamed, 1000, 1000, 2, user(1002, 1002, {2000})) == EACCES);
  CHECK(acl_permission(kNamed, 1000, 1000, 1, user(1002, 1002, {2000})) == EACCES);  // a group matched: not other
  CHECK(acl_permission(kNamed, 1000, 1000, 1, user(1003, 1003)) == 0);
  posix_acl masked = kNamed;
  masked[4].perm = 4;  // mask r--
  CHECK(acl_permission(masked, 1000, 1000, 2, user(1001, 1001)) == EACCES);
  CHECK(acl_permission(masked, 1000, 1000, 4, user(1001, 1001)) == 0);
}

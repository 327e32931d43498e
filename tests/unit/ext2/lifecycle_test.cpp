// lifecycle_test.cpp: the vnode lifecycle of ext2 inodes: one vnode per inode, an inode with no links
// living on while referenced (open-unlinked), freed with its blocks at the last reference, and the free
// counts back where they were. Inodes are made with ext2_ialloc (ext2.h), no directory entry needed.
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <catch2/catch.hpp>

#include "support/ext2_fixture.h"
#include "vnops/ext2/ext2.h"

using namespace ext2test;
using namespace vnopfs::ext2;

TEST_CASE("lifecycle: an unlinked inode works while referenced and is freed at its last reference", "[ext2][life]") {
  image_config c = GENERATE(image_config{1024, 256, true, true}, image_config{4096, 128, false, false});
  INFO(c.label());
  tmpdir t;
  std::string img = t.path + "/img";
  make_image(img, c, 8192);
  uint32_t ino = 0;
  {
    mounted m(img);
    REQUIRE(m.mount_error() == 0);
    struct statvfs before, during, after;
    REQUIRE(VFS_STATFS(m.mp(), &before, vfs_context::kernel()) == 0);
    vnode* root = m.root();
    vnode* vp = nullptr;
    REQUIRE(ext2_ialloc(ext2_mount_of(m.mp()), VTOI(root), S_IFREG | 0644, 0, 0, &vp) == 0);
    vnode_put(root);
    ino = static_cast<uint32_t>(vp->v_id);
    vnode_ref(vp);  // an open file: a long-term reference
    vnode_put(vp);
    // One vnode per inode: vget finds the same one.
    vnode* again = m.vget(ino);
    CHECK(again == vp);
    vnode_put(again);
    std::string d = pattern(3u << 20, 17);
    REQUIRE(vwrite(vp, 0, d) == 0);
    REQUIRE(vfsync(vp) == 0);
    std::string got;
    REQUIRE(vread(vp, 0, d.size(), &got) == 0);
    CHECK((got == d));
    REQUIRE(VFS_STATFS(m.mp(), &during, vfs_context::kernel()) == 0);
    CHECK(during.f_bfree < before.f_bfree - d.size() / c.block_size + 1);
    CHECK(during.f_ffree == before.f_ffree - 1);
    vnode_rele(vp);  // the last reference: inactive frees blocks and inode
    REQUIRE(VFS_STATFS(m.mp(), &after, vfs_context::kernel()) == 0);
    CHECK(after.f_bfree == before.f_bfree);
    CHECK(after.f_ffree == before.f_ffree);
    vnode* stale = nullptr;
    CHECK(VFS_VGET(m.mp(), ino, &stale, vfs_context::kernel()) == ESTALE);
    REQUIRE(m.unmount() == 0);
  }
  std::string out;
  bool clean = fsck_clean(img, &out);
  INFO(out);
  CHECK(clean);
  std::string st = debugfs(img, "stat <" + std::to_string(ino) + ">");
  INFO(st);
  CHECK(st.find("Links: 0") != std::string::npos);
  CHECK(st.find("dtime:") != std::string::npos);
  CHECK(st.find("Size: 0") != std::string::npos);
}

TEST_CASE("lifecycle: an allocated inode is reused only after it was freed", "[ext2][life]") {
  tmpdir t;
  std::string img = t.path + "/img";
  make_image(img, {}, 8192);
  mounted m(img);
  REQUIRE(m.mount_error() == 0);
  ext2_mount* em = ext2_mount_of(m.mp());
  vnode* root = m.root();
  vnode* a = nullptr;
  vnode* b = nullptr;
  REQUIRE(ext2_ialloc(em, VTOI(root), S_IFREG | 0600, 1000, 1000, &a) == 0);
  REQUIRE(ext2_ialloc(em, VTOI(root), S_IFREG | 0600, 1000, 1000, &b) == 0);
  CHECK(a->v_id != b->v_id);
  vnode_attr va;
  REQUIRE(vgetattr(a, &va) == 0);
  CHECK(va.va_uid == 1000);
  CHECK(va.va_nlink == 0);
  CHECK(va.va_size == 0);
  const uint64_t freed = a->v_id;
  vnode_put(a);
  vnode* c = nullptr;
  REQUIRE(ext2_ialloc(em, VTOI(root), S_IFREG | 0600, 0, 0, &c) == 0);
  CHECK(c->v_id == freed);  // the lowest free inode of the group again
  vnode_put(b);
  vnode_put(c);
  vnode_put(root);
  REQUIRE(m.unmount() == 0);
  CHECK(fsck_clean(img));
}

// lifecycle_test.cpp: the vnode lifecycle of ext2 inodes: one vnode per inode, an inode with no links
// living on while referenced (open-unlinked), freed with its blocks at the last reference, and the free
// counts back where they were. Inodes are made with ext2_ialloc (ext2.h), no directory entry needed.
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstring>

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
  CHECK(c->v_id != freed);  // not before the metadata that named it is known to be on disk
  REQUIRE(VFS_SYNC(m.mp(), MNT_WAIT, vfs_context::kernel()) == 0);
  vnode* d = nullptr;
  REQUIRE(ext2_ialloc(em, VTOI(root), S_IFREG | 0600, 0, 0, &d) == 0);
  CHECK(d->v_id == freed);  // after a sync: the lowest free inode of the group again
  vnode_put(b);
  vnode_put(c);
  vnode_put(d);
  vnode_put(root);
  REQUIRE(m.unmount() == 0);
  CHECK(fsck_clean(img));
}

namespace {

componentname cn(const char* name) { return componentname{name, std::strlen(name)}; }

vnode* create_file(vnode* dir, const char* name, mode_t mode = 0644) {
  componentname c = cn(name);
  vnode_attr va;
  va.va_active = VA_MODE;
  va.va_mode = S_IFREG | mode;
  vnode* vp = nullptr;
  vn_exclusive l(dir);
  REQUIRE(VNOP_CREATE(dir, &c, &va, &vp, kctx()) == 0);
  return vp;
}

int remove_file(vnode* dir, vnode* vp, const char* name) {
  componentname c = cn(name);
  vn_lock_pair(dir, vp);
  int err = VNOP_REMOVE(dir, vp, &c, 0, kctx());
  vn_unlock_pair(dir, vp);
  return err;
}

}  // namespace

TEST_CASE("lifecycle: create, write, remove while open, keep using, last close frees", "[ext2][life]") {
  image_config c = GENERATE(from_range(all_configs()));
  INFO(c.label());
  tmpdir t;
  std::string img = t.path + "/img";
  make_image(img, c, 8192);
  const uint64_t free_blocks = dumpe2fs_field(img, "Free blocks");
  const uint64_t free_inodes = dumpe2fs_field(img, "Free inodes");
  {
    mounted m(img);
    REQUIRE(m.mount_error() == 0);
    vnode* root = m.root();
    vnode* vp = create_file(root, "victim");
    vnode_ref(vp);  // open
    std::string d = pattern(1500000, 21);
    REQUIRE(vwrite(vp, 0, d) == 0);
    REQUIRE(remove_file(root, vp, "victim") == 0);
    vnode_attr va;
    REQUIRE(vgetattr(vp, &va) == 0);
    CHECK(va.va_nlink == 0);
    // Still readable and writable through the open reference.
    REQUIRE(vwrite(vp, static_cast<off_t>(d.size()), "tail") == 0);
    std::string got;
    REQUIRE(vread(vp, 0, d.size() + 4, &got) == 0);
    CHECK((got == d + "tail"));
    REQUIRE(vfsync(vp) == 0);
    vnode_put(vp);
    vnode_rele(vp);  // last close: inactive frees the inode and its blocks
    vnode_put(root);
    REQUIRE(m.unmount() == 0);
  }
  std::string out;
  bool clean = fsck_clean(img, &out);
  INFO(out);
  CHECK(clean);
  CHECK(dumpe2fs_field(img, "Free blocks") == free_blocks);
  CHECK(dumpe2fs_field(img, "Free inodes") == free_inodes);
}

TEST_CASE("lifecycle: fill the disk with a created file, unlink it, exact free counts again", "[ext2][life][enospc]") {
  image_config c = GENERATE(image_config{1024, 128, true, true}, image_config{4096, 256, false, false});
  INFO(c.label());
  tmpdir t;
  std::string img = t.path + "/img";
  make_image(img, c, 4096);
  const uint64_t free_blocks = dumpe2fs_field(img, "Free blocks");
  const uint64_t free_inodes = dumpe2fs_field(img, "Free inodes");
  {
    mounted m(img);
    REQUIRE(m.mount_error() == 0);
    vnode* root = m.root();
    vnode* vp = create_file(root, "big");
    std::string chunk = pattern(1u << 20, 8);
    uint64_t total = 0;
    int err = 0;
    while (!err) {
      size_t w = 0;
      err = vwrite(vp, static_cast<off_t>(total), chunk, 0, kctx(), &w);
      total += w;
    }
    CHECK(err == ENOSPC);
    CHECK(total > (free_blocks - free_blocks / 50) * c.block_size * 9 / 10);
    REQUIRE(remove_file(root, vp, "big") == 0);
    vnode_put(vp);
    vnode_put(root);
    REQUIRE(m.unmount() == 0);
  }
  std::string out;
  bool clean = fsck_clean(img, &out);
  INFO(out);
  CHECK(clean);
  CHECK(dumpe2fs_field(img, "Free blocks") == free_blocks);
  CHECK(dumpe2fs_field(img, "Free inodes") == free_inodes);
}

// size_test.cpp: truncate up and down, fallocate (0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, refused modes),
// SEEK_DATA/SEEK_HOLE, a sparse file past the triple-indirect boundary, and filling the disk to ENOSPC
// then freeing it back to the exact free counts mke2fs started with.
#include <linux/falloc.h>
#include <sys/statvfs.h>

#include <random>

#include <catch2/catch.hpp>

#include "support/ext2_fixture.h"

using namespace ext2test;

namespace {

struct one_file {
  tmpdir t;
  std::string img = t.path + "/img";
  std::string content;
  one_file(const image_config& c, const std::string& data, uint64_t size_kib = 16384, const std::string& extra = "")
      : content(data) {
    std::string d = t.path + "/d";
    sh("mkdir -p " + quote(d));
    FILE* f = fopen((d + "/f").c_str(), "wb");
    REQUIRE(f != nullptr);
    fwrite(data.data(), 1, data.size(), f);
    fclose(f);
    make_image(img, c, size_kib, d, extra);
  }
  void check(const std::string& want) {
    std::string out;
    bool clean = fsck_clean(img, &out);
    INFO(out);
    CHECK(clean);
    CHECK(stat_field(img, "/f", "Size") == want.size());
    CHECK((debugfs_cat(img, "/f") == want));
  }
};

std::string read_all(vnode* vp) {
  std::string got;
  REQUIRE(vread(vp, 0, vsize(vp) + 100, &got) == 0);
  return got;
}

}  // namespace

TEST_CASE("truncate: down frees blocks and zeroes the tail, up reads zeros", "[ext2][size]") {
  image_config c = GENERATE(from_range(all_configs()));
  INFO(c.label());
  one_file f(c, pattern(3u << 20, 5));  // 3 MiB: double indirect on 1 KiB blocks
  std::string model = f.content;
  uint64_t free_before = dumpe2fs_field(f.img, "Free blocks");
  uint64_t file_blocks = stat_field(f.img, "/f", "Blockcount") * 512 / c.block_size;
  {
    mounted m(f.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(f.img, "/f"));
    for (uint64_t sz : {2000000ull, 300001ull, 70000ull, 12345ull, 1ull, 0ull}) {
      REQUIRE(vtruncate(vp, static_cast<off_t>(sz)) == 0);
      model.resize(sz);
      REQUIRE((read_all(vp) == model));
    }
    REQUIRE(vwrite(vp, 0, pattern(5000, 8)) == 0);
    model = pattern(5000, 8);
    REQUIRE(vtruncate(vp, 1234) == 0);  // the tail of the last block is zeroed...
    REQUIRE(vtruncate(vp, 900000) == 0);  // ...so growing reads zeros there, and a hole after
    model.resize(1234);
    model.resize(900000, '\0');
    REQUIRE((read_all(vp) == model));
    vnode_attr va;
    REQUIRE(vgetattr(vp, &va) == 0);
    CHECK(va.va_blocks * 512 <= 2 * c.block_size + 5000);
    REQUIRE(vtruncate(vp, 0) == 0);
    model.clear();
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  f.check(model);
  CHECK(dumpe2fs_field(f.img, "Free blocks") == free_before + file_blocks);  // data and indirect blocks back
}

// ZERO_RANGE has its own test ([zero_range], extent_test.cpp).
TEST_CASE("fallocate: modes 0 and KEEP_SIZE allocate zeroed blocks; PUNCH_HOLE frees; others EOPNOTSUPP", "[ext2][size]") {
  image_config c = GENERATE(image_config{1024, 256, true, true}, image_config{4096, 128, false, false});
  INFO(c.label());
  // A file over blocks that held other data before: freshly allocated blocks must never show it.
  one_file f(c, pattern(100000, 3));
  std::string model = f.content;
  {
    mounted m(f.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(f.img, "/f"));
    // Dirty the free space with old data, then free it again.
    REQUIRE(vwrite(vp, 100000, pattern(2u << 20, 4)) == 0);
    REQUIRE(vfsync(vp) == 0);
    REQUIRE(vtruncate(vp, 100000) == 0);
    CHECK(vallocate(vp, FALLOC_FL_COLLAPSE_RANGE, 0, 4096) == EOPNOTSUPP);
    CHECK(vallocate(vp, FALLOC_FL_INSERT_RANGE, 0, 4096) == EOPNOTSUPP);
    CHECK(vallocate(vp, FALLOC_FL_ZERO_RANGE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == EOPNOTSUPP);
    CHECK(vallocate(vp, FALLOC_FL_PUNCH_HOLE, 0, 4096) == EOPNOTSUPP);  // punch needs KEEP_SIZE
    CHECK(vallocate(vp, 0, -1, 10) == EINVAL);
    CHECK(vallocate(vp, 0, 0, 0) == EINVAL);
    // Mode 0 past EOF: size grows, blocks exist and read as zeros.
    REQUIRE(vallocate(vp, 0, 150000, 500000) == 0);
    model.resize(650000, '\0');
    CHECK(vsize(vp) == 650000);
    REQUIRE((read_all(vp) == model));
    off_t off = 200000;
    CHECK(vseek(vp, false, &off) == 0);
    CHECK(off == 650000);  // [150000 rounded down, 650000) is allocated: no hole before EOF
    // KEEP_SIZE does not change the size.
    REQUIRE(vallocate(vp, FALLOC_FL_KEEP_SIZE, 0, 2000000) == 0);
    CHECK(vsize(vp) == 650000);
    // Punch: partial blocks zeroed, whole ones freed.
    vnode_attr va;
    REQUIRE(vgetattr(vp, &va) == 0);
    uint64_t blocks_before = va.va_blocks;
    REQUIRE(vallocate(vp, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1000, 300000) == 0);
    std::fill(model.begin() + 1000, model.begin() + 301000, '\0');
    REQUIRE((read_all(vp) == model));
    REQUIRE(vgetattr(vp, &va) == 0);
    CHECK(va.va_blocks < blocks_before);
    CHECK(vsize(vp) == 650000);
    off = 0;
    CHECK(vseek(vp, false, &off) == 0);
    CHECK(off == static_cast<off_t>((1000 + c.block_size - 1) / c.block_size * c.block_size));
    CHECK(vseek(vp, true, &off) == 0);
    CHECK(off == static_cast<off_t>(301000 / c.block_size * c.block_size));
    // Punch past EOF does nothing.
    REQUIRE(vallocate(vp, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 700000, 5000) == 0);
    CHECK(vsize(vp) == 650000);
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  f.check(model);
}

TEST_CASE("fallocate: ENOSPC before anything changes", "[ext2][size][enospc]") {
  one_file f({4096, 256, true, true}, "x", 2048, "-m 0");
  uint64_t free0 = dumpe2fs_field(f.img, "Free blocks");
  {
    mounted m(f.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(f.img, "/f"));
    CHECK(vallocate(vp, 0, 0, static_cast<off_t>((free0 + 5) * 4096)) == ENOSPC);
    CHECK(vsize(vp) == 1);
    struct statvfs st;
    REQUIRE(VFS_STATFS(m.mp(), &st, vfs_context::kernel()) == 0);
    CHECK(st.f_bfree == free0);
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  f.check("x");
  CHECK(dumpe2fs_field(f.img, "Free blocks") == free0);
}

TEST_CASE("sparse file past the triple-indirect boundary on 1 KiB blocks", "[ext2][size]") {
  one_file f({1024, 128, true, true}, "");
  // Triple indirect starts at logical block 12 + 256 + 65536.
  const uint64_t tind = (12ull + 256 + 65536) * 1024;
  const uint64_t offs[] = {0, 11 * 1024 + 1000, 300 * 1024, tind - 3, tind + 5 * 1024 * 1024 * 1024ull};
  std::string want;
  uint64_t free_before = dumpe2fs_field(f.img, "Free blocks");
  {
    mounted m(f.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(f.img, "/f"));
    for (uint64_t o : offs) REQUIRE(vwrite(vp, static_cast<off_t>(o), "marker" + std::to_string(o)) == 0);
    const uint64_t size = vsize(vp);
    CHECK(size == offs[4] + 6 + std::to_string(offs[4]).size());
    for (uint64_t o : offs) {
      std::string got;
      std::string mk = "marker" + std::to_string(o);
      REQUIRE(vread(vp, static_cast<off_t>(o), mk.size(), &got) == 0);
      CHECK(got == mk);
    }
    std::string got;
    REQUIRE(vread(vp, static_cast<off_t>(tind + 100000), 4096, &got) == 0);
    CHECK(got == std::string(4096, '\0'));
    off_t off = static_cast<off_t>(tind + 10);
    CHECK(vseek(vp, true, &off) == 0);
    CHECK(off == static_cast<off_t>(tind + 10));  // inside the marker written at tind - 3
    off = static_cast<off_t>(tind + 2048);
    CHECK(vseek(vp, true, &off) == 0);
    CHECK(off == static_cast<off_t>(offs[4] / 1024 * 1024));
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  std::string out;
  bool clean = fsck_clean(f.img, &out);
  INFO(out);
  CHECK(clean);
  std::string st = debugfs(f.img, "stat /f");
  CHECK(st.find("(TIND)") != std::string::npos);
  CHECK(std::stoull(debugfs(f.img, "bmap /f " + std::to_string(offs[4] / 1024))) != 0);
  {
    mounted m(f.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(f.img, "/f"));
    REQUIRE(vtruncate(vp, 0) == 0);
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  CHECK(fsck_clean(f.img));
  CHECK(dumpe2fs_field(f.img, "Free blocks") == free_before);
}

TEST_CASE("filling the disk to ENOSPC and freeing it restores mke2fs's free counts", "[ext2][size][enospc]") {
  image_config c = GENERATE(image_config{1024, 128, false, false}, image_config{4096, 256, true, true});
  INFO(c.label());
  one_file f(c, "", 4096);
  const uint64_t free_blocks = dumpe2fs_field(f.img, "Free blocks");
  const uint64_t free_inodes = dumpe2fs_field(f.img, "Free inodes");
  const std::string groups_before = sh("dumpe2fs " + quote(f.img) + " 2>/dev/null | grep -E 'free blocks|Free blocks:'");
  {
    mounted m(f.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(f.img, "/f"));
    std::string chunk = pattern(1u << 20, 6);
    uint64_t total = 0;
    for (;;) {
      size_t w = 0;
      int err = vwrite(vp, static_cast<off_t>(total), chunk, 0, kctx(), &w);  // root: the reserve too
      total += w;
      if (err) {
        CHECK(err == ENOSPC);
        break;
      }
      REQUIRE(w > 0);
    }
    struct statvfs st;
    REQUIRE(VFS_STATFS(m.mp(), &st, vfs_context::kernel()) == 0);
    CHECK(st.f_bfree == 0);
    CHECK(st.f_bavail == 0);
    REQUIRE(vfsync(vp) == 0);
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  {
    std::string out;
    bool clean = fsck_clean(f.img, &out);
    INFO(out);
    CHECK(clean);
    CHECK(dumpe2fs_field(f.img, "Free blocks") == 0);
  }
  {
    mounted m(f.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(f.img, "/f"));
    REQUIRE(vtruncate(vp, 0) == 0);
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  CHECK(fsck_clean(f.img));
  CHECK(dumpe2fs_field(f.img, "Free blocks") == free_blocks);
  CHECK(dumpe2fs_field(f.img, "Free inodes") == free_inodes);
  CHECK(sh("dumpe2fs " + quote(f.img) + " 2>/dev/null | grep -E 'free blocks|Free blocks:'") == groups_before);
}

TEST_CASE("fallocate on a non-regular file", "[ext2][size]") {
  one_file f({}, "abc");
  mounted m(f.img);
  REQUIRE(m.mount_error() == 0);
  vnode* root = m.root();
  CHECK(vallocate(root, 0, 0, 100) == EISDIR);
  vnode_put(root);
  REQUIRE(m.unmount() == 0);
}

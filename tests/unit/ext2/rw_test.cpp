// rw_test.cpp: the VNOP_WRITE / VNOP_READ contract on real images: sequential, unaligned and random
// writes, holes, IO_APPEND, IO_UNIT rollback, IO_SYNC, EFBIG, zero fill, suid clearing. Every test ends
// with e2fsck -fn clean and debugfs reading back the same bytes and size.
#include <sys/stat.h>

#include <sys/statvfs.h>

#include <random>

#include <cstdio>

#include <catch2/catch.hpp>

#include "support/ext2_fixture.h"

using namespace ext2test;

namespace {

// An image populated (mke2fs -d) with: empty (0 bytes), small (100 bytes), big (300 KiB).
struct populated {
  tmpdir t;
  std::string img = t.path + "/img";
  std::string small = pattern(100, 1), big = pattern(300 * 1024, 2);
  explicit populated(const image_config& c, uint64_t size_kib = 16384, const std::string& extra = "") {
    std::string d = t.path + "/d";
    sh("mkdir -p " + quote(d) + " && : > " + quote(d + "/empty"));
    write_file(d + "/small", small);
    write_file(d + "/big", big);
    make_image(img, c, size_kib, d, extra);
  }
  static void write_file(const std::string& path, const std::string& data) {
    FILE* f = fopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    fwrite(data.data(), 1, data.size(), f);
    fclose(f);
  }
  void check(const std::string& path, const std::string& want) {
    std::string out;
    INFO(out);
    CHECK(fsck_clean(img, &out));
    CHECK(stat_field(img, path, "Size") == want.size());
    std::string got = debugfs_cat(img, path);
    CHECK(got.size() == want.size());
    CHECK((got == want));
  }
};

void model_write(std::string& model, uint64_t off, const std::string& data) {
  if (model.size() < off + data.size()) model.resize(off + data.size(), '\0');
  model.replace(off, data.size(), data);
}

}  // namespace

TEST_CASE("write: sequential, unaligned and random writes read back the same", "[ext2][rw]") {
  image_config c = GENERATE(from_range(all_configs()));
  INFO(c.label());
  uint32_t seed = test_seed();
  // INFO: shown with every failure of this case (WARN is dropped by the JUnit report); stderr: a crash.
  INFO("VNOPFS_SEED=" << seed);
  std::fprintf(stderr, "%s: VNOPFS_SEED=%llu\n", __FILE__, static_cast<unsigned long long>(seed));
  std::mt19937 rng(seed);
  populated p(c);
  std::string seq_model, rnd_model = p.big;
  {
    mounted m(p.img);
    REQUIRE(m.mount_error() == 0);
    vnode* e = m.vget(ino_of(p.img, "/empty"));
    vnode* b = m.vget(ino_of(p.img, "/big"));
    for (int i = 0; i < 40; i++) {  // 2.5 MiB sequentially: direct, single and double indirect on 1 KiB blocks
      std::string chunk = pattern(65536, 100 + i);
      size_t w = 0;
      REQUIRE(vwrite(e, static_cast<off_t>(seq_model.size()), chunk, IO_UNIT, kctx(), &w) == 0);
      REQUIRE(w == chunk.size());
      seq_model += chunk;
    }
    for (int i = 0; i < 150; i++) {
      uint64_t off = rng() % (1u << 20);
      std::string data = pattern(1 + rng() % 20000, rng());
      bool shared = off + data.size() <= rnd_model.size();
      REQUIRE(vwrite(b, static_cast<off_t>(off), data, IO_UNIT, kctx(), nullptr, shared) == 0);
      model_write(rnd_model, off, data);
      if (i % 10 == 0) {  // random reads against the model
        uint64_t roff = rng() % (rnd_model.size() + 100);
        std::string got;
        REQUIRE(vread(b, static_cast<off_t>(roff), 1 + rng() % 30000, &got) == 0);
        std::string want = roff < rnd_model.size() ? rnd_model.substr(roff, got.size()) : "";
        REQUIRE(got.size() == want.size());
        REQUIRE((got == want));
      }
    }
    std::string got;
    REQUIRE(vread(e, 0, seq_model.size() + 10, &got) == 0);
    CHECK((got == seq_model));
    REQUIRE(vread(b, 0, rnd_model.size(), &got) == 0);
    CHECK((got == rnd_model));
    CHECK(vsize(b) == rnd_model.size());
    vnode_put(e);
    vnode_put(b);
    REQUIRE(m.unmount() == 0);
  }
  p.check("/empty", seq_model);
  p.check("/big", rnd_model);
}

TEST_CASE("write: holes read as zeros and stay holes", "[ext2][rw]") {
  image_config c = GENERATE(image_config{1024, 128, true, true}, image_config{4096, 256, false, false});
  INFO(c.label());
  populated p(c);
  const uint64_t far = 5u << 20;
  std::string model;
  {
    mounted m(p.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(p.img, "/empty"));
    REQUIRE(vwrite(vp, 0, "head") == 0);
    REQUIRE(vwrite(vp, static_cast<off_t>(far), "tail") == 0);
    model_write(model, 0, "head");
    model_write(model, far, "tail");
    std::string got;
    REQUIRE(vread(vp, 100000, 5000, &got) == 0);
    CHECK(got == std::string(5000, '\0'));
    off_t off = 0;
    CHECK(vseek(vp, false, &off) == 0);
    CHECK(off == static_cast<off_t>(c.block_size));  // the hole starts after block 0
    off = 10;
    CHECK(vseek(vp, true, &off) == 0);
    CHECK(off == 10);
    off = static_cast<off_t>(c.block_size);
    CHECK(vseek(vp, true, &off) == 0);
    CHECK(off == static_cast<off_t>(far / c.block_size * c.block_size));
    off = static_cast<off_t>(far + 4);
    CHECK(vseek(vp, true, &off) == ENXIO);
    off = static_cast<off_t>(far);
    CHECK(vseek(vp, false, &off) == 0);
    CHECK(off == static_cast<off_t>(far + 4));  // the implicit hole at EOF
    vnode_attr va;
    REQUIRE(vgetattr(vp, &va) == 0);
    CHECK(va.va_blocks * 512 < 10 * c.block_size);  // data blocks plus indirect ones, nothing in the gap
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  p.check("/empty", model);
}

TEST_CASE("write: IO_APPEND writes at EOF", "[ext2][rw]") {
  populated p({});
  std::string model = p.small;
  {
    mounted m(p.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(p.img, "/small"));
    for (int i = 0; i < 20; i++) {
      std::string d = pattern(777 + i, 50 + i);
      size_t w = 0;
      REQUIRE(vwrite(vp, 0, d, IO_APPEND | IO_UNIT, kctx(), &w) == 0);  // offset ignored
      CHECK(w == d.size());
      model += d;
    }
    // Appending with the lock held shared asks for the exclusive lock (ERESTART), the helper retries.
    REQUIRE(vwrite(vp, 0, "zz", IO_APPEND, kctx(), nullptr, /*shared=*/true) == 0);
    model += "zz";
    CHECK(vsize(vp) == model.size());
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  p.check("/small", model);
}

TEST_CASE("write: ENOSPC: IO_UNIT changes nothing, otherwise a short write", "[ext2][rw][enospc]") {
  image_config c = GENERATE(image_config{1024, 128, true, true}, image_config{4096, 256, true, true});
  INFO(c.label());
  populated p(c, 2048, "-m 0");
  uint64_t free0 = dumpe2fs_field(p.img, "Free blocks");
  std::string model;
  {
    mounted m(p.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(p.img, "/empty"));
    std::string huge = pattern(free0 * c.block_size + 10 * c.block_size, 9);
    size_t w = 123;
    CHECK(vwrite(vp, 0, huge, IO_UNIT, kctx(), &w) == ENOSPC);
    CHECK(w == 0);
    CHECK(vsize(vp) == 0);
    struct statvfs st;
    REQUIRE(VFS_STATFS(m.mp(), &st, vfs_context::kernel()) == 0);
    CHECK(st.f_bfree == free0);  // nothing allocated
    // Without IO_UNIT the write goes as far as space allows.
    REQUIRE(vwrite(vp, 0, huge, 0, kctx(), &w) == 0);
    CHECK(w > 0);
    CHECK(w < huge.size());
    CHECK(w % c.block_size == 0);
    model = huge.substr(0, w);
    CHECK(vsize(vp) == w);
    REQUIRE(VFS_STATFS(m.mp(), &st, vfs_context::kernel()) == 0);
    CHECK(st.f_bfree == 0);
    CHECK(vwrite(vp, static_cast<off_t>(w), "more", 0) == ENOSPC);
    std::string got;
    REQUIRE(vread(vp, 0, w, &got) == 0);
    CHECK((got == model));
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  p.check("/empty", model);
}

TEST_CASE("write: IO_SYNC data and inode are on disk before return", "[ext2][rw]") {
  populated p({});
  mounted m(p.img);
  REQUIRE(m.mount_error() == 0);
  vnode* vp = m.vget(ino_of(p.img, "/empty"));
  std::string d = pattern(200000, 77);
  REQUIRE(vwrite(vp, 0, d, IO_SYNC | IO_UNIT) == 0);
  // Still mounted: debugfs reads the image file itself.
  CHECK(stat_field(p.img, "/empty", "Size") == d.size());
  CHECK((debugfs_cat(p.img, "/empty") == d));
  vnode_put(vp);
  REQUIRE(m.unmount() == 0);
  CHECK(fsck_clean(p.img));
}

TEST_CASE("write: EFBIG at the format's maximum file size", "[ext2][rw]") {
  populated p({1024, 128, true, true});
  mounted m(p.img);
  REQUIRE(m.mount_error() == 0);
  vnode* vp = m.vget(ino_of(p.img, "/empty"));
  // 1 KiB blocks: 12 + 256 + 256^2 + 256^3 blocks map 16843020 KiB.
  const off_t max = (12ll + 256 + 65536 + 16777216) * 1024;
  CHECK(vwrite(vp, max, "x") == EFBIG);
  CHECK(vwrite(vp, max + 5000, "x") == EFBIG);
  size_t w = 0;
  CHECK(vwrite(vp, max - 3, "abcdef", 0, kctx(), &w) == 0);  // straddling: short write up to the limit
  CHECK(w == 3);
  CHECK(vsize(vp) == static_cast<uint64_t>(max));
  std::string got;
  REQUIRE(vread(vp, max - 3, 10, &got) == 0);
  CHECK(got == "abc");
  CHECK(vtruncate(vp, max + 1) == EFBIG);
  vnode_put(vp);
  REQUIRE(m.unmount() == 0);
  std::string out;
  INFO(out);
  CHECK(fsck_clean(p.img, &out));
  CHECK(stat_field(p.img, "/empty", "Size") == static_cast<uint64_t>(max));
}

TEST_CASE("write: bytes between the old EOF and a write past it read as zeros", "[ext2][rw]") {
  populated p({4096, 256, true, true});
  // Put garbage on disk after the 100 bytes of /small, inside its block.
  uint64_t pblk = std::stoull(debugfs(p.img, "bmap /small 0"));
  sh("printf 'GARBAGEGARBAGE' | dd of=" + quote(p.img) + " bs=1 seek=" + std::to_string(pblk * 4096 + 100) +
     " conv=notrunc status=none");
  std::string model = p.small;
  {
    mounted m(p.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(p.img, "/small"));
    REQUIRE(vwrite(vp, 200, "AFTER") == 0);  // same block as the old EOF (HEADZEROFILL)
    model_write(model, 200, "AFTER");
    std::string got;
    REQUIRE(vread(vp, 0, 1000, &got) == 0);
    CHECK((got == model));
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  p.check("/small", model);
}

TEST_CASE("write: garbage after EOF in the last block is zeroed when a write starts in a later block", "[ext2][rw]") {
  populated p({1024, 256, true, true});
  uint64_t pblk = std::stoull(debugfs(p.img, "bmap /small 0"));
  sh("printf 'GARBAGEGARBAGE' | dd of=" + quote(p.img) + " bs=1 seek=" + std::to_string(pblk * 1024 + 100) +
     " conv=notrunc status=none");
  std::string model = p.small;
  {
    mounted m(p.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(p.img, "/small"));
    REQUIRE(vwrite(vp, 5000, "FAR") == 0);
    model_write(model, 5000, "FAR");
    std::string got;
    REQUIRE(vread(vp, 0, 6000, &got) == 0);
    CHECK((got == model));
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  p.check("/small", model);
}

TEST_CASE("write: a caller without CAP_FSETID clears setuid/setgid", "[ext2][rw][perm]") {
  populated p({});
  {
    mounted m(p.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(p.img, "/small"));
    vnode_attr va;
    va.va_active = VA_MODE | VA_UID | VA_GID;
    va.va_mode = 06775;
    va.va_uid = 1000;
    va.va_gid = 1000;
    REQUIRE(vsetattr(vp, va) == 0);
    va.va_active = VA_MODE;  // chown cleared them: set again as root
    REQUIRE(vsetattr(vp, va) == 0);
    REQUIRE(vgetattr(vp, &va) == 0);
    CHECK((va.va_mode & 07777) == 06775);
    REQUIRE(vwrite(vp, 0, "root writes") == 0);  // root keeps them
    REQUIRE(vgetattr(vp, &va) == 0);
    CHECK((va.va_mode & 07777) == 06775);
    vfs_context user = user_ctx(1000, 1000);
    REQUIRE(vwrite(vp, 0, "user writes", IO_UNIT, &user) == 0);
    REQUIRE(vgetattr(vp, &va) == 0);
    CHECK((va.va_mode & 07777) == 0775);
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  CHECK(fsck_clean(p.img));
  CHECK((stat_field(p.img, "/small", "Mode") & 07777) == 0775);
}

TEST_CASE("write: revision 0 images and 64 KiB blocks", "[ext2][rw]") {
  struct variant { const char* what; image_config c; const char* extra; };
  const variant v = GENERATE(variant{"revision 0", {1024, 128, false, false}, "-r 0"},
                             variant{"64 KiB blocks", {65536, 256, true, true}, ""});
  INFO(v.what);
  populated p(v.c, 32768, v.extra);
  std::string model = p.big;
  {
    mounted m(p.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(p.img, "/big"));
    std::string d = pattern(500000, 31);
    REQUIRE(vwrite(vp, 123457, d) == 0);
    model_write(model, 123457, d);
    REQUIRE(vtruncate(vp, 400001) == 0);
    model.resize(400001);
    std::string got;
    REQUIRE(vread(vp, 0, 1u << 20, &got) == 0);
    CHECK((got == model));
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  p.check("/big", model);
}

TEST_CASE("write: the root reserve is kept from ordinary users", "[ext2][rw][enospc]") {
  populated p({4096, 256, true, true}, 4096, "-m 10");
  const uint64_t reserved = dumpe2fs_field(p.img, "Reserved block count");
  {
    mounted m(p.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(p.img, "/empty"));
    vnode_attr va;
    va.va_active = VA_UID;
    va.va_uid = 1000;
    REQUIRE(vsetattr(vp, va) == 0);
    vfs_context user = user_ctx(1000, 1000);
    std::string chunk = pattern(1u << 20, 12);
    uint64_t total = 0;
    int err = 0;
    while (!err) {
      size_t w = 0;
      err = vwrite(vp, static_cast<off_t>(total), chunk, 0, &user, &w);
      total += w;
    }
    CHECK(err == ENOSPC);
    struct statvfs st;
    REQUIRE(VFS_STATFS(m.mp(), &st, vfs_context::kernel()) == 0);
    CHECK(st.f_bavail == 0);
    CHECK(st.f_bfree == reserved);
    REQUIRE(vwrite(vp, static_cast<off_t>(total), "root may", 0) == 0);  // root dips into the reserve
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  CHECK(fsck_clean(p.img));
}

TEST_CASE("write: IO_NOCACHE and VFS_SYNC leave the data and counts on disk", "[ext2][rw]") {
  populated p({});
  mounted m(p.img);
  REQUIRE(m.mount_error() == 0);
  vnode* vp = m.vget(ino_of(p.img, "/empty"));
  std::string d = pattern(300000, 41);
  REQUIRE(vwrite(vp, 0, d, IO_NOCACHE | IO_UNIT) == 0);
  std::string got;
  REQUIRE(vread(vp, 0, d.size(), &got, IO_NOCACHE) == 0);
  CHECK((got == d));
  REQUIRE(VFS_SYNC(m.mp(), MNT_WAIT, vfs_context::kernel()) == 0);
  // Still mounted: the image already holds the data, the inode and the summary counts.
  CHECK((debugfs_cat(p.img, "/empty") == d));
  struct statvfs st;
  REQUIRE(VFS_STATFS(m.mp(), &st, vfs_context::kernel()) == 0);
  CHECK(dumpe2fs_field(p.img, "Free blocks") == st.f_bfree);
  vnode_put(vp);
  REQUIRE(m.unmount() == 0);
  CHECK(fsck_clean(p.img));
}

TEST_CASE("write: IO_UNIT restores size and uio when the data cannot be written", "[ext2][rw]") {
  populated p({4096, 256, true, true});
  {
    mounted m(p.img, false, 32u << 20, /*with_faults=*/true);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(p.img, "/small"));
    dev::fault_rule r;
    r.ops = dev::op_bit(dev::io_op::write);
    r.limit = 1;  // the data push of the next write fails; everything after it goes through
    m.faults()->add_rule(r);
    size_t w = 99;
    CHECK(vwrite(vp, 100, pattern(20000, 5), IO_UNIT | IO_SYNC, kctx(), &w) == EIO);
    CHECK(w == 0);
    CHECK(vsize(vp) == 100);
    std::string got;
    REQUIRE(vread(vp, 0, 1000, &got) == 0);
    CHECK((got == p.small));
    CHECK(m.faults()->counts().failed == 1);
    vnode_put(vp);
    (void)m.unmount();
  }
  p.check("/small", p.small);
}

TEST_CASE("fsync: reports an earlier failed write of the vnode", "[ext2][rw]") {
  populated p({4096, 256, true, true});
  std::string model = p.big;
  {
    mounted m(p.img, false, 32u << 20, /*with_faults=*/true);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(p.img, "/big"));
    std::string d = pattern(50000, 6);
    REQUIRE(vwrite(vp, 4096, d) == 0);  // delayed: nothing reaches the device yet
    model_write(model, 4096, d);
    dev::fault_rule r;
    r.ops = dev::op_bit(dev::io_op::write);
    r.limit = 1;
    m.faults()->add_rule(r);
    CHECK(vfsync(vp) == EIO);  // the failed push is reported...
    CHECK(m.faults()->counts().failed == 1);
    CHECK(vfsync(vp) == 0);    // ...once; the data stayed dirty and the retry wrote it
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  p.check("/big", model);
}

// tables_test.cpp: the four tables of the registry (vnops/registry.h) over real images. Each one reads back
// what a random mix of writes (unaligned edges, holes, extensions), truncates and reads put, through its
// own write path, and leaves the image e2fsck-clean with the same bytes for debugfs. Then what makes each
// table what it is: ext2-buf's device writes are all one block, ext2-direct keeps no file data in the cache,
// ext2-sync leaves nothing dirty after an op returns. The ext2 table fails each of those three checks
// (asserted too), so they tell the tables apart.
#include <algorithm>
#include <atomic>
#include <random>
#include <thread>

#include <catch2/catch.hpp>

#include "ext2/support/path_fs.h"
#include "support/ext2_fixture.h"
#include "vnopfs/buf.h"
#include "vnops/registry.h"

using namespace ext2test;

namespace {

void model_write(std::string& model, uint64_t off, const std::string& data) {
  if (model.size() < off + data.size()) model.resize(off + data.size(), '\0');
  model.replace(off, data.size(), data);
}

// Blocks of the file at path that are in the cache (file data: the file vnode's buffers).
size_t cached_file_blocks(path_fs& fs, const std::string& path, uint64_t size) {
  iocount_ref v;
  REQUIRE(fs.lookup(path, v.out()) == 0);
  size_t n = 0;
  for (uint64_t lbn = 0; lbn * 4096 < size; lbn++)
    if (buf_getblk(v.get(), static_cast<daddr64_t>(lbn), BLK_ONLYVALID)) n++;
  return n;
}

uint64_t dirty_buffers(path_fs& fs) { return bufcache_getstats(fs.mp()).dirty; }

// File "f" on a fresh 32 MiB image of 4 KiB blocks mounted as `table`, its vnode held so that it and its
// cached buffers live across the calls, as under an open file (without it every call would end in
// VNOP_INACTIVE, which writes the file out).
struct table_file {
  path_fs fs;
  iocount_ref keep;
  explicit table_file(const std::string& table) : fs("-b 4096", "32M", table) {
    REQUIRE(fs.create("f") == 0);
    REQUIRE(fs.lookup("f", keep.out()) == 0);
  }
  int unmount() {
    keep.reset();
    return fs.unmount();
  }
};

}  // namespace

TEST_CASE("tables: the registry knows the four tables, each mounted by its own vfsops", "[tables]") {
  vnops_register_filesystems();
  CHECK(vnops_table_names() == "ext2, ext2-buf, ext2-direct, ext2-sync");
  for (const fs_table& t : vnops_tables()) {
    CAPTURE(t.name);
    CHECK(vfs_lookup_fs(t.name) == t.vfs);
    CHECK(std::string(t.vfs->name) == t.name);
    CHECK(t.vnops != nullptr);
    CHECK(std::string(t.description).size() > 10);
  }
  CHECK(vnops_lookup_table("ext2")->vnops != vnops_lookup_table("ext2-sync")->vnops);
  CHECK(vnops_lookup_table("ext3") == nullptr);
  CHECK(vnops_lookup_table("") == nullptr);
}

TEST_CASE("tables: random writes, truncates and reads agree with a model on every table", "[tables][rw]") {
  const std::string table = GENERATE(as<std::string>{}, "ext2", "ext2-buf", "ext2-direct", "ext2-sync");
  const uint32_t seed = test_seed();
  INFO("table " << table << ", seed " << seed << " (VNOPFS_SEED replays it)");
  table_file tf(table);
  path_fs& fs = tf.fs;
  std::mt19937 rng(seed);
  std::string model;
  for (int i = 0; i < 120; i++) {
    const int op = static_cast<int>(rng() % 10);
    if (op < 7) {  // writes: unaligned, inside and past EOF, some far past it (a hole)
      const uint64_t off = rng() % 2 ? rng() % (model.size() + 1) : rng() % (3u << 20);
      const size_t len = 1 + rng() % (rng() % 4 ? 9000 : 300000);
      const std::string data = pattern(len, static_cast<uint32_t>(rng()));
      CAPTURE(i, off, len);
      REQUIRE(fs.write("f", static_cast<off_t>(off), data) == 0);
      model_write(model, off, data);
    } else if (op < 8) {
      const uint64_t size = rng() % (model.size() + 5000);
      CAPTURE(i, size);
      REQUIRE(fs.truncate("f", static_cast<off_t>(size)) == 0);
      model.resize(size, '\0');
    } else {
      std::string got;
      REQUIRE(fs.read("f", &got) == 0);
      CAPTURE(i);
      REQUIRE(got.size() == model.size());
      REQUIRE((got == model));
    }
  }
  // Reads at unaligned offsets and lengths.
  {
    iocount_ref v;
    REQUIRE(fs.lookup("f", v.out()) == 0);
    for (int i = 0; i < 40 && !model.empty(); i++) {
      const uint64_t off = rng() % model.size();
      const size_t len = 1 + rng() % 20000;
      std::string got;
      REQUIRE(vread(v.get(), static_cast<off_t>(off), len, &got) == 0);
      CAPTURE(off, len);
      REQUIRE((got == model.substr(off, len)));
    }
  }
  REQUIRE(tf.unmount() == 0);
  require_fsck_clean(fs.image());
  std::string disk = debugfs_cat(fs.image(), "f");
  REQUIRE(disk.size() == model.size());
  REQUIRE((disk == model));
}

TEST_CASE("tables: ext2-buf writes every block by itself; ext2 gathers them", "[tables][buf]") {
  const std::string table = GENERATE(as<std::string>{}, "ext2", "ext2-buf");
  INFO("table " << table);
  table_file tf(table);
  path_fs& fs = tf.fs;
  const std::string block = pattern(4096, 7);
  for (int i = 0; i < 512; i++) REQUIRE(fs.write("f", static_cast<off_t>(i) * 4096, block) == 0);  // 2 MiB
  REQUIRE(fs.fsync("f") == 0);
  const bufcache_stats s = bufcache_getstats(fs.mp());
  uint64_t multi = 0;  // cache writes of more than one block
  for (int i = 1; i < bufcache_stats::kSizeBuckets; i++) multi += s.write_size_hist[i];
  CAPTURE(s.writes, multi);
  if (table == "ext2-buf") {
    CHECK(s.writes >= 512);  // the 512 data blocks, each its own write, and the metadata the same way
    CHECK(multi == 0);
    CHECK(s.readahead_issued == 0);
  } else {
    CHECK(s.writes < 100);  // clusters of up to 1 MiB
    CHECK(multi > 0);
  }
  std::string got;
  REQUIRE(fs.read("f", &got) == 0);
  REQUIRE(got.size() == 512u * 4096);
  REQUIRE(tf.unmount() == 0);
  require_fsck_clean(fs.image());
}

TEST_CASE("tables: ext2-direct keeps no file data in the cache and reads back unaligned edges", "[tables][direct]") {
  const std::string table = GENERATE(as<std::string>{}, "ext2", "ext2-direct");
  INFO("table " << table);
  table_file tf(table);
  path_fs& fs = tf.fs;
  std::string model;
  // Whole blocks, then edges: a partial first and last block, a write inside one block, one past EOF.
  const struct { uint64_t off; size_t len; } writes[] = {
      {0, 64 * 1024}, {1000, 10000}, {70000, 100}, {65536 + 4095, 2}, {200000, 5000}, {3, 1},
  };
  for (auto w : writes) {
    const std::string data = pattern(w.len, static_cast<uint32_t>(w.off + w.len));
    REQUIRE(fs.write("f", static_cast<off_t>(w.off), data) == 0);
    model_write(model, w.off, data);
    if (table == "ext2-direct") REQUIRE(cached_file_blocks(fs, "f", model.size()) == 0);
  }
  if (table == "ext2") CHECK(cached_file_blocks(fs, "f", model.size()) > 0);
  // Cached file data made by another path (a truncate zeroing the tail of the last block) is written
  // before a direct read and never shadows a direct write.
  REQUIRE(fs.truncate("f", 150001) == 0);
  model.resize(150001);
  const std::string tail = pattern(3000, 99);
  REQUIRE(fs.write("f", 149000, tail) == 0);
  model_write(model, 149000, tail);
  std::string got;
  REQUIRE(fs.read("f", &got) == 0);
  REQUIRE((got == model));
  if (table == "ext2-direct") CHECK(cached_file_blocks(fs, "f", model.size()) == 0);
  REQUIRE(tf.unmount() == 0);
  require_fsck_clean(fs.image());
  REQUIRE((debugfs_cat(fs.image(), "f") == model));
}

TEST_CASE("tables: ext2-sync leaves no dirty buffer after any op returns", "[tables][sync]") {
  const std::string table = GENERATE(as<std::string>{}, "ext2", "ext2-sync");
  INFO("table " << table);
  path_fs fs("-b 4096", "32M", table);
  const bool sync = table == "ext2-sync";
  uint64_t dirty_after_some_op = 0;
  auto after = [&](const char* what, int err) {
    INFO(what);
    REQUIRE(err == 0);
    const uint64_t d = dirty_buffers(fs);
    if (sync) CHECK(d == 0);
    dirty_after_some_op += d;
  };
  after("mkdir", fs.mkdir("d"));
  after("create", fs.create("d/f"));
  iocount_ref keep;  // the file's vnode lives across the calls (VNOP_INACTIVE would write it out)
  REQUIRE(fs.lookup("d/f", keep.out()) == 0);
  after("write", fs.write("d/f", 0, pattern(300000, 1)));  // data, indirect block, bitmaps
  after("write inside", fs.write("d/f", 5000, pattern(100, 2)));
  after("chmod", fs.chmod("d/f", 0600));
  after("setxattr", fs.setxattr("d/f", "user.a", std::string(3000, 'x')));
  after("link", fs.link("d/f", "g"));
  after("symlink", fs.symlink("s", std::string(200, 'y')));
  after("rename", fs.rename("g", "d/h"));
  after("truncate", fs.truncate("d/f", 10000));
  after("unlink", fs.unlink("d/h"));
  after("unlink last", fs.unlink("d/f"));
  keep.reset();  // the last reference: VNOP_INACTIVE frees the inode
  if (sync) CHECK(dirty_buffers(fs) == 0);
  after("rmdir", fs.rmdir("d"));
  if (!sync) CHECK(dirty_after_some_op > 0);
  REQUIRE(fs.unmount() == 0);
  require_fsck_clean(fs.image());
}

// The ext2 table with direct_min (write.cpp, direct_len): a write of enough whole blocks to a file without
// dirty buffers goes straight to the device; every other write, and a file with dirty buffers, keeps the
// cluster path. Cached copies of the range (from reads) never shadow a direct write.
TEST_CASE("tables: ext2 sends large aligned writes direct and keeps the cache coherent", "[tables][direct_min]") {
  direct_min_scope dm(64 * 1024);
  table_file tf("ext2");
  path_fs& fs = tf.fs;
  std::string model;
  auto put = [&](uint64_t off, size_t len, uint32_t seed) {
    const std::string data = pattern(len, seed);
    REQUIRE(fs.write("f", static_cast<off_t>(off), data) == 0);
    model_write(model, off, data);
  };
  auto cached_in = [&](uint64_t off, uint64_t len) {
    iocount_ref v;
    REQUIRE(fs.lookup("f", v.out()) == 0);
    size_t n = 0;
    for (uint64_t lbn = off / 4096; lbn < (off + len + 4095) / 4096; lbn++)
      if (buf_getblk(v.get(), static_cast<daddr64_t>(lbn), BLK_ONLYVALID)) n++;
    return n;
  };
  auto check = [&]() {
    std::string got;
    REQUIRE(fs.read("f", &got) == 0);
    REQUIRE(got.size() == model.size());
    REQUIRE((got == model));
  };
  put(0, 256 * 1024, 1);  // aligned, 64 blocks: direct
  CHECK(cached_in(0, 256 * 1024) == 0);
  check();  // the read caches the blocks
  CHECK(cached_in(0, 256 * 1024) > 0);
  put(64 * 1024, 128 * 1024, 2);  // direct over cached copies: they must go
  CHECK(cached_in(64 * 1024, 128 * 1024) == 0);
  check();
  put(60 * 1024, 32 * 1024, 3);  // unaligned: through the cache
  CHECK(cached_in(60 * 1024, 32 * 1024) > 0);
  CHECK(cached_in(64 * 1024, 4096) == 1);
  put(64 * 1024, 64 * 1024, 4);  // aligned and large, but the file has dirty buffers: cached too
  CHECK(cached_in(64 * 1024, 64 * 1024) == 16);
  check();
  REQUIRE(fs.fsync("f") == 0);
  put(512 * 1024, 128 * 1024 + 100, 5);  // past EOF, aligned start: the whole blocks direct, the tail cached
  CHECK(cached_in(512 * 1024, 128 * 1024) == 0);
  CHECK(cached_in(640 * 1024, 100) == 1);
  check();
  REQUIRE(fs.fsync("f") == 0);
  put(1024 * 1024, 64 * 1024 - 4096, 6);  // 15 blocks: under direct_min
  CHECK(cached_in(1024 * 1024, 60 * 1024) == 15);
  check();
  REQUIRE(tf.unmount() == 0);
  require_fsck_clean(fs.image());
  REQUIRE((debugfs_cat(fs.image(), "f") == model));
}

// A reader caching the blocks of a range while direct writes replace them: after each write returns, a read
// sees that write's bytes (a read that fetched the old bytes during the write must not leave them cached).
TEST_CASE("tables: a read beside a direct write leaves no stale copy", "[tables][direct_min]") {
  direct_min_scope dm(64 * 1024);
  table_file tf("ext2");
  path_fs& fs = tf.fs;
  constexpr size_t kLen = 256 * 1024;
  REQUIRE(fs.write("f", 0, pattern(kLen, 100)) == 0);
  REQUIRE(fs.fsync("f") == 0);
  iocount_ref v;
  REQUIRE(fs.lookup("f", v.out()) == 0);
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    std::string got;
    while (!stop.load()) (void)vread(v.get(), 0, kLen, &got);
  });
  int bad = -1;
  for (int i = 0; i < 60 && bad < 0; i++) {
    const std::string data = pattern(kLen, 200 + static_cast<uint32_t>(i));
    REQUIRE(vwrite(v.get(), 0, data, IO_UNIT, kctx(), nullptr, /*shared=*/true) == 0);
    std::string got;
    REQUIRE(vread(v.get(), 0, kLen, &got) == 0);
    if (got != data) bad = i;
  }
  stop = true;
  reader.join();
  CHECK(bad == -1);
  v.reset();
  REQUIRE(tf.unmount() == 0);
  require_fsck_clean(fs.image());
}

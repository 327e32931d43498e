// model_test.cpp: random writes, reads, truncates, pushes, invalidations and cache pressure against an
// in-memory byte model, with the flusher running hard in the background. Seeded from VNOPFS_SEED (or
// random); the seed is printed so a failure can be replayed: VNOPFS_SEED=<seed> test_cache "[model]".
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <random>

#include "cache_fixture.h"

using namespace cachetest;

TEST_CASE("random operations always read back what the byte model says", "[model]") {
  uint64_t seed = std::random_device{}();
  if (const char* e = std::getenv("VNOPFS_SEED")) seed = std::strtoull(e, nullptr, 0);
  // On a failure Catch prints the INFO; stderr has it too for runs that lose the report (JUnit drops WARN).
  INFO("model test seed: VNOPFS_SEED=" << seed);
  std::fprintf(stderr, "model test seed: VNOPFS_SEED=%llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  auto rnd = [&](uint64_t n) { return n ? rng() % n : 0; };

  bufcache_config cfg;
  cfg.cache_bytes = 1u << 20;  // 256 buffers against files of up to 6 MiB: constant pressure
  cfg.max_io_bytes = 256u << 10;
  cfg.flusher_period_ms = 5;
  cfg.flush_age_ms = static_cast<uint32_t>(rnd(3) * 10);
  cfg.clusters_per_vnode = 1 + static_cast<uint32_t>(rnd(8));
  fixture f(cfg, 64u << 20);
  REQUIRE(f.create_err == 0);
  const uint32_t bs = f.bs();
  constexpr int kFiles = 3;
  constexpr off_t kMax = 6 << 20;
  struct file {
    vnode* vp;
    off_t size = 0;
    std::vector<char> model;
  } files[kFiles];
  for (int i = 0; i < kFiles; i++) {
    std::set<daddr64_t> holes;
    for (int h = 0; h < 64; h++) holes.insert(static_cast<daddr64_t>(rnd(kMax / bs)));
    files[i].vp = f.file(i + 1, static_cast<daddr64_t>(i) * (kMax / bs + 16), holes);
  }
  std::vector<char> buf(512 << 10);
  int ops = 0;
  for (; ops < 1500; ops++) {
    file& fl = files[rnd(kFiles)];
    int op = static_cast<int>(rnd(100));
    INFO("op " << ops << " kind " << op << " size " << fl.size);
    if (op < 45) {  // write, sometimes extending, sometimes far past EOF
      off_t off = static_cast<off_t>(rnd(std::min<off_t>(kMax - 1, fl.size + (256 << 10))));
      size_t len = 1 + rnd(rnd(4) == 0 ? buf.size() : 9000);
      len = std::min<size_t>(len, static_cast<size_t>(kMax - off));
      for (size_t k = 0; k < len; k++) buf[k] = static_cast<char>(rng());
      off_t oldEOF = fl.size, newEOF = std::max<off_t>(fl.size, off + static_cast<off_t>(len));
      int flags = rnd(20) == 0 ? IO_SYNC : rnd(30) == 0 ? IO_NOCACHE : 0;
      if (off > oldEOF) flags |= IO_HEADZEROFILL;
      cluster_setsize(fl.vp, newEOF);
      uio u(buf.data(), len, off, UIO_WRITE);
      REQUIRE(cluster_write(fl.vp, &u, oldEOF, newEOF, oldEOF, 0, flags) == 0);
      REQUIRE(u.resid() == 0);
      fl.model.resize(static_cast<size_t>(newEOF), 0);
      std::memcpy(fl.model.data() + off, buf.data(), len);
      fl.size = newEOF;
    } else if (op < 80) {  // read, random or following the last one
      off_t off = static_cast<off_t>(rnd(static_cast<uint64_t>(fl.size) + 8192));
      size_t len = 1 + rnd(rnd(3) == 0 ? buf.size() : 20000);
      uio u(buf.data(), len, off, UIO_READ);
      REQUIRE(cluster_read(fl.vp, &u, fl.size, rnd(5) == 0 ? IO_RAOFF : 0) == 0);
      size_t got = len - u.resid();
      size_t want = off >= fl.size ? 0 : std::min<size_t>(len, static_cast<size_t>(fl.size - off));
      REQUIRE(got == want);
      if (got) REQUIRE(std::memcmp(buf.data(), fl.model.data() + off, got) == 0);
    } else if (op < 87) {  // truncate down (the filesystem's order: invalidate, then size)
      off_t ns = static_cast<off_t>(rnd(static_cast<uint64_t>(fl.size) + 1));
      buf_invalidate_range(fl.vp, (ns + bs - 1) / bs, INT64_MAX);
      cluster_setsize(fl.vp, ns);
      fl.model.resize(static_cast<size_t>(ns));
      fl.size = ns;
    } else if (op < 93) {
      REQUIRE(cluster_push(fl.vp, rnd(2) ? IO_SYNC : 0) == 0);
    } else if (op < 97) {
      REQUIRE(buf_invalidateblks(fl.vp, BUF_WRITE_DATA) == 0);
    } else {
      REQUIRE(buf_flushdirtyblks(fl.vp, rnd(2) ? MNT_WAIT : MNT_NOWAIT) == 0);
    }
  }
  // Everything written must reach the device: read it back after dropping the cache.
  for (auto& fl : files) {
    REQUIRE(buf_invalidateblks(fl.vp, BUF_WRITE_DATA) == 0);
    std::vector<char> out(static_cast<size_t>(fl.size));
    uio u(out.data(), out.size(), 0, UIO_READ);
    REQUIRE(cluster_read(fl.vp, &u, fl.size, 0) == 0);
    REQUIRE(out == fl.model);
  }
  auto s = f.stats();
  CHECK(s.dirty_max <= s.buffers);
  CHECK(s.busy == 0);
}

// stress_test.cpp: several threads on overlapping blocks of several vnodes in a small cache (getblk, bread,
// bdwrite, bawrite, bwrite, brelse, invalidation, flushes, cluster_read runs, eviction by reuse, and the
// reclaim of a vnode), checking every block's data against a model. Each block written carries a stamp
// (vnode id, lblkno, generation); generations of a block are issued under its busy ownership, so the
// model needs no lock of its own: the cache's busy hand-off is what orders it (TSan checks that too).
//
// Exact check: a block read back must carry the generation last written, unless an invalidation of its
// vnode began since that write (then anything from the last synchronously written generation up to the
// last one written is allowed: discarded delayed writes may or may not have reached the disk first).
// The seed is printed on failure; VNOPFS_STRESS_SEED replays the operation sequence (the interleaving is
// the scheduler's), VNOPFS_STRESS_MS sets the run time (default 1500 ms).
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cache_fixture.h"
#include "vnopfs/uio.h"

using namespace cachetest;

namespace {

constexpr int kVnodes = 4;          // shared by every thread
constexpr daddr64_t kBlocks = 96;   // per vnode: 4 x 96 blocks over a 256-buffer cache
constexpr int kThreads = 4;
constexpr uint64_t kTailMagic = 0x5354524553535441ull;

struct stamp {
  uint64_t vid;
  int64_t lbn;
  uint64_t gen;
};

// The model of one block. Fields are written only by the owner of the block's busy buffer.
struct block_model {
  uint64_t latest = 0;      // last generation written into the buffer
  uint64_t floor = 0;       // last generation a buf_bwrite reported written
  uint64_t disc_snap = 0;   // the vnode's invalidation count when `latest` was written
  bool exact = true;        // no invalidation of the vnode was running when `latest` was written
};

struct vmodel {
  vnode* vp = nullptr;
  uint64_t id = 0;
  daddr64_t base = 0;
  std::atomic<uint64_t> disc_begin{0}, disc_end{0};
  block_model blocks[kBlocks];
};

struct failures {
  std::mutex m;
  std::atomic<int> count{0};
  std::string first;
  void add(const std::string& s) {
    if (count.fetch_add(1) == 0) {
      std::lock_guard g(m);
      first = s;
    }
  }
};

void put_stamp(char* d, uint32_t bs, const stamp& s) {
  std::memcpy(d, &s, sizeof s);
  std::memset(d + sizeof s, static_cast<int>(s.gen & 0xff), bs - sizeof s - 8);
  uint64_t tail = s.gen ^ kTailMagic;
  std::memcpy(d + bs - 8, &tail, 8);
}

// Returns an empty string when d holds a whole stamp of (vid, lbn) (or was never written) and sets *gen.
std::string get_stamp(const char* d, uint32_t bs, uint64_t vid, daddr64_t lbn, uint64_t* gen) {
  stamp s;
  std::memcpy(&s, d, sizeof s);
  uint64_t tail;
  std::memcpy(&tail, d + bs - 8, 8);
  if (s.vid == 0 && s.lbn == 0 && s.gen == 0 && tail == 0) {
    *gen = 0;
    return {};
  }
  if (s.vid != vid || s.lbn != lbn)
    return "block (" + std::to_string(vid) + "," + std::to_string(lbn) + ") holds the stamp of (" +
           std::to_string(s.vid) + "," + std::to_string(s.lbn) + ") gen " + std::to_string(s.gen);
  if (tail != (s.gen ^ kTailMagic) || static_cast<unsigned char>(d[bs / 2]) != (s.gen & 0xff))
    return "block (" + std::to_string(vid) + "," + std::to_string(lbn) + ") torn: gen " + std::to_string(s.gen);
  *gen = s.gen;
  return {};
}

// Checks a generation read while owning the block.
std::string check_gen(const vmodel& v, const block_model& b, daddr64_t lbn, uint64_t gen) {
  bool exact = b.exact && v.disc_begin.load() == b.disc_snap;
  bool ok = exact ? gen == b.latest : (gen >= b.floor && gen <= b.latest);
  if (ok) return {};
  return "block (" + std::to_string(v.id) + "," + std::to_string(lbn) + ") gen " + std::to_string(gen) +
         (exact ? " expected " + std::to_string(b.latest)
                : " outside [" + std::to_string(b.floor) + "," + std::to_string(b.latest) + "]");
}

}  // namespace

TEST_CASE("stress: threads on overlapping blocks of several vnodes keep every block's data", "[stress]") {
  uint64_t seed = std::random_device{}();
  if (const char* e = std::getenv("VNOPFS_STRESS_SEED")) seed = std::strtoull(e, nullptr, 0);
  int run_ms = 1500;
  if (const char* e = std::getenv("VNOPFS_STRESS_MS")) run_ms = std::atoi(e);
  INFO("seed " << seed << " (VNOPFS_STRESS_SEED=" << seed << " replays the operation sequence)");

  bufcache_config cfg = fixture::small_config();
  cfg.cache_bytes = 1u << 20;  // 256 buffers for 384 blocks: eviction all the time
  cfg.flusher_period_ms = 20;
  cfg.flush_age_ms = 40;
  cfg.max_io_bytes = 64u << 10;
  fixture f(cfg);
  REQUIRE(f.create_err == 0);
  const uint32_t bs = f.bs();

  auto models = std::make_unique<vmodel[]>(kVnodes + 1);
  for (int i = 0; i <= kVnodes; i++) {
    models[i].id = static_cast<uint64_t>(i + 1);
    models[i].base = static_cast<daddr64_t>(1024 * (i + 1));
    models[i].vp = f.file(models[i].id, models[i].base);
    REQUIRE(models[i].vp != nullptr);
  }
  vmodel& priv = models[kVnodes];  // thread 0's own vnode: it reclaims and recreates it

  failures fails;
  std::atomic<uint64_t> ops{0};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(run_ms);

  // Reads (or gets) a block busy, checks it, maybe writes a new generation, and releases it one of the ways.
  auto block_op = [&](std::mt19937_64& rng, vmodel& v) {
    daddr64_t lbn = static_cast<daddr64_t>(rng() % kBlocks);
    block_model& b = v.blocks[lbn];
    unsigned what = rng() % 100;
    BufRef bp;
    if (what < 10) {  // a whole-block overwrite without reading
      bp = buf_getblk(v.vp, lbn, BLK_WRITE);
      if (!bp) return fails.add("getblk returned nothing");
    } else {
      int err = buf_bread(v.vp, lbn, &bp);
      if (err) return fails.add("bread error " + std::to_string(err));
      uint64_t gen = 0;
      std::string e = get_stamp(bp.data(), bs, v.id, lbn, &gen);
      if (e.empty()) e = check_gen(v, b, lbn, gen);
      if (!e.empty()) return fails.add(e);
    }
    if (what >= 10 && what < 55) {  // read only
      unsigned how = rng() % 10;
      if (how == 0) buf_setflags(bp.get(), B_AGE);
      if (how == 1) buf_setflags(bp.get(), B_NOCACHE);
      buf_brelse(std::move(bp));
      return;
    }
    b.latest++;
    b.disc_snap = v.disc_begin.load();
    b.exact = v.disc_end.load() == b.disc_snap;
    put_stamp(bp.data(), bs, {v.id, lbn, b.latest});
    unsigned how = rng() % 10;
    if (how < 7) {
      buf_bdwrite(std::move(bp));
    } else if (how < 9) {
      buf_bawrite(std::move(bp));
    } else {
      uint64_t g = b.latest;
      int err = buf_bwrite(std::move(bp));
      if (err) return fails.add("bwrite error " + std::to_string(err));
      // Generation g is on disk. bwrite released the buffer, so the model is written again only as the
      // block's owner: take it busy (without reading) to raise the floor.
      BufRef again = buf_getblk(v.vp, lbn, BLK_READ);
      if (!again) return fails.add("getblk returned nothing");
      if (b.floor < g) b.floor = g;
    }
  };

  auto discard_op = [&](std::mt19937_64& rng, vmodel& v) {
    v.disc_begin.fetch_add(1);
    unsigned what = rng() % 3;
    if (what == 0) {
      daddr64_t lo = static_cast<daddr64_t>(rng() % kBlocks);
      buf_invalidate_range(v.vp, lo, lo + 1 + static_cast<daddr64_t>(rng() % 16));
    } else if (what == 1) {
      buf_invalblkno(v.vp, static_cast<daddr64_t>(rng() % kBlocks));
    } else {
      (void)buf_invalidateblks(v.vp, BUF_WRITE_DATA);
    }
    v.disc_end.fetch_add(1);
  };

  // A run read through cluster_read (getblk_run, release_run, read_run): every block's stamp names it.
  auto run_read_op = [&](std::mt19937_64& rng, vmodel& v) {
    daddr64_t lo = static_cast<daddr64_t>(rng() % kBlocks);
    size_t n = std::min<size_t>(1 + rng() % 24, static_cast<size_t>(kBlocks - lo));
    std::vector<char> out(n * bs);
    uio u(out.data(), out.size(), static_cast<off_t>(lo) * bs, UIO_READ);
    int err = cluster_read(v.vp, &u, static_cast<off_t>(kBlocks) * bs, 0);
    if (err) return fails.add("cluster_read error " + std::to_string(err));
    for (size_t k = 0; k < n; k++) {
      uint64_t gen;
      std::string e = get_stamp(out.data() + k * bs, bs, v.id, lo + static_cast<daddr64_t>(k), &gen);
      if (!e.empty()) return fails.add("cluster_read: " + e);
    }
  };

  auto worker = [&](int t) {
    std::mt19937_64 rng(seed + static_cast<uint64_t>(t) * 0x9E3779B97F4A7C15ull);
    while (std::chrono::steady_clock::now() < deadline && fails.count.load() == 0) {
      for (int i = 0; i < 64; i++) {
        unsigned what = rng() % 1000;
        vmodel& v = models[rng() % kVnodes];
        if (what < 900) block_op(rng, v);
        else if (what < 960) run_read_op(rng, v);
        else if (what < 975) discard_op(rng, v);
        else if (what < 990) (void)buf_flushdirtyblks(v.vp, (what & 1) ? MNT_WAIT : MNT_NOWAIT);
        else if (t == 0) {
          // Thread 0's vnode: written, flushed, reclaimed and made again; the data must survive.
          for (int k = 0; k < 8; k++) block_op(rng, priv);
          if (buf_flushdirtyblks(priv.vp, MNT_WAIT) != 0) return fails.add("flush of the private vnode failed");
          f.release(priv.vp);
          priv.vp = f.file(priv.id, priv.base);
          if (priv.vp == nullptr) return fails.add("vnode_create failed");
        }
        ops.fetch_add(1, std::memory_order_relaxed);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) threads.emplace_back(worker, t);
  for (auto& th : threads) th.join();
  INFO("operations " << ops.load());
  {
    std::lock_guard g(fails.m);
    INFO("first failure: " << fails.first);
    REQUIRE(fails.count.load() == 0);
  }

  // Everything flushed: the device holds, for every block, the model's generation (or, after an
  // invalidation, one inside the allowed range).
  for (int i = 0; i <= kVnodes; i++) REQUIRE(buf_flushdirtyblks(models[i].vp, MNT_WAIT) == 0);
  std::vector<char> d(bs);
  for (int i = 0; i <= kVnodes; i++) {
    for (daddr64_t lbn = 0; lbn < kBlocks; lbn++) {
      f.mem->peek(static_cast<uint64_t>(models[i].base + lbn) * bs, d.data(), bs);
      uint64_t gen = 0;
      std::string e = get_stamp(d.data(), bs, models[i].id, lbn, &gen);
      if (e.empty()) e = check_gen(models[i], models[i].blocks[lbn], lbn, gen);
      INFO(e);
      CHECK(e.empty());
    }
  }
  for (int k = 0; k < 1000 && f.stats().busy != 0; k++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(f.stats().busy == 0);
  auto s = f.stats();
  INFO("hits " << s.hits << " misses " << s.misses << " evictions " << s.evictions);
  CHECK(s.evictions > 0);
}

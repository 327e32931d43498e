// buf_test.cpp: the buffer cache over a real vnop table and a device (cache_fixture.h).
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "cache_fixture.h"

using namespace cachetest;

TEST_CASE("bufcache_create validates its configuration", "[buf]") {
  bufcache_config c;
  c.block_size = 3000;
  fixture bad(c);
  CHECK(bad.create_err == EINVAL);
  c = fixture::small_config();
  c.cache_bytes = 512u << 10;
  fixture small(c);
  CHECK(small.create_err == EINVAL);
  fixture ok;
  REQUIRE(ok.create_err == 0);
  CHECK(ok.mp.mnt_devvp != nullptr);
  CHECK(ok.stats().buffers == (8u << 20) / 4096);
}

TEST_CASE("a delayed write is read back from the cache without device I/O", "[buf]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* devvp = f.mp.mnt_devvp;
  BufRef bp = buf_getblk(devvp, 100, BLK_META);
  REQUIRE(bp);
  CHECK(!(buf_flags(bp.get()) & B_DONE));
  CHECK(buf_blkno(bp.get()) == 100);
  std::memset(bp.data(), 0x5a, f.bs());
  buf_bdwrite(std::move(bp));
  CHECK(f.stats().dirty == 1);
  BufRef again;
  REQUIRE(buf_meta_bread(devvp, 100, &again) == 0);
  CHECK(again.data()[17] == 0x5a);
  CHECK((buf_flags(again.get()) & B_CACHE));
  again = BufRef();  // released by assignment
  CHECK(f.rec->count(dev::io_op::read) == 0);
  CHECK(f.rec->count(dev::io_op::write) == 0);
  REQUIRE(buf_flushdirtyblks(devvp, MNT_WAIT) == 0);
  auto w = f.rec->log(dev::io_op::write);
  REQUIRE(w.size() == 1);
  CHECK(w[0].offset == 100u * 4096);
  char disk[4096];
  f.mem->peek(100u * 4096, disk, sizeof disk);
  CHECK(disk[4095] == 0x5a);
  CHECK(f.stats().dirty == 0);
}

TEST_CASE("buf_bread reads through the device and caches", "[buf]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 1000);
  BufRef bp;
  REQUIRE(buf_bread(vp, 3, &bp) == 0);
  CHECK(buf_blkno(bp.get()) == 1003);
  buf_brelse(std::move(bp));
  REQUIRE(buf_bread(vp, 3, &bp) == 0);
  CHECK(f.rec->count(dev::io_op::read) == 1);
  auto s = f.stats();
  CHECK(s.hits == 1);
  CHECK(s.misses == 1);
}

namespace {
std::atomic<int> callbacks{0};
void count_cb(buf* bp, void* arg) {
  callbacks++;
  *static_cast<int*>(arg) = buf_error(bp);
  buf_brelse(BufRef(bp));
}
}  // namespace

TEST_CASE("bawrite completes through biodone; a B_CALL callback runs exactly once", "[buf]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 5000);
  BufRef bp = buf_getblk(vp, 0, BLK_WRITE);
  buf_clear(bp.get());
  bp.data()[0] = 'x';
  REQUIRE(buf_bawrite(std::move(bp)) == 0);
  buf_vnode_waitforwrites(vp);
  char disk[8];
  f.mem->peek(5000u * 4096, disk, sizeof disk);
  CHECK(disk[0] == 'x');
  CHECK(f.stats().busy == 0);

  callbacks = 0;
  int seen = -1;
  bp = buf_getblk(vp, 1, BLK_WRITE);
  buf_clear(bp.get());
  buf_setcallback(bp.get(), count_cb, &seen);
  CHECK((buf_flags(bp.get()) & (B_CALL | B_ASYNC)) == (B_CALL | B_ASYNC));
  REQUIRE(VNOP_BWRITE(bp.release()) == 0);
  buf_vnode_waitforwrites(vp);
  for (int i = 0; i < 1000 && f.stats().busy != 0; i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(callbacks == 1);
  CHECK(seen == 0);
  CHECK(f.stats().busy == 0);
}

TEST_CASE("reclaim takes AGE buffers before LRU ones, LRU in release order", "[buf]") {
  bufcache_config cfg = fixture::small_config();
  cfg.cache_bytes = 1u << 20;  // 256 buffers
  fixture f(cfg);
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 0);
  const int n = 256;
  for (int i = 0; i < n; i++) {
    BufRef bp;
    REQUIRE(buf_bread(vp, i, &bp) == 0);
    if (i == 200) buf_setflags(bp.get(), B_AGE);
  }
  // All 256 in core. A new block must evict block 200 (AGE) first, then 0, then 1 (LRU order).
  auto incore = [&](daddr64_t b) { return static_cast<bool>(buf_getblk(vp, b, BLK_ONLYVALID)); };
  { BufRef bp; REQUIRE(buf_bread(vp, 1000, &bp) == 0); }
  CHECK(!incore(200));
  CHECK(incore(0));  // touching 0 moves it to the LRU tail
  { BufRef bp; REQUIRE(buf_bread(vp, 1001, &bp) == 0); }
  CHECK(!incore(1));
  CHECK(incore(0));
  CHECK(incore(2));
  CHECK(f.stats().evictions == 2);
}

TEST_CASE("a read error gives EIO and leaves no half-valid buffer", "[buf]") {
  bufcache_config cfg = fixture::small_config();
  fixture f(cfg, 1u << 20);  // a 1 MiB device: block 1000 is past its end
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 0);
  BufRef bp;
  CHECK(buf_bread(vp, 1000, &bp) == EIO);
  CHECK(!bp);
  CHECK(!buf_getblk(vp, 1000, BLK_ONLYVALID));
  CHECK(f.stats().read_errors >= 1);
  CHECK(f.stats().busy == 0);
}

TEST_CASE("invalidation discards buffers; invalblkno drops one metadata block", "[buf]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 0);
  for (int i = 0; i < 10; i++) {
    BufRef bp = buf_getblk(vp, i, BLK_WRITE);
    buf_clear(bp.get());
    buf_bdwrite(std::move(bp));
  }
  CHECK(buf_vnode_isdirty(vp));
  buf_invalidate_range(vp, 2, 5);
  CHECK(!buf_getblk(vp, 3, BLK_ONLYVALID));
  CHECK(buf_getblk(vp, 5, BLK_ONLYVALID));
  CHECK(f.stats().dirty == 7);
  REQUIRE(buf_invalidateblks(vp, BUF_WRITE_DATA) == 0);
  CHECK(f.stats().dirty == 0);
  CHECK(!buf_vnode_isdirty(vp));
  CHECK(!buf_getblk(vp, 0, BLK_ONLYVALID));

  vnode* devvp = f.mp.mnt_devvp;
  BufRef m = buf_getblk(devvp, 7, BLK_META);
  buf_clear(m.get());
  buf_bdwrite(std::move(m));
  buf_invalblkno(devvp, 7);
  CHECK(!buf_getblk(devvp, 7, BLK_ONLYVALID));
  CHECK(buf_flushdirtyblks(devvp, MNT_WAIT) == 0);
  auto w = f.rec->log(dev::io_op::write);  // blocks 0-1 and 5-9 in two runs; metadata block 7 never written
  REQUIRE(w.size() == 2);
  CHECK(w[0].length == 2u * 4096);
  CHECK(w[1].offset == 5u * 4096);
  CHECK(w[1].length == 5u * 4096);
}

TEST_CASE("a failed delayed write stays dirty and surfaces as EIO from the next flush with wait", "[buf]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 2000);
  BufRef bp = buf_getblk(vp, 0, BLK_WRITE);
  std::memset(bp.data(), 'k', f.bs());
  buf_bdwrite(std::move(bp));
  f.rec->fail_writes(2000u * 4096, 2001u * 4096);
  CHECK(buf_flushdirtyblks(vp, MNT_WAIT) == EIO);
  CHECK(buf_vnode_isdirty(vp));  // kept, not silently dropped
  BufRef again;
  REQUIRE(buf_bread(vp, 0, &again) == 0);
  CHECK(again.data()[5] == 'k');
  buf_brelse(std::move(again));
  CHECK(buf_flushdirtyblks(vp, MNT_WAIT) == EIO);  // the retry failed too
  f.rec->fail_writes(0, 0);
  CHECK(buf_flushdirtyblks(vp, MNT_WAIT) == 0);  // the device recovered: written, reported clean
  CHECK(!buf_vnode_isdirty(vp));
  char disk[4];
  f.mem->peek(2000u * 4096, disk, sizeof disk);
  CHECK(disk[0] == 'k');
}

TEST_CASE("after max_write_retries the data is dropped and the error is sticky", "[buf]") {
  bufcache_config cfg = fixture::small_config();
  cfg.write_retry_interval_ms = 0;  // every failure counts
  fixture f(cfg);
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 2000);
  BufRef bp = buf_getblk(vp, 0, BLK_WRITE);
  buf_clear(bp.get());
  buf_bdwrite(std::move(bp));
  f.rec->fail_writes(0, UINT64_MAX);
  for (uint32_t i = 0; i < bufcache_getconfig(&f.mp).max_write_retries; i++) CHECK(buf_flushdirtyblks(vp, MNT_WAIT) == EIO);
  CHECK(!buf_vnode_isdirty(vp));
  CHECK(f.stats().dropped_dirty == 1);
  f.rec->fail_writes(0, 0);
  CHECK(buf_flushdirtyblks(vp, MNT_WAIT) == EIO);  // sticky
  CHECK(buf_flushdirtyblks(vp, MNT_WAIT) == EIO);
}

TEST_CASE("buf_bwrite returns the write error and keeps the data", "[buf]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* devvp = f.mp.mnt_devvp;
  f.rec->fail_writes(0, UINT64_MAX);
  BufRef bp = buf_getblk(devvp, 9, BLK_META);
  buf_clear(bp.get());
  CHECK(buf_bwrite(std::move(bp)) == EIO);
  CHECK(buf_vnode_isdirty(devvp));
  f.rec->fail_writes(0, 0);
  CHECK(buf_flushdirtyblks(devvp, MNT_WAIT) == EIO);  // the recorded error, once
  CHECK(!buf_vnode_isdirty(devvp));
  CHECK(buf_flushdirtyblks(devvp, MNT_WAIT) == 0);
}

TEST_CASE("memory stays bounded under 8 writers of 4x the cache; throttled writers progress", "[buf]") {
  bufcache_config cfg = fixture::small_config();
  cfg.cache_bytes = 2u << 20;  // 512 buffers
  cfg.flusher_period_ms = 50;
  fixture f(cfg, 64u << 20);
  REQUIRE(f.create_err == 0);
  const int writers = 8, per = 4 * 512 / writers * 1;  // together 4x the cache
  std::vector<vnode*> vps;
  for (int w = 0; w < writers; w++) vps.push_back(f.file(10 + w, w * 2048));
  std::atomic<int> done{0};
  std::atomic<bool> bad{false};
  std::vector<std::thread> th;
  for (int w = 0; w < writers; w++) {
    th.emplace_back([&, w] {
      for (int i = 0; i < per; i++) {
        BufRef bp = buf_getblk(vps[w], i, BLK_WRITE);
        if (!bp) { bad = true; return; }
        std::memset(bp.data(), w + 1, 4096);
        buf_bdwrite(std::move(bp));
      }
      done++;
    });
  }
  for (auto& t : th) t.join();
  CHECK(!bad);
  CHECK(done == writers);
  for (vnode* vp : vps) CHECK(buf_flushdirtyblks(vp, MNT_WAIT) == 0);
  auto s = f.stats();
  CHECK(s.buffers == 512);
  CHECK(s.dirty_max <= 512);
  CHECK(s.bdwrite_to_async + s.throttle_waits > 0);
  for (int w = 0; w < writers; w++) {
    char b[1];
    f.mem->peek((static_cast<uint64_t>(w) * 2048 + per - 1) * 4096, b, 1);
    CHECK(b[0] == w + 1);
  }
}

TEST_CASE("reclaim of a vnode discards its buffers and frees its state", "[buf]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 0);
  BufRef bp = buf_getblk(vp, 0, BLK_WRITE);
  buf_clear(bp.get());
  buf_bdwrite(std::move(bp));
  CHECK(f.stats().dirty == 1);
  f.release(vp);
  CHECK(f.stats().dirty == 0);
}

// failed_test.cpp: data whose write failed keeps its vnode (buf.h, "Errors"; vnode.h, v_holdcount): the
// vnode is not reclaimed at its last reference, its data stays readable and is retried until it is written,
// unmount gives it up, and writers get EIO instead of hanging when failed data fills the dirty allowance.
#include <catch2/catch.hpp>

#include <chrono>
#include <future>

#include "cache_fixture.h"

using namespace cachetest;

namespace {

// A fixture file vnode that is also in the mount's hash, as a filesystem's vnodes are (vfs_hash_get finds an
// idle one; vfs_reclaim_idle walks the hash).
vnode* hashed_file(fixture& f, uint64_t id, daddr64_t base) {
  vnode* vp = f.file(id, base);
  vnode* existing = nullptr;
  REQUIRE(vp != nullptr);
  REQUIRE(vfs_hash_insert(vp, &existing) == 0);
  REQUIRE(existing == nullptr);
  return vp;
}

uint32_t lflag(vnode* vp) {
  std::lock_guard g(vp->v_mount->mnt_vnode_mutex);
  return vp->v_lflag;
}

bool hashed(fixture& f, uint64_t id) {
  std::lock_guard g(f.mp.mnt_vnode_mutex);
  return f.mp.mnt_vnodes.count(id) != 0;
}

void write_block(vnode* vp, daddr64_t lbn, char c, uint32_t bs) {
  BufRef bp = buf_getblk(vp, lbn, BLK_WRITE);
  REQUIRE(bp);
  std::memset(bp.data(), c, bs);
  buf_bdwrite(std::move(bp));
}

}  // namespace

TEST_CASE("a vnode with failed writes is kept at its last reference, read back, retried and then reclaimed",
          "[buf][failed]") {
  bufcache_config cfg = fixture::small_config();
  cfg.flush_age_ms = 100;
  cfg.flusher_period_ms = 50;
  cfg.max_write_retries = 1000;  // the retries of this test must not drop the data
  fixture f(cfg);
  REQUIRE(f.create_err == 0);
  vnode* vp = hashed_file(f, 7, 3000);
  write_block(vp, 0, 'n', f.bs());
  f.rec->fail_writes(0, UINT64_MAX);
  CHECK(buf_flushdirtyblks(vp, MNT_WAIT) == EIO);
  CHECK(f.stats().failed == 1);
  {
    std::lock_guard g(f.mp.mnt_vnode_mutex);
    CHECK(vp->v_holdcount == 1);  // the cache's hold
  }
  f.release(vp);  // the last reference: inactive, but no reclaim
  REQUIRE(hashed(f, 7));
  CHECK((lflag(vp) & VL_INACTIVE));
  // Found again by a lookup: the new bytes, from the cache.
  vnode* again = nullptr;
  REQUIRE(vfs_hash_get(&f.mp, 7, &again) == 0);
  CHECK(again == vp);
  CHECK(!(lflag(vp) & VL_INACTIVE));
  {
    BufRef bp;
    REQUIRE(buf_bread(vp, 0, &bp) == 0);
    CHECK(bp.data()[0] == 'n');
  }
  vnode_put(vp);
  CHECK((lflag(vp) & VL_INACTIVE));
  // The flusher retries it (with a hold, never reclaiming it itself) until the device takes it.
  auto failed_before = f.rec->failed();
  auto t0 = std::chrono::steady_clock::now();
  while (f.rec->failed() < failed_before + 2 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(f.rec->failed() >= failed_before + 2);
  REQUIRE(hashed(f, 7));
  f.rec->fail_writes(0, 0);
  t0 = std::chrono::steady_clock::now();
  while (f.stats().failed != 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(f.stats().failed == 0);
  char disk[4];
  f.mem->peek(3000u * 4096, disk, sizeof disk);
  CHECK(disk[0] == 'n');
  // Written: the hold is gone and the idle vnode goes at the next sweep.
  {
    std::unique_lock g(f.mp.mnt_vnode_mutex);
    t0 = std::chrono::steady_clock::now();
    while (vp->v_holdcount != 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) {
      g.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      g.lock();
    }
    CHECK(vp->v_holdcount == 0);
  }
  CHECK(vfs_busy_vnodes(&f.mp) == 0);
  vfs_reclaim_idle(&f.mp);
  CHECK(!hashed(f, 7));
}

TEST_CASE("unmount gives up failed writes of an idle vnode: reclaimed, the data discarded", "[buf][failed]") {
  bufcache_config cfg = fixture::small_config();
  cfg.max_write_retries = 1000;
  fixture f(cfg);
  REQUIRE(f.create_err == 0);
  vnode* vp = hashed_file(f, 8, 4000);
  write_block(vp, 0, 'u', f.bs());
  write_block(vp, 1, 'u', f.bs());
  f.rec->fail_writes(0, UINT64_MAX);
  CHECK(buf_flushdirtyblks(vp, MNT_WAIT) == EIO);
  f.release(vp);
  REQUIRE(hashed(f, 8));
  CHECK(vfs_busy_vnodes(&f.mp) == 0);  // idle: does not make the mount busy
  vfs_reclaim_idle(&f.mp);             // still held: nothing happens
  REQUIRE(hashed(f, 8));
  bufcache_release_holds(&f.mp);
  vfs_reclaim_idle(&f.mp);
  CHECK(!hashed(f, 8));
  CHECK(f.stats().failed == 0);
  CHECK(f.stats().dirty == 0);
}

TEST_CASE("a vnode whose failed data is invalidated is reclaimed at its last reference", "[buf][failed]") {
  bufcache_config cfg = fixture::small_config();
  cfg.max_write_retries = 1000;
  fixture f(cfg);
  REQUIRE(f.create_err == 0);
  vnode* vp = hashed_file(f, 9, 5000);
  write_block(vp, 0, 't', f.bs());
  f.rec->fail_writes(0, UINT64_MAX);
  CHECK(buf_flushdirtyblks(vp, MNT_WAIT) == EIO);
  buf_invalidate_range(vp, 0, INT64_MAX);  // a truncate, or an unlinked file's end
  {
    std::lock_guard g(f.mp.mnt_vnode_mutex);
    CHECK(vp->v_holdcount == 0);
  }
  f.release(vp);
  CHECK(!hashed(f, 9));
}

TEST_CASE("when failed writes fill the dirty allowance, writers get EIO instead of hanging", "[cluster][failed]") {
  bufcache_config cfg = fixture::small_config();
  cfg.cache_bytes = 2u << 20;  // 512 buffers, high-water 384
  cfg.flusher_period_ms = 20;
  cfg.max_write_retries = 1000;  // nothing is dropped: only a refusal can end the wait
  fixture f(cfg, 64u << 20);
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 0);
  f.rec->fail_writes(0, UINT64_MAX);
  auto writer = std::async(std::launch::async, [&] {
    std::vector<char> chunk(64 << 10, 'w');
    off_t size = 0;
    for (int i = 0; i < 64; i++) {  // 4 MiB: twice the cache
      off_t off = static_cast<off_t>(i) * static_cast<off_t>(chunk.size());
      uio u(chunk.data(), chunk.size(), off, UIO_WRITE);
      off_t newEOF = off + static_cast<off_t>(chunk.size());
      cluster_setsize(vp, newEOF);
      int err = cluster_write(vp, &u, size, newEOF, size, 0, 0);
      if (err) return err;
      size = newEOF;
      (void)cluster_push(vp, 0);  // write-behind: every push fails
    }
    return 0;
  });
  REQUIRE(writer.wait_for(std::chrono::seconds(60)) == std::future_status::ready);
  CHECK(writer.get() == EIO);
  bufcache_stats s = f.stats();
  CHECK(s.failed_throttle >= 1);
  CHECK(s.failed >= s.buffers * cfg.dirty_highwater_pct / 100);
  CHECK(s.dirty <= s.buffers);
  f.rec->fail_writes(0, 0);
  CHECK(buf_flushdirtyblks(vp, MNT_WAIT) == EIO);  // written now; the recorded error once
  CHECK(f.stats().failed == 0);
}

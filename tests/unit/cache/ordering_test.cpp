// ordering_test.cpp: the flusher's ordered pass (docs/durability.md, "Ordering") and the writes nothing else
// may start. Each test reads the order of requests from the recording layer under the cache.
#include <atomic>
#include <chrono>
#include <thread>

#include <catch2/catch.hpp>

#include "cache_fixture.h"

using namespace cachetest;

namespace {

// Index in the log of the first request matching, or -1.
template <class P>
long first_of(const std::vector<io_rec>& log, P pred) {
  for (size_t i = 0; i < log.size(); i++)
    if (pred(log[i])) return static_cast<long>(i);
  return -1;
}

void dirty_meta(fixture& f, daddr64_t blk, bool early, char fillc) {
  BufRef bp = buf_getblk(f.mp.mnt_devvp, blk, BLK_META);
  REQUIRE(bp);
  std::memset(bp.data(), fillc, f.bs());
  if (early) buf_setflags(bp.get(), B_EARLY);
  buf_bdwrite(std::move(bp));
}

void dirty_file(fixture& f, vnode* vp, daddr64_t lbn, char fillc) {
  BufRef bp = buf_getblk(vp, lbn, 0);
  REQUIRE(bp);
  std::memset(bp.data(), fillc, f.bs());
  buf_bdwrite(std::move(bp));
}

}  // namespace

TEST_CASE("a flusher pass writes file data, flushes, writes B_EARLY metadata, flushes, then the rest", "[ordering]") {
  bufcache_config cfg = fixture::small_config();
  cfg.flush_age_ms = 300;
  cfg.flusher_period_ms = 20;
  fixture f(cfg);
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 1000);
  REQUIRE(vp);
  const uint64_t bs = f.bs();
  // Oldest first: the inode-table-like block makes the device vnode due; the bitmap-like block and the
  // file data are younger (the data is not due by age, and must still go first: the metadata may point
  // at it).
  dirty_meta(f, 10, false, 'i');
  dirty_meta(f, 11, false, 'd');
  dirty_meta(f, 3, true, 'b');
  dirty_file(f, vp, 0, 'x');
  dirty_file(f, vp, 1, 'y');
  for (int i = 0; i < 500 && f.stats().dirty > 0; i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(f.stats().dirty == 0);
  const std::vector<io_rec> all = f.rec->all();  // writes and flushes, in submit order
  auto is_data = [&](const io_rec& r) { return r.op == dev::io_op::write && r.offset >= 1000 * bs && r.offset < 1002 * bs; };
  auto is_early = [&](const io_rec& r) { return r.op == dev::io_op::write && r.offset == 3 * bs; };
  auto is_late = [&](const io_rec& r) {
    return r.op == dev::io_op::write && r.offset <= 11 * bs && r.offset + r.length > 10 * bs;
  };
  auto is_flush = [](const io_rec& r) { return r.op == dev::io_op::flush; };
  long data = first_of(all, is_data), early = first_of(all, is_early), late = first_of(all, is_late);
  REQUIRE(data >= 0);
  REQUIRE(early >= 0);
  REQUIRE(late >= 0);
  // the last data write, then a flush, then the bitmap, then a flush, then the others
  long last_data = data;
  for (size_t i = 0; i < all.size(); i++)
    if (is_data(all[i])) last_data = static_cast<long>(i);
  long flush1 = -1, flush2 = -1;
  for (long i = last_data + 1; i < static_cast<long>(all.size()); i++)
    if (is_flush(all[i])) {
      flush1 = i;
      break;
    }
  for (long i = early + 1; i < static_cast<long>(all.size()); i++)
    if (is_flush(all[i])) {
      flush2 = i;
      break;
    }
  INFO("data " << data << "-" << last_data << ", flush " << flush1 << ", early " << early << ", flush " << flush2
               << ", late " << late << " of " << all.size());
  CHECK(flush1 > last_data);
  CHECK(early > flush1);
  CHECK(flush2 > early);
  CHECK(late > flush2);
}

TEST_CASE("past the high-water mark buf_bdwrite starts file data at once, never device metadata", "[ordering]") {
  bufcache_config cfg = fixture::small_config();
  cfg.flush_age_ms = 600000;  // the flusher stays away: only bdwrite could start a write
  cfg.flusher_period_ms = 600000;
  fixture f(cfg);
  REQUIRE(f.create_err == 0);
  const uint64_t nbufs = cfg.cache_bytes / f.bs();
  const uint64_t over = nbufs * cfg.dirty_highwater_pct / 100 + 16;
  for (uint64_t b = 0; b < over; b++) dirty_meta(f, static_cast<daddr64_t>(100 + b), (b & 1) != 0, 'm');
  CHECK(f.stats().bdwrite_to_async == 0);
  CHECK(f.rec->count(dev::io_op::write) == 0);
  CHECK(f.stats().dirty == over);
  vnode* vp = f.file(1, 50000);
  REQUIRE(vp);
  dirty_file(f, vp, 0, 'x');  // file data may go early: nothing on the device points to it yet
  CHECK(f.stats().bdwrite_to_async == 1);
  buf_vnode_waitforwrites(vp);
  CHECK(f.rec->count(dev::io_op::write) == 1);
}

// The allocation gate (buf.h, buf_alloc_hold): while a writer is between setting a pointer (here: dirtying
// a metadata block) and dirtying the data it points at, no flusher pass writes the metadata; once the data
// is dirty and the hold is gone, the next pass writes the data first, then the pointer.
TEST_CASE("the flusher writes no metadata while a write holds the allocation gate", "[ordering][gate]") {
  bufcache_config cfg = fixture::small_config();
  cfg.flush_age_ms = 50;
  cfg.flusher_period_ms = 10;
  fixture f(cfg);
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 1000);
  REQUIRE(vp);
  const uint64_t bs = f.bs();
  auto is_meta = [&](const io_rec& r) { return r.op == dev::io_op::write && r.offset == 20 * bs; };
  auto is_data = [&](const io_rec& r) { return r.op == dev::io_op::write && r.offset == 1000 * bs; };
  {
    buf_alloc_hold hold(vp);
    dirty_meta(f, 20, false, 'p');  // the pointer
    // Several Age passes come and go (each waits 200 ms for the gate, then leaves the metadata).
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    CHECK(first_of(f.rec->all(), is_meta) == -1);
    CHECK(f.stats().meta_gate_skipped > 0);
    dirty_file(f, vp, 0, 'x');  // the data it points at
  }
  for (int i = 0; i < 500 && f.stats().dirty > 0; i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(f.stats().dirty == 0);
  const std::vector<io_rec> all = f.rec->all();
  const long meta = first_of(all, is_meta), data = first_of(all, is_data);
  REQUIRE(meta >= 0);
  REQUIRE(data >= 0);
  CHECK(data < meta);
  CHECK(f.stats().meta_gate_unordered == 0);
}

// Writer preference: a flusher waiting for the gate keeps new holders out, and gives up after its timeout.
TEST_CASE("the allocation gate: a waiting flusher stops new holders, then gives up", "[ordering][gate]") {
  bufcache_config cfg = fixture::small_config();
  cfg.flush_age_ms = 1;
  cfg.flusher_period_ms = 10;
  fixture f(cfg);
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 100);
  REQUIRE(vp);
  std::atomic<bool> second_in{false};
  std::thread second;
  {
    buf_alloc_hold first(vp);
    // A flusher pass wants the gate only when metadata is due: a dirty metadata block, due after 1 ms.
    dirty_meta(f, 30, false, 'q');
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the flusher is now waiting (200 ms)
    second = std::thread([&] {
      buf_alloc_hold h(vp);
      second_in = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    CHECK_FALSE(second_in.load());  // kept out while the flusher waits
  }
  second.join();
  CHECK(second_in.load());
}

// cluster_test.cpp: the cluster layer (write-behind, sparse push, read-ahead, zero-fill) over the cache.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>

#include "cache_fixture.h"

using namespace cachetest;

namespace {

// A filesystem-style write: size to the cache before the copy, zero the gap past the old EOF.
int fs_write(vnode* vp, off_t& size, off_t off, const char* data, size_t len, int ioflag = 0) {
  uio u(const_cast<char*>(data), len, off, UIO_WRITE);
  off_t oldEOF = size, newEOF = std::max<off_t>(size, off + static_cast<off_t>(len));
  if (newEOF > size) cluster_setsize(vp, newEOF);
  int flags = ioflag;
  if (off > oldEOF) flags |= IO_HEADZEROFILL;
  int err = cluster_write(vp, &u, oldEOF, newEOF, oldEOF, 0, flags);
  if (err == 0) size = newEOF;
  return err;
}

int fs_read(vnode* vp, off_t size, off_t off, char* out, size_t len, int ioflag = 0) {
  uio u(out, len, off, UIO_READ);
  return cluster_read(vp, &u, size, ioflag);
}

bufcache_config big_config() {
  bufcache_config c;
  c.cache_bytes = 64u << 20;
  return c;
}

}  // namespace

TEST_CASE("256 sequential 4 KiB writes become exactly one 1 MiB device write", "[cluster]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 4096);
  off_t size = 0;
  std::vector<char> chunk(4096);
  for (int i = 0; i < 256; i++) {
    fill(chunk, i);
    REQUIRE(fs_write(vp, size, static_cast<off_t>(i) * 4096, chunk.data(), chunk.size()) == 0);
  }
  buf_vnode_waitforwrites(vp);
  REQUIRE(cluster_push(vp, IO_SYNC) == 0);
  auto w = f.rec->log(dev::io_op::write);
  REQUIRE(w.size() == 1);
  CHECK(w[0].offset == 4096u * 4096);
  CHECK(w[0].length == (1u << 20));
  CHECK(f.rec->count(dev::io_op::read) == 0);
  std::vector<char> disk(4096);
  f.mem->peek((4096u + 255) * 4096, disk.data(), disk.size());
  fill(chunk, 255);
  CHECK(disk == chunk);
  CHECK(f.stats().cluster_pushes >= 1);
}

TEST_CASE("9 interleaved sequential streams on one vnode still make large writes", "[cluster]") {
  fixture f(big_config());
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 0);
  off_t size = 64 << 20;
  cluster_setsize(vp, size);
  std::vector<char> chunk(4096);
  const int streams = 9, per = 512;  // 2 MiB each
  for (int i = 0; i < per; i++)
    for (int s = 0; s < streams; s++) {
      fill(chunk, s * 1000 + i);
      REQUIRE(fs_write(vp, size, (static_cast<off_t>(s) * 4 << 20) + i * 4096, chunk.data(), 4096) == 0);
    }
  REQUIRE(cluster_push(vp, IO_SYNC) == 0);
  auto w = f.rec->log(dev::io_op::write);
  uint64_t total = 0, smallest = UINT64_MAX;
  for (auto& x : w) {
    total += x.length;
    smallest = std::min(smallest, x.length);
  }
  CHECK(total == static_cast<uint64_t>(streams) * per * 4096);
  CHECK(smallest >= 256u << 10);
  CHECK(w.size() <= 2u * streams + 2);
  CHECK(f.stats().sparse_pushes >= 1);
  f.mem->peek((8ull << 20) + 100 * 4096, chunk.data(), 4096);
  std::vector<char> want(4096);
  fill(want, 2 * 1000 + 100);
  CHECK(chunk == want);
}

TEST_CASE("random 4 KiB writes over 64 MiB are pushed in ascending offset order", "[cluster]") {
  fixture f(big_config());
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 0);
  off_t size = 64 << 20;
  cluster_setsize(vp, size);
  std::mt19937 rng(7);
  std::vector<char> chunk(4096);
  for (int i = 0; i < 2048; i++) {
    off_t blk = rng() % 16384;
    fill(chunk, blk);
    REQUIRE(fs_write(vp, size, blk * 4096, chunk.data(), 4096) == 0);
  }
  CHECK(f.rec->count(dev::io_op::write) == 0);  // nothing pushed at random
  REQUIRE(cluster_push(vp, IO_SYNC) == 0);
  auto w = f.rec->log(dev::io_op::write);
  REQUIRE(w.size() > 100);
  bool ascending = true;
  for (size_t i = 1; i < w.size(); i++) ascending &= w[i].offset > w[i - 1].offset;
  CHECK(ascending);
  CHECK(f.stats().sparse_pushes == 1);
}

TEST_CASE("sequential reads grow the read-ahead window; random reads read none", "[cluster]") {
  fixture f(big_config());
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 0);
  const off_t size = 16 << 20;
  cluster_setsize(vp, size);
  std::vector<char> out(4096);
  for (off_t off = 0; off < size; off += 4096) REQUIRE(fs_read(vp, size, off, out.data(), 4096) == 0);
  auto r = f.rec->log(dev::io_op::read);
  REQUIRE(r.size() >= 4);
  CHECK(r[0].length == 4096);
  uint64_t biggest = 0;
  for (auto& x : r) biggest = std::max(biggest, x.length);
  CHECK(biggest == (1u << 20));
  CHECK(r[1].length < r[3].length);
  CHECK(r.size() < 64);  // 4096 blocks read in few large I/Os
  auto s = f.stats();
  CHECK(s.readahead_issued > 0);
  CHECK(s.readahead_used > s.readahead_issued / 2);

  vnode* rv = f.file(2, 32768);
  cluster_setsize(rv, 64 << 20);
  f.rec->clear();
  std::mt19937 rng(3);
  uint64_t before = f.stats().readahead_issued;
  for (int i = 0; i < 200; i++) {
    off_t blk = (rng() % 8000) * 2;  // never adjacent
    REQUIRE(fs_read(rv, 64 << 20, blk * 4096, out.data(), 4096) == 0);
  }
  for (auto& x : f.rec->log(dev::io_op::read)) CHECK(x.length == 4096);
  CHECK(f.stats().readahead_issued == before);
}

TEST_CASE("IO_RAOFF reads no more than asked; a multi-block miss is one I/O", "[cluster]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 0);
  std::vector<char> out(256 << 10);
  for (int i = 0; i < 4; i++)
    REQUIRE(fs_read(vp, 4 << 20, static_cast<off_t>(i) * out.size(), out.data(), out.size(), IO_RAOFF) == 0);
  auto r = f.rec->log(dev::io_op::read);
  REQUIRE(r.size() == 4);
  for (auto& x : r) CHECK(x.length == out.size());
  CHECK(f.stats().readahead_issued == 0);
}

TEST_CASE("holes read as zeros without I/O; partial writes pre-read below old EOF only", "[cluster]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 100, {0, 1, 2, 3});
  off_t size = 8 * 4096;
  cluster_setsize(vp, size);
  std::vector<char> out(4 * 4096, 'q');
  REQUIRE(fs_read(vp, size, 0, out.data(), out.size(), IO_RAOFF) == 0);
  CHECK(std::all_of(out.begin(), out.end(), [](char ch) { return ch == 0; }));
  CHECK(f.rec->count(dev::io_op::read) == 0);

  // Block 5 holds data on disk; a partial write into it (not in core) must keep the rest.
  std::vector<char> blk(4096, 'D');
  REQUIRE(dev::dev_sync_io(*f.mem, dev::io_op::write, (100 + 5) * 4096, blk.data(), 4096) == 0);
  const char* hello = "hello";
  REQUIRE(fs_write(vp, size, 5 * 4096 + 10, hello, 5) == 0);
  CHECK(f.rec->count(dev::io_op::read) == 1);
  std::vector<char> got(4096);
  REQUIRE(fs_read(vp, size, 5 * 4096, got.data(), 4096) == 0);
  CHECK(got[9] == 'D');
  CHECK(std::memcmp(got.data() + 10, "hello", 5) == 0);
  CHECK(got[15] == 'D');
  // A partial write past EOF zero-fills instead of reading, and zeroes the gap from the old EOF.
  f.rec->clear();
  REQUIRE(fs_write(vp, size, 10 * 4096 + 100, hello, 5) == 0);
  CHECK(f.rec->count(dev::io_op::read) == 0);
  std::vector<char> tail(3 * 4096 + 105);
  REQUIRE(fs_read(vp, size, 8 * 4096, tail.data(), tail.size()) == 0);
  CHECK(std::all_of(tail.begin(), tail.begin() + 2 * 4096 + 100, [](char ch) { return ch == 0; }));
  CHECK(std::memcmp(tail.data() + 2 * 4096 + 100, "hello", 5) == 0);
  CHECK(size == 10 * 4096 + 105);
  REQUIRE(cluster_push(vp, IO_SYNC) == 0);
}

TEST_CASE("IO_SYNC writes before return; IO_NOCACHE keeps nothing", "[cluster]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 0);
  off_t size = 0;
  std::vector<char> data(3 * 4096, 'S');
  REQUIRE(fs_write(vp, size, 0, data.data(), data.size(), IO_SYNC) == 0);
  CHECK(f.rec->count(dev::io_op::write) == 1);
  CHECK(!buf_vnode_isdirty(vp));
  REQUIRE(fs_write(vp, size, 3 * 4096, data.data(), data.size(), IO_NOCACHE) == 0);
  CHECK(f.rec->count(dev::io_op::write) == 2);
  CHECK(!buf_getblk(vp, 4, BLK_ONLYVALID));
  CHECK(buf_getblk(vp, 1, BLK_ONLYVALID));
}

TEST_CASE("a failing device write surfaces as EIO from the next cluster_push(IO_SYNC)", "[cluster]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 0);
  off_t size = 0;
  std::vector<char> data(64 << 10, 'E');
  f.rec->fail_writes(0, 1 << 20);
  REQUIRE(fs_write(vp, size, 0, data.data(), data.size()) == 0);  // delayed: fine for now
  CHECK(cluster_push(vp, IO_SYNC) == EIO);
  CHECK(buf_vnode_isdirty(vp));  // still there for the next try
  f.rec->fail_writes(0, 0);
  CHECK(cluster_push(vp, IO_SYNC) == 0);
  std::vector<char> disk(data.size());
  f.mem->peek(0, disk.data(), disk.size());
  CHECK(disk == data);
}

TEST_CASE("cluster_write maps a request's run once when filling; the push does not map again", "[cluster][map]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 3000);
  auto* n = static_cast<tnode*>(vp->v_data);
  off_t size = 0;
  std::vector<char> data(64 * 4096);
  fill(data, 11);
  REQUIRE(fs_write(vp, size, 0, data.data(), data.size()) == 0);
  CHECK(n->blockmaps == 1);  // one VNOP_BLOCKMAP for the 64-block request
  {
    BufRef bp = buf_getblk(vp, 63, BLK_ONLYVALID);
    REQUIRE(bp);
    CHECK(buf_blkno(bp.get()) == 3063);  // b_blkno set when the buffer was filled
    CHECK((buf_flags(bp.get()) & B_DELWRI));
  }
  REQUIRE(cluster_push(vp, IO_SYNC) == 0);
  CHECK(n->blockmaps == 1);  // the push used b_blkno
  auto w = f.rec->log(dev::io_op::write);
  REQUIRE(w.size() == 1);
  CHECK(w[0].offset == 3000u * 4096);
  CHECK(w[0].length == data.size());
  std::vector<char> disk(data.size());
  f.mem->peek(3000u * 4096, disk.data(), disk.size());
  CHECK(disk == data);
}

TEST_CASE("a hole at fill time stays unmapped and is allocated by the push", "[cluster][map]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 7000, {4, 5});
  off_t size = 8 * 4096;
  cluster_setsize(vp, size);
  std::vector<char> data(8 * 4096);
  fill(data, 5);
  REQUIRE(fs_write(vp, size, 0, data.data(), data.size()) == 0);
  {
    BufRef bp = buf_getblk(vp, 4, BLK_ONLYVALID);
    REQUIRE(bp);
    CHECK(buf_blkno(bp.get()) == BUF_UNMAPPED);
  }
  REQUIRE(cluster_push(vp, IO_SYNC) == 0);
  std::vector<char> disk(data.size());
  f.mem->peek(7000u * 4096, disk.data(), disk.size());
  CHECK(disk == data);
}

TEST_CASE("errors stay exact in a run: a block whose mapping fails fails alone", "[cluster][errors]") {
  fixture f;
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 9000);
  auto* n = static_cast<tnode*>(vp->v_data);
  {
    std::lock_guard g(n->m);
    n->bad = {5};
  }
  off_t size = 0;
  std::vector<char> data(16 * 4096);
  fill(data, 21);
  REQUIRE(fs_write(vp, size, 0, data.data(), data.size()) == 0);  // delayed: the mapping error waits for the push
  CHECK(cluster_push(vp, IO_SYNC) == EIO);
  CHECK(f.stats().dirty == 1);  // only block 5 kept dirty
  CHECK(!(buf_flags(buf_getblk(vp, 4, BLK_ONLYVALID).get()) & B_DELWRI));
  CHECK((buf_flags(buf_getblk(vp, 5, BLK_ONLYVALID).get()) & B_DELWRI));
  CHECK(!(buf_flags(buf_getblk(vp, 6, BLK_ONLYVALID).get()) & B_DELWRI));
  std::vector<char> disk(data.size());
  f.mem->peek(9000u * 4096, disk.data(), disk.size());
  CHECK(std::memcmp(disk.data(), data.data(), 5 * 4096) == 0);
  CHECK(std::memcmp(disk.data() + 6 * 4096, data.data() + 6 * 4096, 10 * 4096) == 0);
  CHECK(cluster_push(vp, IO_SYNC) == EIO);  // still failing: reported again, data still kept
  {
    std::lock_guard g(n->m);
    n->bad.clear();
  }
  CHECK(cluster_push(vp, IO_SYNC) == 0);
  CHECK(f.stats().dirty == 0);
  f.mem->peek(9000u * 4096, disk.data(), disk.size());
  CHECK(disk == data);
}

TEST_CASE("errors stay exact under batching: a failed cluster I/O fails only its own members", "[cluster][errors]") {
  fixture f(big_config());
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 0);
  off_t size = 8 << 20;
  cluster_setsize(vp, size);
  // Three separate runs of 64 blocks (three I/Os of one push), the middle one on a failing device range.
  std::vector<char> data(64 * 4096);
  const off_t starts[3] = {0, 1 << 20, 2 << 20};
  for (int r = 0; r < 3; r++) {
    fill(data, 100 + r);
    REQUIRE(fs_write(vp, size, starts[r], data.data(), data.size()) == 0);
  }
  f.rec->fail_writes(1u << 20, (1u << 20) + 4096);  // overlaps only the middle run's first block
  CHECK(cluster_push(vp, IO_SYNC) == EIO);
  CHECK(f.stats().dirty == 64);  // the middle run's buffers, and nothing else
  CHECK(f.stats().busy == 0);
  std::vector<char> disk(data.size());
  for (int r : {0, 2}) {
    fill(data, 100 + r);
    f.mem->peek(static_cast<uint64_t>(starts[r]), disk.data(), disk.size());
    CHECK(disk == data);
  }
  // The failed run's data is still in the cache, intact, and reaches the device once it recovers.
  fill(data, 101);
  std::vector<char> back(data.size());
  uio u(back.data(), back.size(), starts[1], UIO_READ);
  REQUIRE(cluster_read(vp, &u, size, 0) == 0);
  CHECK(back == data);
  f.rec->fail_writes(0, 0);
  CHECK(cluster_push(vp, IO_SYNC) == 0);
  CHECK(cluster_push(vp, IO_SYNC) == 0);  // reported once
  f.mem->peek(static_cast<uint64_t>(starts[1]), disk.data(), disk.size());
  CHECK(disk == data);
}

TEST_CASE("concurrent writers and pushes on one vnode: every byte reaches the device", "[cluster][concurrency]") {
  fixture f(big_config());
  REQUIRE(f.create_err == 0);
  vnode* vp = f.file(1, 0);
  const off_t size = 16 << 20;
  cluster_setsize(vp, size);
  constexpr int kThreads = 4;
  std::vector<std::thread> th;
  std::atomic<int> errors{0};
  for (int t = 0; t < kThreads; t++)
    th.emplace_back([&, t] {
      std::vector<char> chunk(t % 2 ? 4096 : 64 << 10);
      // Each thread owns every kThreads-th 256 KiB stripe: no two write the same byte.
      for (off_t stripe = t; stripe * (256 << 10) < size; stripe += kThreads)
        for (off_t off = stripe * (256 << 10); off < (stripe + 1) * (256 << 10); off += static_cast<off_t>(chunk.size())) {
          fill(chunk, static_cast<uint64_t>(off));
          uio u(chunk.data(), chunk.size(), off, UIO_WRITE);
          if (cluster_write(vp, &u, size, size, 0, 0, 0) != 0) errors++;
          if ((off >> 12) % 97 == 0 && cluster_push(vp, (off >> 12) % 2 ? IO_SYNC : 0) != 0) errors++;
        }
    });
  for (auto& x : th) x.join();
  CHECK(errors == 0);
  REQUIRE(cluster_push(vp, IO_SYNC) == 0);
  CHECK(f.stats().busy == 0);
  CHECK(f.stats().dirty == 0);
  std::vector<char> disk(4096), want(4096);
  for (off_t off = 0; off < size; off += 4096) {
    f.mem->peek(static_cast<uint64_t>(off), disk.data(), disk.size());
    // The chunk that covered this block was filled from its own start offset.
    int t = static_cast<int>((off / (256 << 10)) % kThreads);
    size_t csz = t % 2 ? 4096 : 64 << 10;
    off_t cstart = off / static_cast<off_t>(csz) * static_cast<off_t>(csz);
    std::vector<char> chunk(csz);
    fill(chunk, static_cast<uint64_t>(cstart));
    std::memcpy(want.data(), chunk.data() + (off - cstart), 4096);
    if (disk != want) {
      FAIL_CHECK("block " << off / 4096 << " differs");
      break;
    }
  }
}

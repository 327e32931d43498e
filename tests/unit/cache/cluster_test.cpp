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

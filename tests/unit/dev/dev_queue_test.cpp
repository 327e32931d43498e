// dev_queue_test.cpp: disksort, merging and flush barriers of the device queue.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>

#include "dev_fixture.h"
#include "src/dev/queue.h"

using namespace devtest;

static io_request mk(io_op op, uint64_t off, uint64_t len, char* mem) {
  io_request r;
  r.op = op;
  r.offset = off;
  if (op == io_op::read || op == io_op::write) r.add_iov(mem + off, len);
  else r.length = len;
  return r;
}

TEST_CASE("queue: pending writes are sorted by offset and adjacent ones merged", "[dev][queue]") {
  static char mem[1 << 16];
  io_queue q({});
  io_request w3 = mk(io_op::write, 8192, 4096, mem), w1 = mk(io_op::write, 0, 4096, mem),
             w2 = mk(io_op::write, 4096, 4096, mem), far = mk(io_op::write, 32768, 4096, mem);
  q.push(&w3);
  q.push(&far);
  q.push(&w1);
  q.push(&w2);
  CHECK(q.sorted() == 2);
  io_batch b;
  REQUIRE(q.pop(b));
  REQUIRE(b.reqs.size() == 3);
  CHECK(b.reqs[0] == &w1);
  CHECK(b.reqs[1] == &w2);
  CHECK(b.reqs[2] == &w3);
  CHECK(b.iov_count == 3);
  q.retire();
  REQUIRE(q.pop(b));
  REQUIRE(b.reqs.size() == 1);
  CHECK(b.reqs[0] == &far);
  q.retire();
  CHECK(q.merged() == 2);
}

TEST_CASE("queue: writes with different attributes or preset errors are not merged", "[dev][queue]") {
  static char mem[1 << 16];
  io_queue q({});
  io_request a = mk(io_op::write, 0, 4096, mem), b = mk(io_op::write, 4096, 4096, mem),
             c = mk(io_op::write, 8192, 4096, mem);
  b.attrs = IO_ATTR_FUA;
  c.dev_error = EINVAL;
  q.push(&a);
  q.push(&b);
  q.push(&c);
  io_batch x;
  for (int i = 0; i < 3; i++) {
    REQUIRE(q.pop(x));
    CHECK(x.reqs.size() == 1);
    q.retire();
  }
  CHECK(q.merged() == 0);
}

TEST_CASE("queue: without sorting the order is FIFO and nothing merges", "[dev][queue]") {
  static char mem[1 << 16];
  io_queue::options o;
  o.sort = o.merge = false;
  io_queue q(o);
  io_request w2 = mk(io_op::write, 4096, 4096, mem), w1 = mk(io_op::write, 0, 4096, mem);
  q.push(&w2);
  q.push(&w1);
  io_batch b;
  REQUIRE(q.pop(b));
  CHECK(b.reqs[0] == &w2);
  REQUIRE(q.pop(b));
  CHECK(b.reqs[0] == &w1);
  CHECK(q.sorted() == 0);
}

TEST_CASE("queue: a flush is a barrier: not passed by later writes, issued after earlier ones returned",
          "[dev][queue]") {
  static char mem[1 << 16];
  io_queue q({});
  io_request w1 = mk(io_op::write, 4096, 4096, mem), fl = mk(io_op::flush, 0, 0, mem),
             w0 = mk(io_op::write, 0, 4096, mem), w2 = mk(io_op::write, 8192, 4096, mem);
  q.push(&w1);
  q.push(&fl);
  q.push(&w0);  // lower offset, but after the flush: must not sort before it
  q.push(&w2);  // adjacent to w1, but across the flush: must not merge with it
  io_batch b;
  REQUIRE(q.pop(b));
  REQUIRE(b.reqs.size() == 1);
  CHECK(b.reqs[0] == &w1);
  // w1 is still being issued: the flush must wait.
  std::atomic<bool> got{false};
  io_batch fb;
  std::thread t([&] {
    q.pop(fb);
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK_FALSE(got.load());
  q.retire();
  t.join();
  REQUIRE(fb.reqs.size() == 1);
  CHECK(fb.reqs[0] == &fl);
  REQUIRE(q.pop(b));
  CHECK(b.reqs[0] == &w0);
  CHECK(b.reqs.size() == 1);  // w0 and w2 are not adjacent
  q.retire();
  REQUIRE(q.pop(b));
  CHECK(b.reqs[0] == &w2);
  q.retire();
  q.stop();
  CHECK_FALSE(q.pop(b));
}

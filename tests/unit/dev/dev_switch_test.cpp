// dev_switch_test.cpp: the device switch the runtime swap of device layers uses (src/dev/switch.h): a
// suspend waits for what is in flight below and parks what comes meanwhile; resume sends the parked
// requests to the new stack; a stack swapped under writers loses and mixes nothing.
#include <catch2/catch.hpp>

#include <chrono>
#include <random>
#include <thread>

#include "dev_fixture.h"
#include "src/dev/stack.h"
#include "src/dev/switch.h"

using namespace devtest;
using namespace std::chrono_literals;

namespace {

void submit_write(device& d, treq* q, tracker* t, uint32_t id, uint64_t off, char* buf, size_t len) {
  q->clear_iov();
  q->op = io_op::write;
  q->offset = off;
  q->add_iov(buf, len);
  q->done = &treq_done;
  q->id = id;
  q->t = t;
  d.submit(q);
}

bool wait_for(const std::atomic<uint64_t>& v, uint64_t want, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (v.load() < want) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// A mem device and, over it, a faults layer that holds the writes overlapping [lo, hi) for delay_ms.
struct slow_stack {
  std::unique_ptr<mem_device> mem;
  std::unique_ptr<faults_device> slow;
  slow_stack(uint64_t delay_ms, uint64_t lo = 0, uint64_t hi = UINT64_MAX) {
    mem_options o;
    o.size = 1 << 20;
    mem = make_mem_device(o);
    slow = make_faults(mem.get());
    fault_rule r;
    r.action = fault_action::delay;
    r.ops = op_bit(io_op::write);
    r.lo = lo;
    r.hi = hi;
    r.delay_ns = delay_ms * 1'000'000;
    slow->add_rule(r);
  }
};

}  // namespace

TEST_CASE("switch: suspend waits for requests below, parks new ones, resume sends them to the new target",
          "[dev][switch]") {
  slow_stack s(200);  // writes wait 200 ms in the layer
  auto fast = make_faults(s.mem.get());  // the new stack: a pass-through over the same mem
  switch_device sw(s.slow.get());

  tracker t(2);
  abuf a(4096, 'a'), b(4096, 'b');
  treq q1, q2;
  submit_write(sw, &q1, &t, 0, 0, a.data(), 4096);
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(sw.suspend(5s));
  CHECK(std::chrono::steady_clock::now() - t0 >= 100ms);  // it waited for the delayed write
  CHECK(t.completed.load() == 1);
  submit_write(sw, &q2, &t, 1, 4096, b.data(), 4096);  // parked: neither stack sees it
  std::this_thread::sleep_for(50ms);
  CHECK(sw.parked() == 1);
  CHECK(t.completed.load() == 1);
  CHECK(fast->stats().writes == 0);
  sw.resume(fast.get());
  REQUIRE(wait_for(t.completed, 2, 5s));
  CHECK(t.errors.load() == 0);
  CHECK(fast->stats().writes == 1);  // went down the new stack
  CHECK(sw.parked() == 0);
  abuf back(8192);
  REQUIRE(dev_sync_io(sw, io_op::read, 0, back.data(), 8192) == 0);
  CHECK(std::memcmp(back.data(), a.data(), 4096) == 0);
  CHECK(std::memcmp(back.data() + 4096, b.data(), 4096) == 0);
}

TEST_CASE("switch: a suspend that cannot drain gives up, and what it parked goes down", "[dev][switch]") {
  slow_stack s(800, 0, 4096);
  switch_device sw(s.slow.get());
  tracker t(2);
  abuf a(4096, 'a'), b(4096, 'b');
  treq q1, q2;
  submit_write(sw, &q1, &t, 0, 0, a.data(), 4096);  // 800 ms below
  std::thread late([&] {
    std::this_thread::sleep_for(50ms);
    submit_write(sw, &q2, &t, 1, 8192, b.data(), 4096);  // parked during the attempt
  });
  CHECK_FALSE(sw.suspend(200ms));
  late.join();
  REQUIRE(wait_for(t.completed, 2, 5s));  // both done: the parked one was released by the failed suspend
  CHECK(t.errors.load() == 0);
  CHECK(sw.target() == s.slow.get());
}

TEST_CASE("switch: stacks swapped under concurrent writers lose and mix nothing", "[dev][switch]") {
  // Four writers keep rewriting their own blocks with (block, version) records, synchronously through the
  // switch, while the main thread swaps the stack over the same mem between a pass-through, a delaying
  // faults layer and a record layer, 60 times. At the end every block holds its writer's last version.
  mem_options o;
  o.size = 4 << 20;
  o.completion_threads = 2;
  dev_stack st(make_mem_device(o));
  switch_device sw(st.top());
  std::vector<std::string> stacks{"", "faults", "faults:op=write:action=delay:us=300", "record:log=" + temp_path("sw.log")};
  constexpr int kWriters = 4, kBlocks = 64;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> errors{0}, writes{0};
  std::vector<std::vector<uint64_t>> last(kWriters, std::vector<uint64_t>(kBlocks, 0));
  std::vector<std::thread> ws;
  for (int w = 0; w < kWriters; w++)
    ws.emplace_back([&, w] {
      std::mt19937_64 rng(w);
      abuf buf(4096);
      for (uint64_t v = 1; !stop.load(); v++) {
        int blk = int(rng() % kBlocks);
        uint64_t off = uint64_t(w * kBlocks + blk) * 4096;
        for (size_t i = 0; i < 4096; i += 16) {
          std::memcpy(buf.data() + i, &off, 8);
          std::memcpy(buf.data() + i + 8, &v, 8);
        }
        // attrs 0: the completion comes from a device thread, as the buffer cache's do
        if (dev_sync_io(sw, io_op::write, off, buf.data(), 4096, 0) != 0) errors++;
        else last[w][blk] = v;
        writes++;
      }
    });
  int swaps = 0, failed = 0;
  for (int i = 0; i < 60; i++) {
    std::vector<dev_layer_spec> specs;
    REQUIRE(parse_dev_layers(stacks[i % stacks.size()], &specs) == "");
    std::vector<std::unique_ptr<device>> built, old;
    REQUIRE(st.build_over(0, specs, &built) == "");
    if (!sw.suspend(5s)) {
      failed++;
      continue;
    }
    st.replace(0, std::move(built), &old);
    sw.resume(st.top());
    while (!old.empty()) old.pop_back();
    swaps++;
    std::this_thread::sleep_for(2ms);
  }
  stop = true;
  for (auto& t : ws) t.join();
  INFO(writes.load() << " writes, " << swaps << " swaps");
  CHECK(failed == 0);
  CHECK(errors.load() == 0);
  CHECK(writes.load() > 200);
  abuf back(4096);
  int bad = 0;
  for (int w = 0; w < kWriters; w++)
    for (int b = 0; b < kBlocks; b++) {
      if (!last[w][b]) continue;
      uint64_t off = uint64_t(w * kBlocks + b) * 4096, got_off = 0, got_v = 0;
      REQUIRE(dev_sync_io(sw, io_op::read, off, back.data(), 4096) == 0);
      std::memcpy(&got_off, back.data(), 8);
      std::memcpy(&got_v, back.data() + 8, 8);
      if (got_off != off || got_v != last[w][b]) bad++;
    }
  CHECK(bad == 0);
}

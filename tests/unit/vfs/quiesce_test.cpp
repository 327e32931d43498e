// quiesce_test.cpp: the gate the runtime layer swaps close (include/vnopfs/quiesce.h).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "vnopfs/quiesce.h"

using namespace vnopfs;
using namespace std::chrono_literals;

TEST_CASE("close waits for the operations in, and holds new ones until open", "[quiesce]") {
  quiesce_gate g;
  g.enter();
  std::atomic<bool> closed{false};
  std::thread closer([&] {
    CHECK(g.close(5s));
    closed = true;
  });
  std::this_thread::sleep_for(50ms);
  CHECK_FALSE(closed.load());  // one operation is still in
  g.leave();
  closer.join();
  CHECK(closed.load());
  CHECK(g.is_closed());
  CHECK_FALSE(g.try_enter());
  std::atomic<bool> entered{false};
  std::thread late([&] {
    g.enter();
    entered = true;
    g.leave();
  });
  std::this_thread::sleep_for(50ms);
  CHECK_FALSE(entered.load());  // waits at the closed gate
  g.open();
  late.join();
  CHECK(entered.load());
  CHECK(g.count() == 0);
}

TEST_CASE("a close that cannot drain gives up and leaves the gate open", "[quiesce]") {
  quiesce_gate g;
  g.enter();
  auto t0 = std::chrono::steady_clock::now();
  CHECK_FALSE(g.close(100ms));
  CHECK(std::chrono::steady_clock::now() - t0 >= 100ms);
  CHECK_FALSE(g.is_closed());
  CHECK(g.try_enter());  // open as before
  g.leave();
  g.leave();
  CHECK(g.count() == 0);
  CHECK(g.close(1s));
  CHECK_FALSE(g.close(10ms));  // already closed: refused, still closed
  CHECK(g.is_closed());
  g.open();
}

TEST_CASE("while the gate is closed no operation is inside, under load", "[quiesce]") {
  // Workers enter, mark themselves inside, leave; a closer closes and checks that nobody is inside while it
  // holds the gate. Leaves may come from another thread than the enter (the device switch does that).
  quiesce_gate g;
  std::atomic<int> inside{0};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ops{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 6; w++)
    workers.emplace_back([&, w] {
      while (!stop.load()) {
        if (w % 2 ? g.try_enter() : (g.enter(), true)) {
          inside++;
          std::this_thread::yield();
          inside--;
          if (w == 5) {
            std::thread([&] { g.leave(); }).join();  // left by another thread
          } else {
            g.leave();
          }
          ops++;
        }
      }
    });
  int closes = 0, violations = 0;
  auto end = std::chrono::steady_clock::now() + 1s;
  while (std::chrono::steady_clock::now() < end) {
    if (!g.close(2s)) continue;
    closes++;
    for (int i = 0; i < 100; i++)
      if (inside.load() != 0) violations++;
    g.open();
    std::this_thread::sleep_for(1ms);
  }
  stop = true;
  for (auto& t : workers) t.join();
  INFO(closes << " closes, " << ops.load() << " operations");
  CHECK(closes > 10);
  CHECK(ops.load() > 1000);
  CHECK(violations == 0);
  CHECK(g.count() == 0);
}

// syncer_test.cpp: the syncer calls VFS_SYNC(MNT_LAZY) on its mount every period, never beside a hold(),
// and stops (joins) promptly, with a filesystem whose vfs_sync only records its calls.
#include <atomic>
#include <chrono>
#include <thread>

#include <catch2/catch.hpp>

#include "vnopfs/syncer.h"
#include "vnopfs/vnode.h"

using namespace vnopfs;

namespace {

std::atomic<int> g_calls{0}, g_bad_waitfor{0}, g_inside{0}, g_overlap{0};

int record_sync(mount*, int waitfor, const vfs_context&) {
  if (waitfor != MNT_LAZY) g_bad_waitfor++;
  if (g_inside.fetch_add(1) != 0) g_overlap++;
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  g_inside--;
  g_calls++;
  return 0;
}

const vfsops kRecordingFs = {"recording", nullptr, nullptr, nullptr, nullptr, record_sync, nullptr};

}  // namespace

TEST_CASE("syncer: periodic MNT_LAZY syncs, none while held, a prompt stop", "[vfs][syncer]") {
  g_calls = g_bad_waitfor = g_inside = g_overlap = 0;
  mount mp;
  mp.mnt_op = &kRecordingFs;
  mp.mnt_from = "test";
  auto t0 = std::chrono::steady_clock::now();
  {
    vfs_syncer s(&mp, 10);
    while (g_calls < 5 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20))
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    CHECK(g_calls >= 5);
    CHECK(s.runs() >= 4);
    {
      auto held = s.hold();
      const int before = g_calls;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // ten periods
      CHECK(g_calls == before);  // no sync while held (at most the one that held us off finished before)
    }
    const auto stop0 = std::chrono::steady_clock::now();
    s.stop();
    CHECK(std::chrono::steady_clock::now() - stop0 < std::chrono::seconds(5));
    const int after_stop = g_calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(g_calls == after_stop);
  }
  CHECK(g_bad_waitfor == 0);
  CHECK(g_overlap == 0);
}

TEST_CASE("syncer: a long period is cut short by stop", "[vfs][syncer]") {
  g_calls = 0;
  mount mp;
  mp.mnt_op = &kRecordingFs;
  auto t0 = std::chrono::steady_clock::now();
  { vfs_syncer s(&mp, 3600 * 1000); }
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  CHECK(g_calls == 0);
}

// quiesce.h: a gate that counts operations in progress and lets one thread close it and wait until none
// is, so that something they all use can be changed between two of them (FreeBSD's vn_start_write and
// vfs_write_suspend; Linux's percpu_rw_semaphore, which has the same shape).
//
// Used by the runtime swap of layers (docs/experiments.md, "Changing layers while mounted"):
// - mount::mnt_requests counts the frontend's requests (src/fuse: one enter/leave around each FUSE
//   request), so the VNOP layer stack can be replaced when none runs;
// - src/dev/switch.h counts the requests below the device switch, so the device layers can be replaced
//   when none is in flight.
//
// Cost: enter and leave are one atomic add on a counter of the caller's shard (one of 16, chosen per
// thread, each on its own cache line) and one load of the closed flag, which only a close writes. No lock
// on that path; the mutex is taken only at a closed gate and by close/open.
//
// Threads: any thread may enter, and any thread may leave what another entered (the device's completions
// run on other threads than its submissions); the counts are only meaningful summed. close and open are
// for one thread at a time (the owner of the change: the daemon's control thread).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <mutex>

namespace vnopfs {

class quiesce_gate {
 public:
  quiesce_gate() = default;
  quiesce_gate(const quiesce_gate&) = delete;
  quiesce_gate& operator=(const quiesce_gate&) = delete;

  // Counts one operation in; waits while the gate is closed. Never call it while holding something a
  // counted operation may wait for: close() waits for those to leave.
  void enter();
  // Counts one operation in unless the gate is closed; false (nothing counted) when closed.
  bool try_enter();
  // Counts one operation out.
  void leave();

  // Closes the gate, then waits until no operation is in, for at most `timeout`. true: closed and empty;
  // enter() waits and try_enter() fails until open(). false: nothing drained in time (or the gate was
  // already closed), and the gate is as it was before the call.
  bool close(std::chrono::milliseconds timeout);
  // Opens a gate close() closed and wakes the waiting enter()s.
  void open();
  bool is_closed() const { return closed_.load(std::memory_order_acquire); }
  // Operations in now (a snapshot, for status and tests).
  int64_t count() const;

 private:
  static constexpr size_t kShards = 16;
  struct alignas(64) shard {
    std::atomic<int64_t> n{0};
  };
  shard& mine();
  void wake_closer();

  shard shards_[kShards];
  std::atomic<bool> closed_{false};
  std::mutex mu_;  // the slow paths only: waiting at a closed gate, close, open
  std::condition_variable cv_;
};

// Holds one count of a gate for a scope (enter on construction, leave on destruction).
class quiesce_hold {
 public:
  explicit quiesce_hold(quiesce_gate* g) : g_(g) { if (g_) g_->enter(); }
  ~quiesce_hold() { if (g_) g_->leave(); }
  quiesce_hold(const quiesce_hold&) = delete;
  quiesce_hold& operator=(const quiesce_hold&) = delete;
 private:
  quiesce_gate* g_;
};


// ---- implementation (header-only: src/dev, below the VFS library, uses the gate too)
//
// The fast path is Dekker's: enter adds to its shard, then reads closed_; close sets closed_, then sums the
// shards. Both sides use sequentially consistent operations, so at least one sees the other: either enter
// sees the gate closed (and backs out), or close counts the operation and waits for it.
inline quiesce_gate::shard& quiesce_gate::mine() {
  static std::atomic<size_t> next_shard{0};
  thread_local size_t tls_shard = next_shard.fetch_add(1, std::memory_order_relaxed);
  return shards_[tls_shard % kShards];
}

inline void quiesce_gate::wake_closer() {
  std::lock_guard g(mu_);
  cv_.notify_all();
}

inline bool quiesce_gate::try_enter() {
  shard& s = mine();
  s.n.fetch_add(1, std::memory_order_seq_cst);
  if (!closed_.load(std::memory_order_seq_cst)) return true;
  s.n.fetch_sub(1, std::memory_order_seq_cst);
  wake_closer();  // it may have counted us, and be waiting for us to go
  return false;
}

inline void quiesce_gate::enter() {
  while (!try_enter()) {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return !closed_.load(std::memory_order_seq_cst); });
  }
}

inline void quiesce_gate::leave() {
  mine().n.fetch_sub(1, std::memory_order_seq_cst);
  if (closed_.load(std::memory_order_seq_cst)) wake_closer();
}

inline int64_t quiesce_gate::count() const {
  int64_t sum = 0;
  for (const shard& s : shards_) sum += s.n.load(std::memory_order_seq_cst);
  return sum;
}

inline bool quiesce_gate::close(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lk(mu_);
  if (closed_.load(std::memory_order_seq_cst)) return false;
  closed_.store(true, std::memory_order_seq_cst);
  for (;;) {
    if (count() == 0) return true;
    // leave() wakes us only when it sees the gate closed; an operation that read closed_ before the store
    // and leaves without looking again is caught by the next poll.
    if (cv_.wait_until(lk, std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(2))) ==
            std::cv_status::timeout &&
        std::chrono::steady_clock::now() >= deadline) {
      if (count() == 0) return true;
      closed_.store(false, std::memory_order_seq_cst);
      cv_.notify_all();
      return false;
    }
  }
}

inline void quiesce_gate::open() {
  std::lock_guard g(mu_);
  closed_.store(false, std::memory_order_seq_cst);
  cv_.notify_all();
}

}  // namespace vnopfs

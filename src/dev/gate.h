// gate.h: counts a layer's requests that are down in the device below, so its destructor can wait for them.
// leave() notifies under the lock: once wait_idle() returns, no thread touches the gate again.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace vnopfs::dev {

class inflight_gate {
 public:
  void enter() {
    std::lock_guard lk(mu_);
    n_++;
  }
  void leave() {
    std::lock_guard lk(mu_);
    if (--n_ == 0) cv_.notify_all();
  }
  void wait_idle() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return n_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t n_ = 0;
};

}  // namespace vnopfs::dev

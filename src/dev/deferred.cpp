// deferred.cpp: the deferred completion/forwarding thread of thread-less layers.
#include "src/dev/deferred.h"

#include <chrono>

#include "src/dev/stats.h"

namespace vnopfs::dev {

deferred_queue::deferred_queue(run_fn run, void* ctx) : run_(run), ctx_(ctx) {
  thread_ = std::thread([this] { loop(); });
}

deferred_queue::~deferred_queue() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void deferred_queue::push(io_request* r) {
  std::lock_guard lk(mu_);
  // Insert by deadline; most pushes carry 0 or a later deadline than the tail, so scan from the back.
  auto it = items_.end();
  while (it != items_.begin()) {
    auto prev = std::prev(it);
    if (prev->dev_deadline_ns <= r->dev_deadline_ns) break;
    it = prev;
  }
  items_.insert(it, *r);
  cv_.notify_one();
}

void deferred_queue::loop() {
  pthread_setname_np(pthread_self(), "dev-deferred");
  std::unique_lock lk(mu_);
  for (;;) {
    if (items_.empty()) {
      if (stop_) return;
      cv_.wait(lk);
      continue;
    }
    io_request* r = &items_.front();
    uint64_t now = now_ns();
    if (r->dev_deadline_ns > now) {
      // Wake at the deadline, or earlier when a sooner item arrives.
      cv_.wait_for(lk, std::chrono::nanoseconds(r->dev_deadline_ns - now));
      continue;
    }
    items_.pop_front();
    lk.unlock();
    run_(ctx_, r);
    lk.lock();
  }
}

}  // namespace vnopfs::dev

// invalidator.cpp: kernel page-cache invalidation off the FUSE workers' path (invalidator.h).
#include "src/fuse/invalidator.h"

#include <algorithm>
#include <system_error>

#include "vnopfs/mount.h"

namespace vnopfs::fuse {

page_invalidator::~page_invalidator() {
  stop();
  join();
}

bool page_invalidator::start(fuse_session* se) {
  se_ = se;
  try {
    thread_ = std::thread([this] { loop(); });
  } catch (const std::system_error&) {
    return false;
  }
  return true;
}

bool page_invalidator::invalidate(fuse_ino_t ino, off_t off, off_t len, std::chrono::milliseconds wait) {
  std::unique_lock g(mu_);
  if (stopping_ || !thread_.joinable()) return false;
  // A range of the same inode still queued (the thread is blocked on an earlier one) grows to cover this
  // one too: the queue holds at most one request per inode however many writes arrive meanwhile.
  std::shared_ptr<request> r;
  for (auto& q : queue_) {
    if (q->ino != ino) continue;
    if (len == 0 || q->len == 0) {
      q->len = 0;
    } else {
      off_t end = std::max(q->off + q->len, off + len);
      q->len = end - std::min(q->off, off);
    }
    q->off = std::min(q->off, off);
    r = q;
    break;
  }
  if (!r) {
    r = std::make_shared<request>(request{ino, off, len});
    queue_.push_back(r);
    work_cv_.notify_one();
  }
  const auto now = std::chrono::steady_clock::now();
  bool bound = false;
  if (auto it = writeback_bound_.find(ino); it != writeback_bound_.end()) {
    if (now - it->second < kWritebackBoundFor) {
      bound = true;
      wait = std::min(wait, kShortWait);
    } else {
      writeback_bound_.erase(it);
    }
  }
  // Another waiter finding the inode writeback-bound meanwhile ends this wait too.
  auto marked_since = [&] {
    auto it = writeback_bound_.find(ino);
    return it != writeback_bound_.end() && it->second > now;
  };
  if (done_cv_.wait_for(g, wait, [&] { return r->finished || stopping_ || (!bound && marked_since()); }) &&
      r->finished)
    return true;
  if (stopping_) return false;
  const bool first = !bound && !marked_since();
  if (first) long_timeouts_++;
  if (writeback_bound_.size() >= 1024) std::erase_if(writeback_bound_, [&](const auto& e) {
      return now - e.second >= kWritebackBoundFor;
    });
  writeback_bound_[ino] = std::chrono::steady_clock::now();
  if (first) done_cv_.notify_all();
  if (timeouts_++ == 0)
    VLOG_WARN("page invalidation of inode %lu waited more than %lld ms (pages of the range under writeback): "
              "replying without waiting for it (logged once)",
              static_cast<unsigned long>(ino), static_cast<long long>(wait.count()));
  return false;
}

void page_invalidator::stop() {
  std::lock_guard g(mu_);
  stopping_ = true;
  queue_.clear();
  work_cv_.notify_all();
  done_cv_.notify_all();
}

void page_invalidator::join() {
  if (thread_.joinable()) thread_.join();
}

uint64_t page_invalidator::done() const {
  std::lock_guard g(mu_);
  return done_;
}

uint64_t page_invalidator::timeouts() const {
  std::lock_guard g(mu_);
  return timeouts_;
}

uint64_t page_invalidator::long_timeouts() const {
  std::lock_guard g(mu_);
  return long_timeouts_;
}

void page_invalidator::loop() {
  std::unique_lock g(mu_);
  for (;;) {
    work_cv_.wait(g, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    std::shared_ptr<request> r = std::move(queue_.front());
    queue_.pop_front();
    g.unlock();
    // ENOENT (the kernel forgot the inode) and the like mean there is nothing left to drop.
    (void)fuse_lowlevel_notify_inval_inode(se_, r->ino, r->off, r->len);
    g.lock();
    r->finished = true;
    done_++;
    done_cv_.notify_all();
  }
}

}  // namespace vnopfs::fuse

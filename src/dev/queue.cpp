// queue.cpp: disksort and merge of pending writes, flush barriers.
#include "src/dev/queue.h"

namespace vnopfs::dev {

static bool is_barrier(const io_request& r) {
  return r.op == io_op::flush || r.op == io_op::unmap || r.dev_error != 0;
}

void io_queue::push(io_request* r) {
  bool wake;
  {
    std::lock_guard lk(mu_);
    auto pos = pending_.end();
    if (o_.sort && r->op == io_op::write && r->dev_error == 0) {
      // Insertion sort from the back, as disksort does; stop at a barrier or at a write not after this one.
      unsigned scanned = 0;
      bool passed_write = false;  // passing only reads changes nothing worth counting
      while (pos != pending_.begin() && scanned < o_.scan_limit) {
        auto prev = std::prev(pos);
        if (is_barrier(*prev)) break;
        if (prev->op == io_op::write && prev->offset <= r->offset) break;
        passed_write = passed_write || prev->op == io_op::write;
        pos = prev;
        scanned++;
      }
      if (passed_write) sorted_++;
    }
    pending_.insert(pos, *r);
    wake = idle_ > 0 && poppable();
  }
  if (wake) cv_.notify_one();
}

bool io_queue::poppable() const {
  if (pending_.empty()) return false;
  const io_request& r = pending_.front();
  return !(r.op == io_op::flush && r.dev_error == 0 && active_ > 0);
}

bool io_queue::mergeable(const io_request* head, const io_request* n, uint64_t end, const io_batch& b) const {
  return n->op == io_op::write && n->dev_error == 0 && n->offset == end && n->attrs == head->attrs &&
         end + n->length - b.reqs.front()->offset <= o_.max_merge_bytes &&
         b.iov_count + n->iov.size() <= o_.max_iov;
}

bool io_queue::pop(io_batch& b) {
  b.reqs.clear();
  b.iov_count = 0;
  bool wake;
  {
    std::unique_lock lk(mu_);
    while (!poppable()) {
      if (stop_ && pending_.empty()) return false;
      idle_++;
      cv_.wait(lk);  // a push, the retire that opens a flush barrier, or stop
      idle_--;
    }
    io_request* r = &pending_.front();
    pending_.pop_front();
    b.reqs.push_back(r);
    b.iov_count = r->iov.size();
    if (o_.merge && r->op == io_op::write && r->dev_error == 0) {
      uint64_t end = r->offset + r->length;
      while (!pending_.empty() && mergeable(r, &pending_.front(), end, b)) {
        io_request* n = &pending_.front();
        pending_.pop_front();
        b.reqs.push_back(n);
        b.iov_count += n->iov.size();
        end += n->length;
        merged_++;
      }
    }
    active_++;
    wake = idle_ > 0 && poppable();
  }
  if (wake) cv_.notify_one();
  return true;
}

void io_queue::retire() {
  bool wake;
  {
    std::lock_guard lk(mu_);
    // Only a flush waiting for the last earlier I/O can have become poppable here.
    wake = --active_ == 0 && idle_ > 0 && poppable();
  }
  if (wake) cv_.notify_one();
}

bool io_queue::begin_inline() {
  std::lock_guard lk(mu_);
  if (!pending_.empty() || stop_) return false;
  active_++;
  return true;
}

void io_queue::stop() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();  // every worker must see it and return
}

uint64_t io_queue::merged() const {
  std::lock_guard lk(mu_);
  return merged_;
}

uint64_t io_queue::sorted() const {
  std::lock_guard lk(mu_);
  return sorted_;
}

}  // namespace vnopfs::dev

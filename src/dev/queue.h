// queue.h: the device queue between a backend's submit and its workers (BSD disksort, the IRP Key idea).
//
// push() files a request; pop() hands a worker a batch: one request, or a run of writes that are adjacent
// on the device (each starts where the previous ends, same attrs) to issue as one pwritev. The worker
// issues the batch, then calls retire().
//
// Order kept (what the contract of device.h lets a queue change and what it must not):
// - With `sort`, a write is inserted among the pending writes by offset (stable: equal offsets stay in
//   submit order), scanning back at most `scan_limit` entries; it never passes a flush, an unmap or a
//   request carrying a preset error. Reads keep their place. Only requests pending at the same time are
//   reordered, and the contract gives no order between those.
// - A flush is a barrier: it is handed out only when every request before it has been popped and retired
//   (their I/O returned), so the fdatasync covers them; requests after it wait until it has been popped.
// - Requests with r->dev_error != 0 (refused at submit) keep FIFO place and are never merged.
// Counters: merged (requests folded into a neighbour's I/O), sorted (writes not put at the tail).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

#include <boost/container/small_vector.hpp>

#include "src/dev/req_list.h"

namespace vnopfs::dev {

struct io_batch {
  boost::container::small_vector<io_request*, 16> reqs;  // in offset order when several (all writes)
  size_t iov_count = 0;
};

class io_queue {
 public:
  struct options {
    bool sort = true;                    // disksort pending writes
    bool merge = true;                   // fold adjacent writes into one batch
    uint64_t max_merge_bytes = 4u << 20;
    size_t max_iov = 1024;               // IOV_MAX
    unsigned scan_limit = 64;            // bounded insertion scan
  };
  explicit io_queue(const options& o) : o_(o) {}

  void push(io_request* r);
  bool pop(io_batch& b);  // blocks; false once stop() was called and nothing is pending
  void retire();          // the last batch popped by this worker has been issued and its I/O returned
  void stop();

  uint64_t merged() const { return merged_; }
  uint64_t sorted() const { return sorted_; }

 private:
  bool mergeable(const io_request* head, const io_request* n, uint64_t end, const io_batch& b) const;

  const options o_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  req_list pending_;
  uint64_t active_ = 0;  // batches popped and not yet retired
  bool stop_ = false;
  uint64_t merged_ = 0, sorted_ = 0;
};

}  // namespace vnopfs::dev

// queue.h: the device queue between a backend's submit and its workers (BSD disksort, the IRP Key idea).
//
// push() files a request; pop() hands a worker a batch: one request, or a run of writes that are adjacent
// on the device (each starts where the previous ends, same attrs) to issue as one pwritev. The worker
// issues the batch, then calls retire(). A submitter may instead issue a write itself when nothing is
// pending (begin_inline(), then retire() once its I/O returned): there is nothing it could merge with.
//
// Order kept (what the contract of device.h lets a queue change and what it must not):
// - With `sort`, a write is inserted among the pending writes by offset (stable: equal offsets stay in
//   submit order), scanning back at most `scan_limit` entries; it never passes a flush, an unmap or a
//   request carrying a preset error. Reads keep their place. Only requests pending at the same time are
//   reordered, and the contract gives no order between those.
// - A flush is a barrier: it is handed out only when every request before it has been popped and retired
//   (their I/O returned; inline writes count), so the fdatasync covers them; requests after it wait until
//   it has been popped.
// - Requests with r->dev_error != 0 (refused at submit) keep FIFO place and are never merged.
// Wake-ups: a push wakes one idle worker, and only if one is idle; a pop that leaves work behind wakes one
// more; the retire that opens a flush barrier wakes one. Every notify happens after the lock is dropped, so
// the woken worker does not block on it at once. The lock is held for list operations only (the sort scan
// is bounded by scan_limit, the merge by max_iov and max_merge_bytes).
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
  void retire();          // the last batch popped (or inline I/O begun) by this thread has returned
  bool begin_inline();    // true: nothing is pending, the caller issues its I/O now and retires it after
  void stop();

  uint64_t merged() const;
  uint64_t sorted() const;

 private:
  bool mergeable(const io_request* head, const io_request* n, uint64_t end, const io_batch& b) const;
  bool poppable() const;  // the front can be handed out now (held lock)

  const options o_;
  mutable std::mutex mu_;
  std::condition_variable cv_;  // idle workers
  req_list pending_;
  uint64_t active_ = 0;   // batches popped and inline I/Os begun, not yet retired
  unsigned idle_ = 0;     // workers waiting on cv_
  bool stop_ = false;
  uint64_t merged_ = 0, sorted_ = 0;
};

}  // namespace vnopfs::dev

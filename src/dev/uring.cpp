// uring.cpp: the `uring` backend: one io_uring, batched submission, one reaping thread.
//
// Two threads, both owned by the device: "uring-sq" takes whatever submit() queued, turns as much of it as
// the ring has room for into SQEs and hands them to the kernel with one io_uring_submit (the batching);
// "uring-cq" waits for CQEs, finishes requests or queues the rest of a short transfer back to uring-sq.
// Only uring-sq touches the submission side of the ring and only uring-cq the completion side, which
// liburing allows without a lock. IORING_FEAT_SUBMIT_STABLE is required, so the iovec array of a
// resubmitted remainder only has to live until io_uring_submit returns.
//
// Flush is IORING_OP_FSYNC with IORING_FSYNC_DATASYNC and IOSQE_IO_DRAIN: it starts after every SQE before
// it completed (a barrier, as in the file backend's queue). FUA is writev2 with RWF_DSYNC; unmap is
// IORING_OP_FALLOCATE(PUNCH_HOLE|KEEP_SIZE).
//
// A read with IO_ATTR_INLINE is a preadv in the submitting thread (it waits for it anyway): no hop to
// uring-sq and back from uring-cq. Wake-ups: submit wakes uring-sq only when it sleeps, a completion only
// when uring-sq sleeps with work the ring had no room for (or is stopping); both notify after unlocking.
#include <linux/falloc.h>
#include <liburing.h>
#include <unistd.h>

#include <cinttypes>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "src/dev/backing.h"
#include "src/dev/log.h"
#include "src/dev/req_list.h"
#include "src/dev/rw.h"
#include "src/dev/stats.h"

// The kernel hands a request from uring-sq (the SQE) to uring-cq (the CQE) through ring memory that
// ThreadSanitizer does not see as synchronisation: tell it, or every uring request reads as a race.
#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#define URING_HANDOFF_RELEASE(p) __tsan_release(p)
#define URING_HANDOFF_ACQUIRE(p) __tsan_acquire(p)
#else
#define URING_HANDOFF_RELEASE(p) ((void)(p))
#define URING_HANDOFF_ACQUIRE(p) ((void)(p))
#endif

namespace vnopfs::dev {
namespace {

constexpr uint64_t kStopTag = 0;  // user_data of the NOP that tells uring-cq to exit

class uring_device final : public device {
 public:
  uring_device(const std::string& path, const backing& b, const uring_options& o, io_uring* ring)
      : path_(path), name_((b.direct ? "uring+direct:" : "uring:") + path), b_(b), o_(o), ring_(*ring),
        depth_(o.queue_depth) {
    sq_ = std::thread([this] { sq_loop(); });
    try {
      cq_ = std::thread([this] { cq_loop(); });
    } catch (...) {
      stop_and_join();
      throw;
    }
  }
  ~uring_device() override {
    stop_and_join();
    io_uring_queue_exit(&ring_);
    ::close(b_.fd);
  }

  void submit(io_request* r) override {
    st_.on_submit(r);
    r->dev_error = check_request(r, b_, o_.readonly, name_);
    r->dev_bytes = 0;
    if ((r->attrs & IO_ATTR_INLINE) && (r->dev_error || r->op == io_op::read)) {
      size_t done = 0;
      int err = r->dev_error ? r->dev_error : full_preadv(b_.fd, r->iov.data(), int(r->iov.size()), r->offset, &done);
      if (err && !r->dev_error)
        DEV_LOG("%s: read [%" PRIu64 ", +%" PRIu64 "): %s", name_.c_str(), r->offset, r->length, strerror(err));
      finish(st_, r, err, done);
      return;
    }
    bool wake;
    {
      std::lock_guard lk(mu_);
      pending_.push_back(*r);
      wake = sq_sleeping_;
    }
    if (wake) cv_.notify_one();
  }
  uint64_t size() const override { return b_.size; }
  uint32_t sector_size() const override { return b_.sector; }
  std::string name() const override { return name_; }
  device_stats stats() const override { return st_.snapshot(); }

 private:
  void stop_and_join() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (sq_.joinable()) sq_.join();
    if (cq_.joinable()) cq_.join();
  }

  void sq_loop() {
    pthread_setname_np(pthread_self(), "uring-sq");
    std::vector<boost::container::small_vector<iovec, 8>> scratch;  // remainders of short transfers
    req_list batch;
    std::unique_lock lk(mu_);
    for (;;) {
      if (pending_.empty() || inflight_ >= depth_) {
        if (stop_ && pending_.empty() && inflight_ == 0) break;
        sq_sleeping_ = true;
        cv_.wait(lk);
        sq_sleeping_ = false;
        continue;
      }
      while (!pending_.empty() && inflight_ < depth_) {
        io_request* r = &pending_.front();
        pending_.pop_front();
        batch.push_back(*r);
        if (!r->dev_error) inflight_++;
      }
      lk.unlock();
      unsigned queued = 0;
      while (!batch.empty()) {
        io_request* r = &batch.front();
        batch.pop_front();
        if (r->dev_error) {
          finish(st_, r, r->dev_error, 0);
          continue;
        }
        prep(r, scratch);
        queued++;
      }
      if (queued) submit_all();
      scratch.clear();
      lk.lock();
    }
    lk.unlock();
    // Everything completed: wake uring-cq with a NOP it recognises as the end.
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, kStopTag);
    submit_all();
  }

  void submit_all() {
    int rc;
    while ((rc = io_uring_submit(&ring_)) == -EINTR || rc == -EAGAIN || rc == -EBUSY) {
      if (rc != -EINTR) std::this_thread::yield();  // kernel short of resources: completions will free some
    }
    if (rc < 0) DEV_LOG("%s: io_uring_submit: %s", name_.c_str(), strerror(-rc));
  }

  // Fills one SQE for r, or for its remainder after r->dev_bytes were transferred.
  void prep(io_request* r, std::vector<boost::container::small_vector<iovec, 8>>& scratch) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // never null: inflight_ <= depth_ = SQ entries
    const iovec* iov = r->iov.data();
    unsigned n = unsigned(r->iov.size());
    if (r->dev_bytes && (r->op == io_op::read || r->op == io_op::write)) {
      scratch.emplace_back();
      auto& rest = scratch.back();
      uint64_t skip = r->dev_bytes;
      for (const iovec& v : r->iov) {
        if (skip >= v.iov_len) {
          skip -= v.iov_len;
          continue;
        }
        rest.push_back({static_cast<char*>(v.iov_base) + skip, v.iov_len - skip});
        skip = 0;
      }
      iov = rest.data();
      n = unsigned(rest.size());
    }
    uint64_t off = r->offset + r->dev_bytes;
    switch (r->op) {
      case io_op::read: io_uring_prep_readv(sqe, b_.fd, iov, n, off); break;
      case io_op::write:
        io_uring_prep_writev2(sqe, b_.fd, iov, n, off, (r->attrs & IO_ATTR_FUA) ? RWF_DSYNC : 0);
        break;
      case io_op::flush:
        io_uring_prep_fsync(sqe, b_.fd, IORING_FSYNC_DATASYNC);
        sqe->flags |= IOSQE_IO_DRAIN;
        break;
      case io_op::unmap:
        io_uring_prep_fallocate(sqe, b_.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, r->length);
        break;
    }
    io_uring_sqe_set_data(sqe, r);
    URING_HANDOFF_RELEASE(r);
  }

  void cq_loop() {
    pthread_setname_np(pthread_self(), "uring-cq");
    for (;;) {
      io_uring_cqe* cqe;
      int rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc == -EINTR) continue;
      if (rc < 0) {
        DEV_LOG("%s: io_uring_wait_cqe: %s", name_.c_str(), strerror(-rc));
        continue;
      }
      unsigned head, seen = 0;
      bool end = false;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        seen++;
        if (io_uring_cqe_get_data64(cqe) == kStopTag) {
          end = true;
          continue;
        }
        complete(static_cast<io_request*>(io_uring_cqe_get_data(cqe)), cqe->res);
      }
      io_uring_cq_advance(&ring_, seen);
      if (end) return;
    }
  }

  // One CQE for r: finish it, or queue the rest of it for uring-sq.
  void complete(io_request* r, int res) {
    URING_HANDOFF_ACQUIRE(r);
    bool again = false;
    int err = 0;
    if (res == -EINTR || res == -EAGAIN) {
      again = true;
    } else if (res < 0) {
      err = -res;
    } else if (r->op == io_op::read || r->op == io_op::write) {
      r->dev_bytes += uint64_t(res);
      if (r->dev_bytes < r->length) {
        if (res > 0) {
          again = true;
        } else if (r->op == io_op::read) {  // end of file: the rest of the device reads as zeros
          uint64_t skip = r->dev_bytes;
          for (const iovec& v : r->iov) {
            if (skip >= v.iov_len) { skip -= v.iov_len; continue; }
            memset(static_cast<char*>(v.iov_base) + skip, 0, v.iov_len - skip);
            skip = 0;
          }
          r->dev_bytes = r->length;
        } else {
          err = EIO;  // a write that makes no progress
        }
      }
    } else {
      r->dev_bytes = r->op == io_op::unmap ? r->length : 0;
    }
    bool wake;
    {
      std::lock_guard lk(mu_);
      if (again) pending_.push_front(*r);
      inflight_--;
      // uring-sq sleeps on an empty queue, a full ring, or (stopping) the last SQE still in flight
      wake = sq_sleeping_ && (!pending_.empty() || (stop_ && inflight_ == 0));
    }
    if (wake) cv_.notify_one();
    if (again) return;
    if (err) DEV_LOG("%s: %s [%" PRIu64 ", +%" PRIu64 "): %s", name_.c_str(), io_op_name(r->op), r->offset,
                     r->length, strerror(err));
    finish(st_, r, err, size_t(r->dev_bytes));
  }

  const std::string path_;
  const std::string name_;  // built once: check_request and the log lines take it on every request
  const backing b_;
  const uring_options o_;
  io_uring ring_;
  const unsigned depth_;
  stats_keeper st_;
  std::mutex mu_;
  std::condition_variable cv_;
  req_list pending_;       // submitted, not yet in the ring; remainders of short transfers go first
  unsigned inflight_ = 0;  // SQEs handed to the kernel and not yet reaped
  bool stop_ = false;
  bool sq_sleeping_ = false;  // uring-sq waits on cv_
  std::thread sq_, cq_;
};

}  // namespace

std::unique_ptr<device> make_uring_device(const std::string& path, const uring_options& o, int* err) {
  backing b;
  int e = open_backing(path, o.direct, o.readonly, 0, &b);
  if (e) {
    if (err) *err = e;
    return nullptr;
  }
  uring_options opts = o;
  if (opts.queue_depth < 2) opts.queue_depth = 2;
  if (opts.queue_depth > 4096) opts.queue_depth = 4096;
  io_uring ring;
  io_uring_params p{};
  int rc = io_uring_queue_init_params(opts.queue_depth, &ring, &p);
  if (rc < 0) {
    DEV_LOG("uring:%s: io_uring_queue_init: %s", path.c_str(), strerror(-rc));
    ::close(b.fd);
    if (err) *err = -rc;
    return nullptr;
  }
  if (!(p.features & IORING_FEAT_SUBMIT_STABLE)) {
    DEV_LOG("uring:%s: kernel lacks IORING_FEAT_SUBMIT_STABLE (Linux >= 5.5 needed)", path.c_str());
    io_uring_queue_exit(&ring);
    ::close(b.fd);
    if (err) *err = ENOTSUP;
    return nullptr;
  }
  opts.queue_depth = p.sq_entries;
  try {
    return std::make_unique<uring_device>(path, b, opts, &ring);
  } catch (const std::exception& ex) {
    DEV_LOG("uring:%s: %s", path.c_str(), ex.what());
    io_uring_queue_exit(&ring);
    ::close(b.fd);
    if (err) *err = ENOMEM;
    return nullptr;
  }
}

}  // namespace vnopfs::dev

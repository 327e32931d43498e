// partition.cpp: a byte window of the device below (IOKit's IOPartitionScheme: simple pass-through with an
// offset). Requests are bounds-checked against the window; one that does not fit completes with EIO on the
// partition's deferred thread, with a log line naming the request and the window.
#include <cinttypes>
#include <new>

#include "src/dev/child.h"
#include "src/dev/deferred.h"
#include "src/dev/gate.h"
#include "src/dev/log.h"
#include "src/dev/stats.h"

namespace vnopfs::dev {
namespace {

class partition_device final : public device_wrapper {
 public:
  partition_device(device* below, uint64_t start, uint64_t length)
      : device_wrapper(below), start_(start), length_(length), deferred_(&complete_deferred, this) {}
  ~partition_device() override {
    gate_.wait_idle();
    // deferred_'s destructor then completes what it holds
  }

  void submit(io_request* r) override {
    st_.on_submit(r);
    if (r->op != io_op::flush && (r->offset > length_ || r->length > length_ - r->offset)) {
      DEV_LOG("%s: %s [%" PRIu64 ", +%" PRIu64 ") outside the partition [0, %" PRIu64 ") = device [%" PRIu64
              ", %" PRIu64 "): EIO",
              name().c_str(), io_op_name(r->op), r->offset, r->length, length_, start_, start_ + length_);
      defer(r, EIO);
      return;
    }
    child_request* c;
    try {
      c = child_request::make(r, this, &child_done);
    } catch (const std::bad_alloc&) {
      defer(r, ENOMEM);
      return;
    }
    if (r->op != io_op::flush) c->offset += start_;
    gate_.enter();
    below_->submit(c);
  }
  uint64_t size() const override { return length_; }
  std::string name() const override {
    return "partition(" + std::to_string(start_) + "+" + std::to_string(length_) + " of " + below_->name() + ")";
  }
  device_stats stats() const override { return st_.snapshot(); }

 private:
  void defer(io_request* r, int err) {
    r->dev_error = err;
    r->dev_deadline_ns = 0;
    deferred_.push(r);
  }
  static void complete_deferred(void* ctx, io_request* r) {
    finish(static_cast<partition_device*>(ctx)->st_, r, r->dev_error, 0);
  }
  static void child_done(io_request* cr, int err, size_t bytes) {
    auto* c = static_cast<child_request*>(cr);
    auto* self = static_cast<partition_device*>(c->layer);
    io_request* p = c->parent;
    delete c;
    finish(self->st_, p, err, bytes);
    self->gate_.leave();  // last touch of the partition: its destructor may run now
  }

  const uint64_t start_, length_;
  stats_keeper st_;
  inflight_gate gate_;
  deferred_queue deferred_;
};

}  // namespace

std::unique_ptr<device> make_partition(device* below, uint64_t start, uint64_t length) {
  if (start > below->size() || length > below->size() - start) {
    DEV_LOG("partition [%" PRIu64 ", +%" PRIu64 ") does not fit in %s (%" PRIu64 " bytes)", start, length,
            below->name().c_str(), below->size());
    return nullptr;
  }
  uint32_t sec = below->sector_size();
  if (sec && start % sec) {
    DEV_LOG("partition start %" PRIu64 " not aligned to the sector size %u of %s", start, sec, below->name().c_str());
    return nullptr;
  }
  try {
    return std::make_unique<partition_device>(below, start, length);
  } catch (const std::exception& e) {  // bad_alloc, or system_error from starting the deferred thread
    DEV_LOG("partition over %s: %s", below->name().c_str(), e.what());
    return nullptr;
  }
}

}  // namespace vnopfs::dev

// device.h: the strategy/device layer (src/dev/), where all I/O leaves the process.
//
// After IOKit IOStorage::write and Windows IRP_MJ_WRITE: a request carries an op, a byte offset, a buffer
// (iovecs) that stays alive until completion, attributes (FUA) and a completion routine. Simple layers pass
// a request through (possibly changed), complex ones split it; every layer and backend is a `device` and is
// called through one entry point, submit().
//
// Contract of submit(r):
// - The submitter owns `r` and the memory its iovecs point at until r->done runs; the device never frees it.
// - submit never blocks on I/O (it may take a short internal lock to queue), except for a request that
//   carries IO_ATTR_INLINE (below). Bad requests (misaligned for O_DIRECT, out of range, unsupported op)
//   still complete through r->done with an error, never by return.
// - r->done(r, error, bytes) runs exactly once, on one of the device's completion threads (never inside
//   submit, unless the request carries IO_ATTR_INLINE: see below), with error = 0 or an errno (EIO for
//   device failures, EINVAL for misalignment) and bytes = bytes transferred (reads past the end of a file
//   backend return zeros up to the device size; the device size bounds every request: beyond it is EIO).
// - flush: completes after every write that completed before it was submitted is stable (fdatasync).
//   Writes still in flight when a flush is submitted are not covered by it. FUA on a write: the write is
//   stable when it completes.
// - unmap: the range reads back as zeros afterwards (punch hole on files).
// - Ordering: none between requests in flight at the same time; a submitter that needs order waits for the
//   completion first (the buffer cache does).
// - A device is stopped by its destructor: it waits for every submitted request to complete.
// - IO_ATTR_INLINE is the submitter's promise that it holds no lock r->done takes and that it will wait for
//   the completion anyway: a backend may then do the I/O in the submitting thread and run r->done before
//   submit returns (the file backend does for reads and flushes, and for writes when its queue is idle),
//   which saves two thread hand-offs on a synchronous I/O. Everything else (errors, bytes, stats) is as for
//   any request; a device that does not use it ignores it, and layers pass it down with the request.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <boost/container/small_vector.hpp>
#include <boost/intrusive/list_hook.hpp>

namespace vnopfs::dev {

enum class io_op : uint8_t { read, write, flush, unmap };
const char* io_op_name(io_op op);

enum : uint32_t {  // io_request::attrs
  IO_ATTR_FUA = 0x1,   // force unit access: stable at completion
  IO_ATTR_META = 0x2,  // metadata (for stats and for layers that treat it differently)
  IO_ATTR_INLINE = 0x4,  // done may run inside submit, in the submitting thread (see the contract above)
};

struct io_request;
using io_done_fn = void (*)(io_request* r, int error, size_t bytes);

struct io_request {
  io_op op = io_op::read;
  uint32_t attrs = 0;
  uint64_t offset = 0;     // bytes from the start of the device
  uint64_t length = 0;     // unmap: bytes to discard; read/write: set by set_iov/add_iov (sum of iovecs)
  boost::container::small_vector<iovec, 4> iov;  // read/write memory; empty for flush and unmap
  io_done_fn done = nullptr;
  void* owner = nullptr;   // the submitter's context (the buffer cache puts its buf here)
  uint64_t submit_ns = 0;  // set by the device at submit, for latency stats

  // Scratch for the one device currently holding the request (a preset error, progress of a resubmitted
  // short transfer, a deadline for a delayed request). The submitter leaves them alone; their values after
  // completion mean nothing.
  int dev_error = 0;
  uint64_t dev_bytes = 0;
  uint64_t dev_deadline_ns = 0;

  // Hook for a device's internal queues; free while the request is not inside a device.
  boost::intrusive::list_member_hook<boost::intrusive::link_mode<boost::intrusive::normal_link>> q_hook;

  void add_iov(void* base, size_t len) { iov.push_back({base, len}); length += len; }
  void clear_iov() { iov.clear(); length = 0; }
};

// Counters every device keeps; layers keep their own.
struct device_stats {
  uint64_t reads = 0, writes = 0, flushes = 0, unmaps = 0;
  uint64_t bytes_read = 0, bytes_written = 0;
  uint64_t errors = 0;
  uint64_t merged = 0;          // requests merged into a neighbour by the queue
  uint64_t sorted = 0;          // writes the queue put before an earlier-submitted write (disksort)
  uint64_t in_flight_max = 0;
  uint64_t latency_ns_total = 0;  // sum over completed requests
  // I/O size histogram: bucket i counts requests of size in [2^(i+9), 2^(i+10)) bytes (512 B .. >= 64 MiB)
  static constexpr int kSizeBuckets = 18;
  uint64_t size_hist[kSizeBuckets] = {};
};

class device {
 public:
  virtual ~device() = default;
  virtual void submit(io_request* r) = 0;
  virtual uint64_t size() const = 0;            // bytes
  virtual uint32_t sector_size() const = 0;     // alignment unit the device enforces (512, or 4096 ...)
  virtual std::string name() const = 0;         // "file:/path", "uring:/path", "mem", "partition(…)"
  virtual device_stats stats() const = 0;
};

// A layer forwards to the device below; subclasses override what they change (IOKit's filter scheme).
class device_wrapper : public device {
 public:
  explicit device_wrapper(device* below) : below_(below) {}
  void submit(io_request* r) override { below_->submit(r); }
  uint64_t size() const override { return below_->size(); }
  uint32_t sector_size() const override { return below_->sector_size(); }
  std::string name() const override { return below_->name(); }
  device_stats stats() const override { return below_->stats(); }
  device* below() const { return below_; }

 protected:
  device* below_;
};

// ---- backends and layers (each in its own file under src/dev/)
struct file_options {
  bool direct = false;        // O_DIRECT: offsets, lengths and memory must be sector-aligned, else EINVAL
  bool readonly = false;
  int threads = 4;            // worker pool size
  bool sort_queue = true;     // sort pending writes by offset and merge adjacent ones (disksort)
  bool merge_queue = true;    // with sort_queue: merge adjacent pending writes into one pwritev (false: each
                              // request stays its own write; -o dev_queue=nomerge)
  uint64_t create_size = 0;   // if non-zero and the file is missing, create it with this size (tests)
};
// Opens path; on failure returns nullptr and sets *err to the errno (ENOENT, EACCES, EINVAL for O_DIRECT
// unsupported...). An exclusive flock is NOT taken here: the daemon does that.
std::unique_ptr<device> make_file_device(const std::string& path, const file_options& o, int* err);

struct uring_options {
  bool direct = false;
  bool readonly = false;
  unsigned queue_depth = 128;
};
std::unique_ptr<device> make_uring_device(const std::string& path, const uring_options& o, int* err);

// An export of an NBD server (src/dev/nbd.cpp, libnbd), named by an NBD URI (nbd://host[:port]/export,
// nbd+unix:///export?socket=PATH): connects at once (nullptr and *err: ECONNREFUSED, ENOENT, EROFS for a
// read-only export asked for writing, ENOTSUP when built without libnbd). Same contract as every device;
// a dropped connection completes every pending and later request with EIO. vnopfs must be the export's
// only writer.
struct nbd_options {
  bool readonly = false;
};
std::unique_ptr<device> make_nbd_device(const std::string& uri, const nbd_options& o, int* err);
bool is_nbd_uri(const std::string& s);  // nbd://, nbds://, nbd+unix://, ... (libnbd's schemes)

// In-memory device for unit tests. With `volatile_cache`, writes are kept apart until a flush (or a FUA
// write) makes them durable; power_loss() drops what was not yet durable, as a crash would.
struct mem_options {
  uint64_t size = 64u << 20;
  uint32_t sector_size = 512;
  bool volatile_cache = false;
  int completion_threads = 1;
};
class mem_device;
std::unique_ptr<mem_device> make_mem_device(const mem_options& o);

// partition: a byte window [start, start+length) of the device below; every request is bounds-checked and
// an out-of-range one completes with EIO and a log line naming the range.
std::unique_ptr<device> make_partition(device* below, uint64_t start, uint64_t length);

// faults: fails, delays or tears requests chosen by rules (see src/dev/faults.h for the rule language).
class faults_device;
std::unique_ptr<faults_device> make_faults(device* below);

// Synchronous helper for mount time, tools and tests: submits one request carrying exactly `attrs` and waits
// for it. The default, IO_ATTR_INLINE, is right for any caller that holds no lock the completion takes; the
// device tests and devbench pass other sets to exercise the hand-off path. Returns the error; *bytes if given.
int dev_sync_io(device& d, io_op op, uint64_t offset, void* buf, size_t len, uint32_t attrs = IO_ATTR_INLINE,
                size_t* bytes = nullptr);

}  // namespace vnopfs::dev

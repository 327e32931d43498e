// file.cpp: the `file` backend: a pool of worker threads doing preadv/pwritev on a file or block device.
//
// submit() checks the request, stamps it and files it in the device queue (queue.h), nothing more. Each
// worker ("file-io", owned by the device) pops a batch, does the system calls, and runs the completions.
// A request with IO_ATTR_INLINE skips the queue and its worker hop: a read always, a write or flush when
// nothing is pending (a write could merge with nothing, a flush passes nothing queued), done in the
// submitting thread, which waits for it anyway.
// Flush is fdatasync, FUA a pwritev2(RWF_DSYNC) (fdatasync after the write where the kernel refuses the
// flag), unmap fallocate(PUNCH_HOLE|KEEP_SIZE) (zeros written where punching is not supported).
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <cinttypes>
#include <cstring>
#include <thread>
#include <vector>

#include "src/dev/backing.h"
#include "src/dev/log.h"
#include "src/dev/queue.h"
#include "src/dev/rw.h"
#include "src/dev/stats.h"

namespace vnopfs::dev {
namespace {

io_queue::options queue_options(const file_options& o) {
  io_queue::options q;
  q.sort = o.sort_queue;
  q.merge = o.sort_queue && o.merge_queue;
  return q;
}

class file_device final : public device {
 public:
  file_device(const std::string& path, const backing& b, const file_options& o)
      : path_(path), name_((b.direct ? "file+direct:" : "file:") + path), b_(b), o_(o), q_(queue_options(o)) {
    int n = o.threads > 0 ? o.threads : 1;
    try {
      for (int i = 0; i < n; i++) workers_.emplace_back([this] { loop(); });
    } catch (...) {  // no destructor runs for a half-built object: stop what started
      q_.stop();
      for (auto& t : workers_) t.join();
      throw;
    }
  }
  ~file_device() override {
    q_.stop();  // workers finish everything queued, then return
    for (auto& t : workers_) t.join();
    ::close(b_.fd);
  }

  void submit(io_request* r) override {
    st_.on_submit(r);
    r->dev_error = check_request(r, b_, o_.readonly, name_);
    if ((r->attrs & IO_ATTR_INLINE) && run_inline(r)) return;
    q_.push(r);
  }
  uint64_t size() const override { return b_.size; }
  uint32_t sector_size() const override { return b_.sector; }
  std::string name() const override { return name_; }
  device_stats stats() const override {
    device_stats s = st_.snapshot();
    s.merged = q_.merged();
    s.sorted = q_.sorted();
    return s;
  }

 private:
  void loop() {
    pthread_setname_np(pthread_self(), "file-io");
    io_batch b;
    while (q_.pop(b)) run(b);
  }

  // The I/O of an IO_ATTR_INLINE request in the submitting thread; false: queue it after all.
  bool run_inline(io_request* r) {
    int err = r->dev_error;
    size_t done = 0;
    if (err) {
      finish(st_, r, err, 0);
      return true;
    }
    switch (r->op) {
      case io_op::read:  // reads are never sorted, merged or held back by a barrier: no queue needed
        err = full_preadv(b_.fd, r->iov.data(), int(r->iov.size()), r->offset, &done);
        break;
      case io_op::write:
        if (!q_.begin_inline()) return false;
        err = write_at(r->iov.data(), int(r->iov.size()), r->offset, r->attrs, &done);
        q_.retire();
        if (!err && done < r->length) err = EIO;
        break;
      case io_op::flush:
        if (!q_.begin_inline()) return false;
        err = ::fdatasync(b_.fd) < 0 ? errno : 0;
        q_.retire();
        break;
      case io_op::unmap:
        return false;
    }
    if (err) DEV_LOG("%s: %s [%" PRIu64 ", +%" PRIu64 "): %s", name_.c_str(), io_op_name(r->op), r->offset,
                     r->length, strerror(err));
    finish(st_, r, err, done);
    return true;
  }

  void run(io_batch& b) {
    io_request* r = b.reqs.front();
    int err = r->dev_error;
    size_t done = 0;
    if (err) {
      q_.retire();
      finish(st_, r, err, 0);
      return;
    }
    switch (r->op) {
      case io_op::read:
        err = full_preadv(b_.fd, r->iov.data(), int(r->iov.size()), r->offset, &done);
        break;
      case io_op::write:
        run_write(b);
        return;
      case io_op::flush:
        err = ::fdatasync(b_.fd) < 0 ? errno : 0;
        break;
      case io_op::unmap:
        err = unmap(r->offset, r->length);
        done = err ? 0 : r->length;
        break;
    }
    q_.retire();
    if (err) DEV_LOG("%s: %s [%" PRIu64 ", +%" PRIu64 "): %s", name_.c_str(), io_op_name(r->op), r->offset,
                     r->length, strerror(err));
    finish(st_, r, err, done);
  }

  // One pwritev for the whole batch; each request then gets its share of what was written.
  void run_write(io_batch& b) {
    io_request* first = b.reqs.front();
    boost::container::small_vector<iovec, 16> iov;
    const iovec* v = first->iov.data();
    int n = int(first->iov.size());
    if (b.reqs.size() > 1) {
      iov.reserve(b.iov_count);
      for (io_request* r : b.reqs) iov.insert(iov.end(), r->iov.begin(), r->iov.end());
      v = iov.data();
      n = int(iov.size());
    }
    size_t done = 0;
    int err = write_at(v, n, first->offset, first->attrs, &done);
    q_.retire();
    if (err) DEV_LOG("%s: write [%" PRIu64 ", +%zu) in %zu requests: %s after %zu bytes", name_.c_str(),
                     first->offset, size_t(b.reqs.back()->offset + b.reqs.back()->length - first->offset),
                     b.reqs.size(), strerror(err), done);
    const uint64_t base = first->offset;  // done() may free any request, first included
    for (io_request* r : b.reqs) {
      uint64_t start = r->offset - base;
      size_t share = done > start ? size_t(std::min<uint64_t>(done - start, r->length)) : 0;
      finish(st_, r, share == r->length ? 0 : (err ? err : EIO), share);
    }
  }

  // FUA is pwritev2(RWF_DSYNC), or a write and an fdatasync where the kernel refuses the flag.
  int write_at(const iovec* v, int n, uint64_t off, uint32_t attrs, size_t* done) {
    if (!(attrs & IO_ATTR_FUA)) return full_pwritev(b_.fd, v, n, off, 0, done);
    int err = full_pwritev(b_.fd, v, n, off, RWF_DSYNC, done);
    if (err == EOPNOTSUPP && *done == 0) {
      err = full_pwritev(b_.fd, v, n, off, 0, done);
      if (!err && ::fdatasync(b_.fd) < 0) err = errno;
    }
    return err;
  }

  int unmap(uint64_t off, uint64_t len) {
    if (len == 0) return 0;
    if (::fallocate(b_.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(off), off_t(len)) == 0) return 0;
    if (errno != EOPNOTSUPP) return errno;
    // No hole punching here: write zeros, which is what the contract promises readers.
    static const std::vector<char> zeros(1 << 20);  // aligned enough for buffered I/O only
    const char* z = zeros.data();
    if (b_.direct) {
      void* p = nullptr;
      if (posix_memalign(&p, b_.sector, zeros.size())) return ENOMEM;
      memset(p, 0, zeros.size());
      z = static_cast<const char*>(p);
    }
    int err = 0;
    while (len && !err) {
      size_t chunk = size_t(std::min<uint64_t>(len, zeros.size()));
      iovec v{const_cast<char*>(z), chunk};
      size_t done;
      err = full_pwritev(b_.fd, &v, 1, off, 0, &done);
      off += chunk;
      len -= chunk;
    }
    if (b_.direct) free(const_cast<char*>(z));
    return err;
  }

  const std::string path_;
  const std::string name_;  // built once: check_request and the log lines take it on every request
  const backing b_;
  const file_options o_;
  stats_keeper st_;
  io_queue q_;
  std::vector<std::thread> workers_;
};

}  // namespace

std::unique_ptr<device> make_file_device(const std::string& path, const file_options& o, int* err) {
  backing b;
  int e = open_backing(path, o.direct, o.readonly, o.create_size, &b);
  if (e) {
    if (err) *err = e;
    return nullptr;
  }
  try {
    return std::make_unique<file_device>(path, b, o);
  } catch (const std::exception& ex) {  // bad_alloc, or std::system_error from thread creation
    DEV_LOG("file:%s: %s", path.c_str(), ex.what());
    ::close(b.fd);
    if (err) *err = ENOMEM;
    return nullptr;
  }
}

}  // namespace vnopfs::dev

// nbd.cpp: the `nbd` backend (-o backend=nbd, or an NBD URI in place of IMAGE): the image is an export of
// an NBD server, reached through libnbd's asynchronous API.
//
// One thread ("nbd-io", owned by the device) owns the libnbd handle: submit() only files the request and
// wakes it through an eventfd; the thread issues the NBD commands, polls the socket, and libnbd runs the
// completion callbacks in it (inside nbd_aio_notify_*), so no libnbd call is made from two threads. A
// read or write of several iovecs is one command per iovec; the request completes when the last one has.
// flush = NBD_CMD_FLUSH; FUA = NBD_CMD_FLAG_FUA (a flush after the write where the server lacks FUA);
// unmap = NBD_CMD_WRITE_ZEROES without NBD_CMD_FLAG_NO_HOLE (the server may trim, and the range reads back
// as zeros as device.h promises, which a bare NBD_CMD_TRIM does not), NBD_CMD_TRIM where the server has no
// WRITE_ZEROES.
// A dropped connection: libnbd fails the commands in flight (their callbacks run with an error), the
// handle is dead, and every later request completes with EIO at once: no hang, no retry, no reconnect.
// vnopfs assumes it is the export's only writer (docs/dev.md): nothing here detects another.
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>

#include "src/dev/log.h"
#include "src/dev/req_list.h"
#include "src/dev/stats.h"

#if VNOPFS_HAVE_LIBNBD
#include <libnbd.h>
#endif

namespace vnopfs::dev {

#if VNOPFS_HAVE_LIBNBD
namespace {

class nbd_device;
thread_local nbd_device* t_self = nullptr;  // the device whose callbacks this thread runs (the nbd-io thread)

class nbd_device final : public device {
 public:
  nbd_device(nbd_handle* h, std::string uri, uint64_t size, bool readonly)
      : h_(h), name_("nbd:" + std::move(uri)), size_(size), readonly_(readonly) {
    can_fua_ = nbd_can_fua(h_) == 1;
    can_flush_ = nbd_can_flush(h_) == 1;
    can_zero_ = nbd_can_zero(h_) == 1;
    can_trim_ = nbd_can_trim(h_) == 1;
    efd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
    thread_ = std::thread([this] { loop(); });
  }
  ~nbd_device() override {
    {
      std::lock_guard g(mu_);
      stop_ = true;
    }
    wake();
    thread_.join();  // returns once nothing is queued or in flight
    t_self = this;
    nbd_close(h_);
    t_self = nullptr;
    ::close(efd_);
  }

  void submit(io_request* r) override {
    st_.on_submit(r);
    r->dev_error = check(r);
    r->dev_bytes = 0;
    r->dev_deadline_ns = 0;
    {
      std::lock_guard g(mu_);
      queued_.push_back(*r);
    }
    wake();
  }
  uint64_t size() const override { return size_; }
  uint32_t sector_size() const override { return 512; }
  std::string name() const override { return name_; }
  device_stats stats() const override { return st_.snapshot(); }

 private:
  int check(const io_request* r) const {
    if (r->op == io_op::flush) return 0;
    if (r->op != io_op::read && readonly_) return EROFS;
    if (r->offset > size_ || r->length > size_ - r->offset) {
      DEV_LOG("%s: %s [%" PRIu64 ", +%" PRIu64 ") beyond the export's %" PRIu64 " bytes: EIO", name_.c_str(),
              io_op_name(r->op), r->offset, r->length, size_);
      return EIO;
    }
    return 0;
  }
  void wake() {
    uint64_t one = 1;
    (void)!::write(efd_, &one, sizeof one);
  }

  void loop() {
    t_self = this;
    for (;;) {
      req_list batch;
      bool stop;
      {
        std::lock_guard g(mu_);
        batch.swap(queued_);
        stop = stop_;
      }
      while (!batch.empty()) {
        io_request& r = batch.front();
        batch.pop_front();
        issue(&r);
      }
      if (!dead_ && (nbd_aio_is_dead(h_) == 1 || nbd_aio_is_closed(h_) == 1)) {
        dead_ = true;
        DEV_LOG("%s: the connection is gone (%s): every request fails with EIO from now on", name_.c_str(),
                nbd_get_error() ? nbd_get_error() : "closed");
      }
      if (stop && in_flight_ == 0) {
        std::lock_guard g(mu_);
        if (queued_.empty()) break;
        continue;
      }
      struct pollfd p[2] = {{efd_, POLLIN, 0}, {-1, 0, 0}};
      if (!dead_) {
        unsigned dir = nbd_aio_get_direction(h_);
        p[1].fd = nbd_aio_get_fd(h_);
        p[1].events = static_cast<short>(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                                         ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0));
      }
      int n = ::poll(p, p[1].fd >= 0 ? 2 : 1, -1);
      if (n < 0 && errno != EINTR) DEV_LOG("%s: poll: %s", name_.c_str(), std::strerror(errno));
      if (p[0].revents & POLLIN) {
        uint64_t v;
        (void)!::read(efd_, &v, sizeof v);
      }
      if (p[1].fd >= 0 && p[1].revents) {
        // POLLHUP/POLLERR: a read sees the end of the connection and moves the handle to DEAD, which fails
        // the commands in flight through their callbacks.
        if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) (void)nbd_aio_notify_read(h_);
        else if (p[1].revents & POLLOUT) (void)nbd_aio_notify_write(h_);
      }
    }
    t_self = nullptr;
  }

  nbd_completion_callback callback(io_request* r) { return {.callback = &done_cb, .user_data = r, .free = nullptr}; }

  // One NBD command for r; false if libnbd refused to issue it (no callback will run for it).
  bool command(io_request* r, uint64_t off, void* buf, size_t len, uint32_t flags) {
    int64_t c = -1;
    r->dev_bytes++;
    in_flight_++;
    switch (r->op) {
      case io_op::read: c = nbd_aio_pread(h_, buf, len, off, callback(r), 0); break;
      case io_op::write: c = nbd_aio_pwrite(h_, buf, len, off, callback(r), flags); break;
      case io_op::flush: c = nbd_aio_flush(h_, callback(r), 0); break;
      case io_op::unmap:
        c = can_zero_ ? nbd_aio_zero(h_, len, off, callback(r), 0)
                      : nbd_aio_trim(h_, len, off, callback(r), 0);
        break;
    }
    if (c >= 0) return true;
    r->dev_bytes--;
    in_flight_--;
    if (!dead_) DEV_LOG("%s: %s [%" PRIu64 ", +%zu): %s", name_.c_str(), io_op_name(r->op), off, len, nbd_get_error());
    return false;
  }

  void issue(io_request* r) {
    int err = r->dev_error;
    if (!err && dead_) err = EIO;
    if (!err && r->op == io_op::unmap && r->length && !can_zero_ && !can_trim_) err = EOPNOTSUPP;
    if (!err && ((r->op == io_op::flush && !can_flush_) || (r->op != io_op::flush && r->length == 0))) {
      finish(st_, r, 0, 0);  // nothing to send: an empty transfer, or a server whose writes need no flush
      return;
    }
    if (err) {
      finish(st_, r, err, 0);
      return;
    }
    uint32_t flags = 0;
    if (r->op == io_op::write && (r->attrs & IO_ATTR_FUA)) {
      if (can_fua_) flags = LIBNBD_CMD_FLAG_FUA;
      else if (can_flush_) r->dev_deadline_ns = 1;  // a flush follows the write (done_cb)
    }
    bool ok = true;
    if (r->op == io_op::read || r->op == io_op::write) {
      uint64_t off = r->offset;
      for (const iovec& v : r->iov) {
        if (v.iov_len && !command(r, off, v.iov_base, v.iov_len, flags)) { ok = false; break; }
        off += v.iov_len;
      }
    } else {
      ok = command(r, r->offset, nullptr, r->length, 0);
    }
    if (!ok) {
      r->dev_error = EIO;
      if (r->dev_bytes == 0) finish(st_, r, EIO, 0);  // else the last callback completes it
    }
  }

  static int done_cb(void* user_data, int* error) {
    nbd_device* self = t_self;
    auto* r = static_cast<io_request*>(user_data);
    self->in_flight_--;
    if (*error && !r->dev_error) {
      if (!self->dead_)
        DEV_LOG("%s: %s at %" PRIu64 ": %s: EIO", self->name_.c_str(), io_op_name(r->op), r->offset, std::strerror(*error));
      r->dev_error = EIO;
    }
    if (--r->dev_bytes > 0) return 1;
    if (!r->dev_error && r->dev_deadline_ns == 1) {  // FUA without the server's FUA: flush, then complete
      r->dev_deadline_ns = 0;
      io_op op = r->op;
      r->op = io_op::flush;
      bool ok = self->command(r, 0, nullptr, 0, 0);
      r->op = op;
      if (ok) return 1;
      r->dev_error = EIO;
    }
    finish(self->st_, r, r->dev_error, r->dev_error ? 0 : static_cast<size_t>(r->length));
    return 1;  // retire the command
  }

  nbd_handle* h_;
  const std::string name_;
  const uint64_t size_;
  const bool readonly_;
  bool can_fua_ = false, can_flush_ = false, can_zero_ = false, can_trim_ = false;
  int efd_ = -1;
  std::mutex mu_;       // queued_ and stop_
  req_list queued_;
  bool stop_ = false;
  // The nbd-io thread's own (and the destructor's once it has joined):
  bool dead_ = false;
  uint64_t in_flight_ = 0;  // NBD commands issued whose callbacks have not run
  stats_keeper st_;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<device> make_nbd_device(const std::string& uri, const nbd_options& o, int* err) {
  nbd_handle* h = nbd_create();
  if (!h) {
    *err = nbd_get_errno() ? nbd_get_errno() : ENOMEM;
    DEV_LOG("nbd: %s", nbd_get_error());
    return nullptr;
  }
  if (nbd_connect_uri(h, uri.c_str()) != 0) {
    *err = nbd_get_errno() ? nbd_get_errno() : EIO;
    DEV_LOG("nbd: %s: %s", uri.c_str(), nbd_get_error());
    nbd_close(h);
    return nullptr;
  }
  int64_t size = nbd_get_size(h);
  if (size < 0 || (!o.readonly && nbd_is_read_only(h) == 1)) {
    *err = size < 0 ? EIO : EROFS;
    DEV_LOG("nbd: %s: %s", uri.c_str(), size < 0 ? nbd_get_error() : "the export is read-only");
    nbd_close(h);
    return nullptr;
  }
  try {
    return std::make_unique<nbd_device>(h, uri, static_cast<uint64_t>(size), o.readonly);
  } catch (const std::exception& e) {
    DEV_LOG("nbd: %s: %s", uri.c_str(), e.what());
    nbd_close(h);
    *err = ENOMEM;
    return nullptr;
  }
}

#else  // built without libnbd-dev

std::unique_ptr<device> make_nbd_device(const std::string& uri, const nbd_options&, int* err) {
  DEV_LOG("nbd: %s: this vnopfs was built without libnbd (install libnbd-dev and rebuild)", uri.c_str());
  *err = ENOTSUP;
  return nullptr;
}

#endif

bool is_nbd_uri(const std::string& s) {
  for (const char* p : {"nbd://", "nbds://", "nbd+unix://", "nbds+unix://", "nbd+vsock://", "nbds+vsock://"})
    if (s.rfind(p, 0) == 0) return true;
  return false;
}


}  // namespace vnopfs::dev

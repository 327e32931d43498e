// record.cpp: the record layer (record.h) and the reader of its log.
//
// Each write, unmap and flush goes down as a child request; its completion appends the record (with the
// data, still valid until the parent's done runs) under the layer's mutex, which is what makes the log's
// order the order in which completions came back. One writev per record: a recording daemon killed with
// SIGKILL leaves at most its last record torn, and the reader ignores a torn tail.
#include "src/dev/record.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <mutex>
#include <new>

#include "src/dev/child.h"
#include "src/dev/deferred.h"
#include "src/dev/gate.h"
#include "src/dev/log.h"
#include "src/dev/stats.h"

namespace vnopfs::dev {
namespace {

void put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = uint8_t(v >> (8 * i));
}
void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = uint8_t(v >> (8 * i));
}
uint64_t get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
uint32_t get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

// Writes all of iov (retrying short writes). 0 or errno.
int write_all(int fd, std::vector<iovec> iov) {
  size_t i = 0;
  while (i < iov.size()) {
    ssize_t n = ::writev(fd, iov.data() + i, int(std::min<size_t>(iov.size() - i, IOV_MAX)));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    size_t left = size_t(n);
    while (i < iov.size() && left >= iov[i].iov_len) left -= iov[i++].iov_len;
    if (i < iov.size()) {
      iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + left;
      iov[i].iov_len -= left;
    }
  }
  return 0;
}

class record_device final : public device_wrapper {
 public:
  record_device(device* below, int fd, std::string path)
      : device_wrapper(below), fd_(fd), path_(std::move(path)), deferred_(&complete_deferred, this) {}
  ~record_device() override {
    gate_.wait_idle();
    ::close(fd_);
  }

  void submit(io_request* r) override {
    if (r->op == io_op::read) {  // not recorded: straight down, untouched
      below_->submit(r);
      return;
    }
    st_.on_submit(r);
    child_request* c;
    try {
      c = child_request::make(r, this, &child_done);
    } catch (const std::bad_alloc&) {
      r->dev_error = ENOMEM;
      r->dev_deadline_ns = 0;
      deferred_.push(r);
      return;
    }
    if (r->op == io_op::flush) {
      std::lock_guard g(mu_);
      c->aux = seq_;  // what this flush covers: every record logged before it was submitted
    }
    gate_.enter();
    below_->submit(c);
  }
  std::string name() const override { return "record(" + below_->name() + ")"; }
  device_stats stats() const override { return st_.snapshot(); }

 private:
  static void complete_deferred(void* ctx, io_request* r) {
    finish(static_cast<record_device*>(ctx)->st_, r, r->dev_error, 0);
  }
  static void child_done(io_request* cr, int err, size_t bytes) {
    auto* c = static_cast<child_request*>(cr);
    auto* self = static_cast<record_device*>(c->layer);
    io_request* p = c->parent;
    self->append(c, err, bytes);
    delete c;
    finish(self->st_, p, err, bytes);
    self->gate_.leave();  // last touch of the layer: its destructor may run now
  }

  void append(const child_request* c, int err, size_t bytes) {
    uint8_t head[kRecordHeadBytes] = {};
    record_kind kind = c->op == io_op::write ? record_kind::write
                       : c->op == io_op::flush ? record_kind::flush : record_kind::unmap;
    uint8_t flags = uint8_t((c->attrs & IO_ATTR_FUA ? REC_FUA : 0) | (err ? REC_FAILED : 0) |
                            (c->attrs & IO_ATTR_META ? REC_META : 0));
    uint64_t length = c->op == io_op::flush ? 0 : c->length;
    std::vector<iovec> iov;
    iov.push_back({head, sizeof head});
    if (c->op == io_op::write) {
      // A short write (an error) records what was submitted; the failed flag says the medium is unknown.
      for (const iovec& v : c->iov) iov.push_back(v);
    }
    (void)bytes;
    std::lock_guard g(mu_);
    put64(head, ++seq_);
    head[8] = uint8_t(kind);
    head[9] = flags;
    put32(head + 12, uint32_t(err));
    put64(head + 16, c->op == io_op::flush ? 0 : c->offset);
    put64(head + 24, length);
    put64(head + 32, c->op == io_op::flush ? c->aux : 0);
    if (log_err_ == 0) {
      log_err_ = write_all(fd_, std::move(iov));
      if (log_err_) DEV_LOG("record %s: log write failed: %s; recording stops", path_.c_str(), strerror(log_err_));
    }
  }

  const int fd_;
  const std::string path_;
  std::mutex mu_;
  uint64_t seq_ = 0;   // [mu_] the last seq logged
  int log_err_ = 0;    // [mu_]
  stats_keeper st_;
  inflight_gate gate_;
  deferred_queue deferred_;
};

}  // namespace

std::unique_ptr<device> make_record(device* below, const std::string& log_path, int* err) {
  int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    *err = errno;
    DEV_LOG("record: cannot create the log %s: %s", log_path.c_str(), strerror(*err));
    return nullptr;
  }
  uint8_t h[kRecordHeaderBytes] = {};
  std::memcpy(h, kRecordMagic, 8);
  put32(h + 8, kRecordVersion);
  put32(h + 12, below->sector_size());
  put64(h + 16, below->size());
  if (int e = write_all(fd, {{h, sizeof h}})) {
    ::close(fd);
    *err = e;
    return nullptr;
  }
  try {
    return std::make_unique<record_device>(below, fd, log_path);
  } catch (const std::exception& e) {  // bad_alloc, or system_error from starting the deferred thread
    ::close(fd);
    DEV_LOG("record over %s: %s", below->name().c_str(), e.what());
    *err = ENOMEM;
    return nullptr;
  }
}

std::string read_record_log(const std::string& path, record_log* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return path + ": " + strerror(errno);
  struct stat st;
  if (::fstat(fd, &st) < 0) {
    ::close(fd);
    return path + ": " + strerror(errno);
  }
  const uint64_t end = uint64_t(st.st_size);
  uint8_t h[kRecordHeaderBytes];
  std::string msg;
  if (::pread(fd, h, sizeof h, 0) != ssize_t(sizeof h) || std::memcmp(h, kRecordMagic, 8) != 0) {
    msg = path + ": not a vnopfs record log (bad magic)";
  } else if (get32(h + 8) != kRecordVersion) {
    msg = path + ": record log version " + std::to_string(get32(h + 8)) + " (this reader knows 1)";
  } else {
    out->block_size = get32(h + 12);
    out->device_size = get64(h + 16);
    out->entries.clear();
    uint64_t pos = kRecordHeaderBytes;
    uint8_t r[kRecordHeadBytes];
    while (pos + kRecordHeadBytes <= end && ::pread(fd, r, sizeof r, off_t(pos)) == ssize_t(sizeof r)) {
      record_entry e;
      e.seq = get64(r);
      e.kind = record_kind(r[8]);
      e.flags = r[9];
      e.error = get32(r + 12);
      e.offset = get64(r + 16);
      e.length = get64(r + 24);
      e.covered = get64(r + 32);
      e.data_pos = pos + kRecordHeadBytes;
      uint64_t data = e.kind == record_kind::write ? e.length : 0;
      if (e.seq != out->entries.size() + 1 || e.kind < record_kind::write || e.kind > record_kind::unmap) {
        msg = path + ": record at byte " + std::to_string(pos) + " is damaged";
        break;
      }
      if (e.data_pos + data > end) break;  // torn tail
      out->entries.push_back(e);
      pos = e.data_pos + data;
    }
  }
  ::close(fd);
  return msg;
}

std::string replay_record_log(const std::string& path, const record_log& log, const std::string& image,
                              uint64_t upto, const std::vector<uint64_t>& drop) {
  int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return path + ": " + strerror(errno);
  int out = ::open(image.c_str(), O_WRONLY | O_CLOEXEC);
  if (out < 0) {
    ::close(in);
    return image + ": " + strerror(errno);
  }
  std::vector<uint64_t> dropped(drop);
  std::sort(dropped.begin(), dropped.end());
  std::string msg;
  std::vector<char> buf;
  for (const record_entry& e : log.entries) {
    if (upto && e.seq > upto) break;
    if (e.kind == record_kind::flush || (e.flags & REC_FAILED)) continue;
    if (std::binary_search(dropped.begin(), dropped.end(), e.seq)) continue;
    try {
      buf.assign(e.length, 0);
    } catch (const std::bad_alloc&) {
      msg = "record " + std::to_string(e.seq) + ": out of memory";
      break;
    }
    if (e.kind == record_kind::write && ::pread(in, buf.data(), e.length, off_t(e.data_pos)) != ssize_t(e.length)) {
      msg = path + ": short read of record " + std::to_string(e.seq);
      break;
    }
    if (::pwrite(out, buf.data(), e.length, off_t(e.offset)) != ssize_t(e.length)) {
      msg = image + ": write of record " + std::to_string(e.seq) + " failed: " + strerror(errno);
      break;
    }
  }
  ::close(in);
  ::close(out);
  return msg;
}

}  // namespace vnopfs::dev

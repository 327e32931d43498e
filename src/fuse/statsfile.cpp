#include "src/fuse/statsfile.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>

#include "src/fuse/prometheus.h"

namespace vnopfs::fuse {

stats_writer::stats_writer(std::string path, double interval_s, source src, bool prometheus)
    : path_(std::move(path)), interval_(interval_s), src_(std::move(src)), prometheus_(prometheus) {}

stats_writer::~stats_writer() { stop(); }

void stats_writer::start() { thread_ = std::thread([this] { loop(); }); }

void stats_writer::stop() {
  {
    std::lock_guard g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void stats_writer::loop() {
  std::unique_lock g(mu_);
  while (!stop_) {
    g.unlock();
    (void)write_now();
    g.lock();
    cv_.wait_for(g, std::chrono::duration<double>(interval_), [this] { return stop_; });
  }
}

int stats_writer::write_now() {
  std::lock_guard w(write_mu_);
  std::string text;
  try {
    text = prometheus_ ? stats_to_prometheus(src_()) : src_().dump(1) + "\n";
  } catch (...) {
    return ENOMEM;
  }
  std::string tmp = path_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return e;
    }
    off += static_cast<size_t>(n);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return e;
  }
  return 0;
}

}  // namespace vnopfs::fuse

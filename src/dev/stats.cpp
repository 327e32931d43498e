// stats.cpp: lock-free counters for device::stats().
#include "src/dev/stats.h"

#include <time.h>

#include <bit>

namespace vnopfs::dev {

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

const char* io_op_name(io_op op) {
  switch (op) {
    case io_op::read: return "read";
    case io_op::write: return "write";
    case io_op::flush: return "flush";
    case io_op::unmap: return "unmap";
  }
  return "?";
}

void stats_keeper::on_submit(io_request* r) {
  r->submit_ns = now_ns();
  uint64_t n = in_flight_.fetch_add(1, std::memory_order_relaxed) + 1;
  uint64_t m = in_flight_max_.load(std::memory_order_relaxed);
  while (n > m && !in_flight_max_.compare_exchange_weak(m, n, std::memory_order_relaxed)) {
  }
}

// Bucket i holds sizes in [2^(i+9), 2^(i+10)); smaller ones go to 0, larger to the last.
static int size_bucket(uint64_t len) {
  if (len < 1024) return 0;
  int b = int(std::bit_width(len)) - 10;
  return b >= device_stats::kSizeBuckets ? device_stats::kSizeBuckets - 1 : b;
}

void stats_keeper::on_complete(const io_request* r, int error, size_t bytes) {
  constexpr auto rl = std::memory_order_relaxed;
  switch (r->op) {
    case io_op::read: reads_.fetch_add(1, rl); bytes_read_.fetch_add(bytes, rl); break;
    case io_op::write: writes_.fetch_add(1, rl); bytes_written_.fetch_add(bytes, rl); break;
    case io_op::flush: flushes_.fetch_add(1, rl); break;
    case io_op::unmap: unmaps_.fetch_add(1, rl); break;
  }
  if (error) errors_.fetch_add(1, rl);
  if (r->op == io_op::read || r->op == io_op::write) hist_[size_bucket(r->length)].fetch_add(1, rl);
  uint64_t now = now_ns();
  if (r->submit_ns && now > r->submit_ns) latency_ns_.fetch_add(now - r->submit_ns, rl);
  in_flight_.fetch_sub(1, rl);
}

device_stats stats_keeper::snapshot() const {
  constexpr auto rl = std::memory_order_relaxed;
  device_stats s;
  s.reads = reads_.load(rl);
  s.writes = writes_.load(rl);
  s.flushes = flushes_.load(rl);
  s.unmaps = unmaps_.load(rl);
  s.bytes_read = bytes_read_.load(rl);
  s.bytes_written = bytes_written_.load(rl);
  s.errors = errors_.load(rl);
  s.merged = merged_.load(rl);
  s.in_flight_max = in_flight_max_.load(rl);
  s.latency_ns_total = latency_ns_.load(rl);
  for (int i = 0; i < device_stats::kSizeBuckets; i++) s.size_hist[i] = hist_[i].load(rl);
  return s;
}

}  // namespace vnopfs::dev

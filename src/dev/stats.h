// stats.h: the counters behind device::stats(), kept by every backend and layer.
//
// stats_keeper is updated without locks from submit and from completion threads; snapshot() reads each
// counter atomically (the snapshot as a whole is not one instant). on_complete must run before r->done,
// since the submitter may free r inside done.
#pragma once

#include <atomic>
#include <cstdint>

#include "vnopfs/device.h"

namespace vnopfs::dev {

uint64_t now_ns();  // CLOCK_MONOTONIC in nanoseconds

class stats_keeper {
 public:
  void on_submit(io_request* r);                                   // stamps r->submit_ns, counts in-flight
  void on_complete(const io_request* r, int error, size_t bytes);  // before r->done
  void add_merged(uint64_t n) { merged_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  device_stats snapshot() const;

 private:
  std::atomic<uint64_t> reads_{0}, writes_{0}, flushes_{0}, unmaps_{0};
  std::atomic<uint64_t> bytes_read_{0}, bytes_written_{0}, errors_{0}, merged_{0};
  std::atomic<uint64_t> in_flight_{0}, in_flight_max_{0}, latency_ns_{0};
  std::atomic<uint64_t> hist_[device_stats::kSizeBuckets] = {};
};

// Counts the completion in `st`, then runs r->done. r must not be touched afterwards.
inline void finish(stats_keeper& st, io_request* r, int error, size_t bytes) {
  st.on_complete(r, error, bytes);
  r->done(r, error, bytes);
}

}  // namespace vnopfs::dev

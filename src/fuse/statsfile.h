// statsfile.h: live statistics as one JSON file, rewritten every interval and at exit, atomically
// (write PATH.tmp, rename over PATH), so a reader never sees half a file. With `prometheus`, the same
// document in the Prometheus text format instead (prometheus.h; -o stats_format=prometheus).
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

namespace vnopfs::fuse {

class stats_writer {
 public:
  using source = std::function<nlohmann::json()>;
  stats_writer(std::string path, double interval_s, source src, bool prometheus = false);
  ~stats_writer();  // stops the thread (without a last write: call write_now first)
  void start();
  void stop();
  int write_now();  // 0 or errno

 private:
  void loop();
  std::string path_;
  double interval_;
  source src_;
  bool prometheus_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
  std::mutex write_mu_;
};

}  // namespace vnopfs::fuse

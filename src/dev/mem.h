// mem.h: the in-memory device, for unit tests of the layers above (LevelDB's memenv + fault-injection env).
//
// Requests are queued by submit and executed by `completion_threads` threads owned by the device (named
// "mem-io"), which also run done; the destructor executes and completes everything queued, then joins.
// Bounds: a read/write/unmap past size() completes with EIO and a log line.
//
// Durability (volatile_cache): reads always see the latest write; a write becomes durable when a flush
// completes after it, or at its own completion if it carried IO_ATTR_FUA. power_loss() puts back the last
// durable contents of everything else, as a crash of a disk with a volatile write cache would. Unmap is a
// write of zeros for this purpose. Without volatile_cache every completed write is durable.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "src/dev/req_list.h"
#include "src/dev/stats.h"
#include "vnopfs/device.h"

namespace vnopfs::dev {

class mem_device final : public device {
 public:
  explicit mem_device(const mem_options& o);  // may throw bad_alloc; make_mem_device returns nullptr then
  ~mem_device() override;

  void submit(io_request* r) override;
  uint64_t size() const override { return o_.size; }
  uint32_t sector_size() const override { return o_.sector_size; }
  std::string name() const override { return o_.volatile_cache ? "mem(volatile)" : "mem"; }
  device_stats stats() const override { return st_.snapshot(); }

  // Drops every write (and unmap) not yet durable. Requests in flight at the same time may or may not
  // survive, as on a real crash.
  void power_loss();
  uint64_t dirty_sectors() const;  // sectors holding non-durable data
  // Copies current contents (what a read returns) without going through submit: for test assertions.
  void peek(uint64_t off, void* buf, size_t len) const;

 private:
  void loop();
  void execute(io_request* r, int* err, size_t* bytes);
  void mark_dirty(uint64_t off, uint64_t len);  // data_mu_ held
  void make_durable(uint64_t off, uint64_t len);  // data_mu_ held
  void flush_all();                               // data_mu_ held

  const mem_options o_;
  stats_keeper st_;

  mutable std::mutex data_mu_;
  std::vector<unsigned char> data_;     // what reads see
  std::vector<unsigned char> durable_;  // volatile_cache: what survives power_loss
  std::vector<bool> dirty_;             // per sector: data_ differs from durable_ (maybe)
  std::vector<uint64_t> dirty_list_;    // sectors set in dirty_

  std::mutex q_mu_;
  std::condition_variable q_cv_;
  req_list queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace vnopfs::dev

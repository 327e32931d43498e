// switch.h: the top of every mount's device stack, where the layers under it can be replaced while the
// filesystem runs (`vnopfs-ctl MOUNTPOINT dev-layers SPEC`, docs/dev.md "Changing device layers while
// mounted"). The buffer cache submits to the switch; the switch passes each request to its target (the
// device stack's top) as a child, and counts it until it completes.
//
// suspend() parks new requests (submit never blocks: they wait on a list, not in the caller) and waits for
// those below to complete; resume(target) sends the parked ones and every later one to the new target.
// Between the two, nothing is in flight below the switch, so the caller may rebuild the stack under it.
//
// Threads and ownership: the submitter owns its request as the device contract says; the switch owns the
// child it sends down until the child's completion, which completes the parent and then leaves the gate
// (last touch of the switch). suspend and resume are for one thread at a time (the daemon's control
// thread). The destructor waits for every request in flight; a parked request at destruction completes
// with EIO (there is no target left).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>

#include "src/dev/req_list.h"
#include "vnopfs/device.h"
#include "vnopfs/quiesce.h"

namespace vnopfs::dev {

class switch_device final : public device {
 public:
  explicit switch_device(device* target) : target_(target) {}
  ~switch_device() override;

  void submit(io_request* r) override;
  uint64_t size() const override { return target()->size(); }
  uint32_t sector_size() const override { return target()->sector_size(); }
  std::string name() const override { return target()->name(); }
  device_stats stats() const override { return target()->stats(); }

  device* target() const { return target_.load(std::memory_order_acquire); }
  // Parks new requests and waits for those in flight below, at most `timeout`. false: they did not all
  // complete in time; nothing is parked any more and the switch runs on as before.
  bool suspend(std::chrono::milliseconds timeout);
  // Sends parked and later requests to `target` (the same size as the old one: the filesystem above has
  // not changed). Only after a suspend() that returned true.
  void resume(device* target);
  // Requests parked now (a snapshot).
  size_t parked() const;

 private:
  static void child_done(io_request* c, int err, size_t bytes);
  void send(io_request* r);
  req_list take_parked();
  void release_parked();

  std::atomic<device*> target_;
  quiesce_gate gate_;  // counts the children below
  mutable std::mutex mu_;  // parked_
  req_list parked_;
};

}  // namespace vnopfs::dev

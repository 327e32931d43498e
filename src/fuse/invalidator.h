// invalidator.h: drops kernel page-cache ranges of FUSE inodes (fuse_lowlevel_notify_inval_inode) from a
// thread of its own, so a FUSE worker never blocks on it unboundedly.
//
// Why: the kernel's invalidation waits for pages under writeback in the range, and their writeback is a
// FUSE_WRITE that only a worker thread can answer. A worker that invalidated in its own request path could
// wait for itself; with every worker doing so (xfstests generic/095: mmap writers and O_DIRECT writers on
// one file, kcache=writethrough) the daemon deadlocked. Here a worker hands the range over and waits at
// most `wait` for it: almost always the invalidation is done well within that (so the reply still follows
// it, which generic/451 needs); when pages of the range are under writeback the worker replies anyway and
// the invalidation completes once some worker has answered their FUSE_WRITE.
//
// Writeback-bound inodes: with mmap writers and O_DIRECT writers on one file (generic/095, fsx with mapped
// writes and -Z), the pages of the range are under writeback that the kernel holds back until the O_DIRECT
// write completes, and that completion is our reply: the invalidation cannot finish before the reply, and
// the wait always ran out. The first such timeout marks the inode; for kWritebackBoundFor after the last
// timeout, invalidations of that inode wait only kShortWait (the kernel invalidates after a synchronous
// O_DIRECT write itself; an asynchronous one's readers see the pages dropped as soon as the kernel lets
// the invalidation through). generic/095 idled in 200 ms timeouts, one O_DIRECT write after another: 171 s.
//
// Owner: the daemon (fs_daemon), from the FUSE session's creation to its unmount: start() after the
// session exists, stop() after the session loop ended and before fuse_session_unmount, join() after it.
// Locks: mu_ guards the queue and each request's state; notify is called with no lock held.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "src/fuse/frontend.h"

namespace vnopfs::fuse {

class page_invalidator {
 public:
  ~page_invalidator();  // stop() and join()
  // Starts the thread. false if it cannot be created (then invalidate() does nothing).
  bool start(fuse_session* se);
  static constexpr std::chrono::milliseconds kShortWait{1};
  static constexpr std::chrono::seconds kWritebackBoundFor{5};
  // Invalidates [off, off + len) of ino's pages (len 0: to the end), waiting at most `wait` for it (at most
  // kShortWait for a writeback-bound inode). A request of the same inode still queued is widened to cover
  // the range instead. Returns true if it completed within the wait.
  bool invalidate(fuse_ino_t ino, off_t off, off_t len, std::chrono::milliseconds wait);
  // No new work; queued ranges are dropped (no reader is left to see them); waiters are released.
  void stop();
  // Waits for the thread (after fuse_session_unmount, which ends any invalidation blocked in the kernel).
  void join();
  uint64_t done() const;
  uint64_t timeouts() const;        // waits that ran out, short ones included
  uint64_t long_timeouts() const;   // waits of the full `wait` that ran out (inode not yet writeback-bound)

 private:
  struct request {
    fuse_ino_t ino;
    off_t off, len;
    bool finished = false;  // [mu_]
  };
  void loop();

  fuse_session* se_ = nullptr;
  mutable std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<std::shared_ptr<request>> queue_;  // [mu_]
  bool stopping_ = false;                       // [mu_]
  uint64_t done_ = 0, timeouts_ = 0, long_timeouts_ = 0;  // [mu_]
  // Writeback-bound inodes and the time of their last timeout. [mu_]
  std::unordered_map<fuse_ino_t, std::chrono::steady_clock::time_point> writeback_bound_;
  std::thread thread_;
};

}  // namespace vnopfs::fuse

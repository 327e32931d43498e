// syncer.h: the syncer, one thread per mount (XNU's and FreeBSD's syncer). Every period it calls
// VFS_SYNC(mp, MNT_LAZY): metadata changed only in memory (an inode's size, block pointers, times, the
// superblock's counts) is copied into its buffers as delayed writes, and the cache's flusher writes those
// once they are older than the flush age. Without it such changes would reach the image only at fsync,
// sync, unmount or the vnode's last reference: a file written and closed, never fsync'd, would come back
// after a crash an hour later with size 0. With it, anything written more than period + flush age +
// the flusher's period before a crash is on the image (docs/durability.md).
//
// Owner: whoever mounted mp (the daemon); it starts the syncer after VFS_MOUNT succeeded and stops it
// before VFS_UNMOUNT. Locks: run_mu_ is held across each VFS_SYNC; hold() takes it, so a remount (which
// changes what a sync may write) never runs beside one. No other lock is held while VFS_SYNC runs.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "vnopfs/mount.h"

namespace vnopfs {

class vfs_syncer {
 public:
  // Starts the thread; the first sync runs one period after the start.
  vfs_syncer(mount* mp, uint32_t period_ms);
  ~vfs_syncer();  // stop()
  vfs_syncer(const vfs_syncer&) = delete;
  vfs_syncer& operator=(const vfs_syncer&) = delete;

  // Waits for a running sync, then joins the thread. Idempotent.
  void stop();
  // While the returned lock lives no sync runs (a remount takes it).
  std::unique_lock<std::mutex> hold() { return std::unique_lock<std::mutex>(run_mu_); }
  uint64_t runs() const;

 private:
  void loop();

  mount* const mp_;
  const uint32_t period_ms_;
  std::mutex run_mu_;               // held across each VFS_SYNC (hold())
  mutable std::mutex mu_;           // stop_, runs_
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t runs_ = 0;
  int last_err_ = 0;                // [run_mu_] the last sync's error: logged when it changes
  std::thread thread_;
};

}  // namespace vnopfs

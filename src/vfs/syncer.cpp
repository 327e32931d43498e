// syncer.cpp: the periodic VFS_SYNC(MNT_LAZY) of one mount (syncer.h).
#include "vnopfs/syncer.h"

#include <chrono>
#include <cstring>

#include "vnopfs/context.h"
#include "vnopfs/vnode.h"

namespace vnopfs {

vfs_syncer::vfs_syncer(mount* mp, uint32_t period_ms) : mp_(mp), period_ms_(period_ms ? period_ms : 1) {
  thread_ = std::thread([this] { loop(); });
}

vfs_syncer::~vfs_syncer() { stop(); }

void vfs_syncer::stop() {
  {
    std::lock_guard g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t vfs_syncer::runs() const {
  std::lock_guard g(mu_);
  return runs_;
}

void vfs_syncer::loop() {
  for (;;) {
    {
      std::unique_lock g(mu_);
      cv_.wait_for(g, std::chrono::milliseconds(period_ms_), [this] { return stop_; });
      if (stop_) return;
    }
    std::lock_guard run(run_mu_);
    int err = VFS_SYNC(mp_, MNT_LAZY, vfs_context::kernel());
    // A failing sync fails again every period (a read-only or damaged filesystem): one line per change.
    if (err != last_err_) {
      if (err)
        VLOG_WARN("syncer %s: writing back in-memory metadata failed: %s (errno %d)", mp_->mnt_from.c_str(),
                  std::strerror(err), err);
      else
        VLOG_INFO("syncer %s: writing back in-memory metadata works again", mp_->mnt_from.c_str());
      last_err_ = err;
    }
    std::lock_guard g(mu_);
    runs_++;
  }
}

}  // namespace vnopfs

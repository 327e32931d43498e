// daemon.h: one image served over FUSE: the device, VFS_MOUNT under the layer stack, the inode table, the
// FUSE session and the stats file; started in that order, torn down in reverse.
//
// Start-up convention (here, in src/config/options.h and in src/fuse/preflight.h): a step returns the
// message the user reads, "" on success, and prints nothing; main prints it once as "vnopfs: MESSAGE".
// What a step acquired is held by a member whose destructor releases it (the device, the VFS mount, the
// FUSE session, its kernel mount and signal handlers, the stats writer and link), so a failed step just
// returns and ~fs_daemon releases what was built, in reverse order.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "src/config/options.h"
#include "src/fuse/frontend.h"  // FUSE_USE_VERSION, then <fuse_lowlevel.h>
#include "src/fuse/invalidator.h"
#include "src/fuse/statsfile.h"
#include "src/dev/stack.h"
#include "src/dev/switch.h"
#include "vnopfs/device.h"
#include "vnopfs/mount.h"
#include "vnopfs/syncer.h"
#include "vnops/layers/layer.h"
#include "vnops/layers/stats.h"

namespace vnopfs::dev { class mirror_device; }

namespace vnopfs::daemon {

// What prepare() did.
struct prepared {
  int lock_fd = -1;   // the image's lock, held until the daemon is done
  std::vector<int> member_lock_fds;  // -o mirror=: the other members' locks, likewise
  bool bound = false;  // the image is served by a running vnopfs: the mountpoint became a bind mount of its
                       // filesystem (docs/mounting.md); nothing more to start
  std::string note;    // a line for the log, once the daemon has one ("" if none)
};

// A -o layers= list made ready to build: ',' between layers, names checked (known built-in names, or a
// module path, made absolute against the daemon's cwd at the time, or refused when relative_ok is false).
// "" or the error.
std::string normalize_layers(const std::string& in, std::string* out, bool relative_ok);

// Before anything is touched: every built-in layer name exists, stats=, log= and the paths of layer
// modules (-o layers=./x.so) become absolute (the daemon changes directory to /), the mountpoint and image pass preflight. An image whose previous daemon is
// still flushing is waited for (up to kLockWaitSeconds); an image a running vnopfs serves is bind-mounted
// from that daemon's mount.
constexpr double kLockWaitSeconds = 60;
std::string prepare(config::options* o, prepared* p);

class fs_daemon {
 public:
  explicit fs_daemon(const config::options& o) : o_(o) {}
  ~fs_daemon();
  fs_daemon(const fs_daemon&) = delete;
  fs_daemon& operator=(const fs_daemon&) = delete;

  // Opens the device, mounts the filesystem, mounts FUSE and starts the stats writer.
  std::string start();
  // Serves requests until the kernel unmounts or a signal (SIGTERM, SIGINT, SIGHUP) asks to stop, then
  // flushes everything and marks the filesystem clean. "" or the unmount's error. on_unmounting runs
  // first, when the session loop has ended, and before the last flush (it must not call back into us).
  std::string serve(const std::function<void()>& on_unmounting = {});
  // The started daemon's info line, to the log (and syslog).
  void log_mounted(const std::string& note) const;
  // For the control socket (control_client.h): the status fields, and remount-ro/-rw of the running
  // filesystem (the kernel's side of a remount is the mount helper's). Thread-safe against serve().
  nlohmann::json status_json();
  std::string remount(bool ro);
  // Runtime swap (docs/experiments.md, "Changing layers while mounted"): the VNOP layers (as -o layers=,
  // '+' or ',' between them; "" or "none": no layer) and the device layers over the backend (as
  // -o dev_layers=, above any partition layer the mount has). The new stack is built first (a bad spec
  // changes nothing); then new requests wait while those in progress finish (at most kSwapDrainMs), the
  // stack is switched, and they go on, on the new one. "" or the error (nothing changed). The old VNOP layers
  // stay alive until the unmount (a flusher's op may still run on them); old device layers are destroyed
  // once drained.
  std::string set_layers(const std::string& spec);
  std::string set_dev_layers(const std::string& spec);
  static constexpr int kSwapDrainMs = 10000;
  // -o mirror=: a member added while mounted (checked and locked like IMAGE; copied in the background, then
  // in service: src/dev/mirror.h add_member) or taken out for good. "" or the error (nothing changed).
  std::string mirror_add(const std::string& path);
  std::string mirror_remove(const std::string& path);

 private:
  std::string open_device();
  std::unique_ptr<dev::device> open_backend(const std::string& path, int* err) const;  // as -o backend= says
  std::string mount_fs();
  std::string mount_fuse();
  std::string start_stats();
  std::string unmount_fs();
  nlohmann::json stats_json();
  bool fs_rdonly();  // the filesystem is read-only now (mounted so, or remounted)
  nlohmann::json device_names() const;  // the device stack, bottom first (status, stats)
  nlohmann::json layers_names() const;  // the VNOP layers, bottom first (status; caller holds state_mu_)
  nlohmann::json mirror_json() const;   // -o mirror=: the members and their state (null without)
  std::string serving_mirror(dev::mirror_device** m) const;  // "" and *m, or why not (state_mu_ held)

  struct session_destroy {
    void operator()(fuse_session* se) const { fuse_session_destroy(se); }
  };
  // Each releases its resource when destroyed, if held.
  struct vfs_mount_hold {
    fs_daemon* d = nullptr;
    ~vfs_mount_hold() { if (d) (void)d->unmount_fs(); }
  };
  struct fuse_mount_hold {
    fuse_session* se = nullptr;
    bool signals = false;
    ~fuse_mount_hold() {
      if (signals) fuse_remove_signal_handlers(se);
      if (se) fuse_session_unmount(se);
    }
  };
  struct stats_link_hold {
    std::string path;
    ~stats_link_hold();
  };

  config::options o_;
  std::string dev_;           // the FUSE mount's device number "maj:min" (mountinfo), once mounted
  std::mutex state_mu_;       // serving_ and remounts
  bool serving_ = false;      // the session loop runs: remounts allowed
  struct lock_fds {  // flocks of members added with mirror_add: released after devices_ has stopped
    std::vector<int> fds;
    ~lock_fds();
  };
  lock_fds member_locks_;
  std::unique_ptr<dev::dev_stack> devices_;  // the backend and the device layers over it (-o dev_layers=)
  std::unique_ptr<dev::switch_device> dev_switch_;  // over devices_: the mount's device (set_dev_layers)
  size_t dev_fixed_ = 0;   // device layers a swap keeps: up to the last partition layer
  mutable std::mutex dev_mu_;  // devices_'s layers and the two specs below: changed by the swaps, read by
                               // status and the stats writer
  std::string layers_now_;      // the VNOP layers' spec now (-o layers=, then set_layers)
  std::string dev_layers_now_;  // the device layers' spec now (-o dev_layers=, then set_dev_layers)
  mount mnt_;
  std::unique_ptr<layer_stack> layers_;  // the current VNOP layers (guarded by state_mu_ once serving)
  std::vector<std::unique_ptr<layer_stack>> retired_layers_;  // replaced by set_layers: kept to the unmount
  std::atomic<stats_layer*> stats_{nullptr};  // -o stats=: the stats layer on top (read by the stats writer)
  std::unique_ptr<fuse::inode_table> inodes_;
  std::unique_ptr<vfs_syncer> syncer_;  // from mount_fs to unmount_fs (not on a read-only mount)
  bool vfs_mounted_ = false;
  vfs_mount_hold vfs_hold_;
  fuse::frontend fe_;
  std::unique_ptr<fuse_session, session_destroy> session_;
  fuse::page_invalidator inval_;  // after session_: stopped and joined before the session is destroyed
  fuse_mount_hold fuse_hold_;
  std::unique_ptr<fuse::stats_writer> stats_writer_;
  stats_link_hold stats_link_;
};

}  // namespace vnopfs::daemon

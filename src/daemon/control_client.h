// control_client.h: talking to running vnopfs daemons over their control sockets (src/daemon/control.h),
// and the mount table facts the tools and the daemon's start-up need to find one.
//
// Where: every daemon listens on /run/vnopfs/ctl/PID.sock (directory 0700, socket 0600, both root's). A
// tool finds the daemon of a mountpoint without touching the filesystem: the mountpoint's device number
// (maj:min, from /proc/self/mountinfo) is in each daemon's status, so bind mounts of it are found too; a
// mountpoint that is no longer mounted (a daemon still flushing) is found by the path the daemon mounted
// on, and an image by its absolute path.
//
// Protocol: one JSON object per line each way, in order, on one connection; every request names "op"
// and every reply has "ok" (true, or false with "error"). Unknown ops get ok=false, so new ops (layer
// swaps) can be added without breaking old tools.
//   {"op":"status"}      -> pid, image, mountpoint, dev ("maj:min"), state ("mounted" | "flushing"),
//                           ro, fstype, fsname, table, layers (the VNOP layers, bottom first),
//                           device_stack (bottom first), mirror
//   {"op":"wait"}        -> answered only when the daemon has unmounted the filesystem, flushed
//                           everything, marked the image clean (or not: "clean") and released its lock
//   {"op":"remount-ro"}  -> after a full flush the filesystem is read-only and the superblock clean
//   {"op":"remount-rw"}  -> writable again (refused if it was mounted read-only)
//   {"op":"layers","spec":"trace+stats"}  -> the VNOP layer stack replaced while mounted ("" or "none": no
//                           layer); module paths absolute. New requests wait while those in progress
//                           finish (at most 10 s, else refused and nothing changed)
//   {"op":"dev-layers","spec":"faults+record:log=/abs/log"} -> the device layers over the backend (and
//                           over any partition layer) replaced likewise, waiting for device requests
// Every function here returns "" or an error message; none throws.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vnopfs::control {

constexpr const char* kSocketDir = "/run/vnopfs/ctl";
std::string socket_path(int pid);

// One connection to a daemon.
class connection {
 public:
  connection() = default;
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  // timeout_s > 0 bounds the connect (a daemon whose listen backlog is full) and every later send and
  // receive (then they fail with EAGAIN): for the status poll of list_daemons, so that a daemon whose
  // control thread does not answer cannot hang every new mount. 0: block as long as it takes.
  std::string open(const std::string& socket_path, double timeout_s = 0);
  // Sends one request and reads its reply (blocking; "wait" blocks until the daemon is done).
  std::string call(const nlohmann::json& request, nlohmann::json* reply);
  // The two halves of call: a "wait" can be sent before the unmount that ends the daemon.
  std::string send(const nlohmann::json& request);
  std::string receive(nlohmann::json* reply);

 private:
  int fd_ = -1;
  std::string buf_;
};

struct daemon_ref {
  std::string socket;
  nlohmann::json status;
};
// Every daemon that answers "status" (sockets that refuse connections are stale: skipped).
std::vector<daemon_ref> list_daemons();

// Mount table (/proc/self/mountinfo) entries, in mount order.
struct mount_entry {
  std::string dev;  // "maj:min"
  std::string mountpoint;
  std::string options;  // the per-mount options (rw,nosuid,nodev,relatime...)
  std::string fstype;
  std::string source;
};
std::vector<mount_entry> mount_table();
// The device of the topmost mount at abs_path, or "".
std::string mounted_dev(const std::string& abs_path);

// The daemon serving abs_path (a mountpoint, mounted or, while its daemon flushes, no longer) or an image
// path; *out filled. Returns "" or why none was found.
std::string find_daemon(const std::string& abs_path, daemon_ref* out);

// Records the mount in /run/mount/utab (libmount's table of userspace options, under its lock) with
// helper=fuse.vnopfs: umount(8) then runs /sbin/umount.fuse.vnopfs, whatever the type. Without an entry
// umount(8) takes the type from statfs(2), which says plain "fuse", and runs no helper. A no-op unless root.
void record_utab(const std::string& source, const std::string& target);
// Removes that line again if it is still there (umount(8) removes it itself; fusermount3 -u does not).
void forget_utab(const std::string& source, const std::string& target);

}  // namespace vnopfs::control

// preflight.h: the checks the daemon makes before it touches anything: the image exists, is not mounted
// (by another vnopfs: its exclusive flock; by the kernel or another FUSE daemon: /proc/self/mountinfo,
// including loop devices whose backing file is the image; a block device: O_EXCL), and the mountpoint is an
// empty directory. Each failure is one message naming the path.
#pragma once

#include <string>

namespace vnopfs::fuse {

// Resolves *image to an absolute path, opens it and takes an exclusive flock (kept on *lock_fd for the
// daemon's life). Returns an empty string or the error message. While another vnopfs holds the lock and
// the image is mounted nowhere (that daemon is flushing after its unmount, or still starting), waits up to
// lock_wait_s for it, and says so in *waited ("" if it did not wait).
std::string preflight_image(std::string* image, bool rdonly, int* lock_fd, double lock_wait_s = 0,
                            std::string* waited = nullptr);
// Resolves *mountpoint and checks it is an empty directory.
std::string preflight_mountpoint(std::string* mountpoint);

// Where vnopfs-stat looks for the stats of a mountpoint: /run/vnopfs/<fnv1a64 of its absolute path>.json
// (a symlink to the stats= file).
std::string stats_link_path(const std::string& abs_mountpoint);

}  // namespace vnopfs::fuse

// preflight.h: the checks the daemon makes before it touches anything: the image exists, is not mounted
// (by another vnopfs: its exclusive flock; by the kernel or another FUSE daemon: /proc/self/mountinfo,
// including loop devices whose backing file is the image; a block device: O_EXCL), and the mountpoint is an
// empty directory. Each failure is one message naming the path.
#pragma once

#include <cstdint>
#include <string>

namespace vnopfs::fuse {

// The bytes of the image the mount will use (-o partition=N: that partition's; otherwise all of it).
struct image_range {
  uint64_t start = 0;
  uint64_t length = UINT64_MAX;
  bool whole() const { return start == 0 && length == UINT64_MAX; }
};

// Resolves *image to an absolute path, opens it and takes an exclusive flock (kept on *lock_fd for the
// daemon's life); for a partition (range not whole), a shared flock plus an OFD record lock on the range,
// so vnopfs daemons of disjoint partitions of one disk image do not exclude each other. The mountinfo check
// refuses a mount (direct, a loop device, or a loop partition from losetup -P) over bytes that overlap
// range, and allows one over a disjoint part of the image (another partition). Returns an empty string or the error message. While another vnopfs holds the lock and
// the image is mounted nowhere (that daemon is flushing after its unmount, or still starting), waits up to
// lock_wait_s for it, and says so in *waited ("" if it did not wait).
std::string preflight_image(std::string* image, bool rdonly, int* lock_fd, double lock_wait_s = 0,
                            std::string* waited = nullptr, const image_range& range = {});
// Resolves *mountpoint and checks it is an empty directory.
std::string preflight_mountpoint(std::string* mountpoint);

// Where vnopfs-stat looks for the stats of a mountpoint: /run/vnopfs/<fnv1a64 of its absolute path>.json
// (a symlink to the stats= file).
std::string stats_link_path(const std::string& abs_mountpoint);

}  // namespace vnopfs::fuse

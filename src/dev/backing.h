// backing.h: opening the backing store of the file and uring backends, and the checks every request to it
// passes before any I/O.
//
// Sector size (the alignment the backend enforces and reports):
// - block device: its logical sector size (ioctl BLKSSZGET), buffered or O_DIRECT;
// - regular file with O_DIRECT: st_blksize (4096 on ext4/xfs), which is a multiple of the logical sector
//   size of any disk under it, so aligned requests never hit EINVAL from the kernel;
// - regular file, buffered: 512 (nothing is enforced; 512 is the unit ext2 and the cache reason in).
// Device size: BLKGETSIZE64 for a block device, st_size at open for a file (fixed for the device's life).
#pragma once

#include <cstdint>
#include <string>

#include "vnopfs/device.h"

namespace vnopfs::dev {

struct backing {
  int fd = -1;
  uint64_t size = 0;
  uint32_t sector = 512;
  bool blockdev = false;
  bool direct = false;
};

// Opens `path` read-write (or read-only), with O_DIRECT if asked. If create_size != 0 and the file is
// missing, creates it with that size. Returns 0 or an errno (EINVAL: the filesystem refuses O_DIRECT).
int open_backing(const std::string& path, bool direct, bool readonly, uint64_t create_size, backing* out);

// The checks of submit, before I/O: op known, range inside the device (EIO otherwise), O_DIRECT alignment
// of offset, length and every iovec base and length (EINVAL otherwise), writes/unmaps on a read-only device
// (EROFS). Logs one line naming the device and the request on failure. Returns 0 or the errno.
int check_request(const io_request* r, const backing& b, bool readonly, const std::string& devname);

}  // namespace vnopfs::dev

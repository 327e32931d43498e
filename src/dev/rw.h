// rw.h: full-length positional vectored I/O on a file descriptor, shared by the file backend and tools.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

namespace vnopfs::dev {

// Transfers all of iov[0..n) at `off`, looping on short transfers and EINTR. Reads that reach end of file
// fill the rest with zeros (the device is larger than the file only for sparse tails). `rwf` goes to
// pwritev2 (RWF_DSYNC for FUA); 0 uses plain pwritev. Returns 0 or an errno; *done = bytes transferred
// before an error (all of them on success).
int full_preadv(int fd, const iovec* iov, int n, uint64_t off, size_t* done);
int full_pwritev(int fd, const iovec* iov, int n, uint64_t off, int rwf, size_t* done);

}  // namespace vnopfs::dev

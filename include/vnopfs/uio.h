// uio.h: a scatter/gather description of a transfer, after XNU bsd/sys/uio.h.
//
// A uio names a list of memory segments (iovecs), a file offset and the bytes still to move (resid).
// uio_rw says which way data moves relative to the memory the uio describes:
//   UIO_READ  : data is read *into* the uio's memory (VNOP_READ fills it from the file),
//   UIO_WRITE : data is taken *from* the uio's memory (VNOP_WRITE copies it to the file).
// UIO_USERSPACE / UIO_SYSSPACE are kept as XNU's vocabulary: memory from a FUSE request versus memory of
// our own (buffer-cache blocks, metadata). In user space both are plain pointers; the tag lets a policy
// tell them apart (XNU sends only user-space uios down the direct-I/O path).
//
// A uio never owns the memory it describes; it owns only its copy of the iovec list (inline for up to 8
// segments, so a FUSE request builds one without allocating).
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

#include <boost/container/small_vector.hpp>

namespace vnopfs {

enum uio_rw : uint8_t { UIO_READ = 0, UIO_WRITE = 1 };
enum uio_seg : uint8_t { UIO_USERSPACE = 0, UIO_SYSSPACE = 1 };

class uio {
 public:
  uio(off_t offset, uio_rw rw, uio_seg seg = UIO_USERSPACE) : offset_(offset), rw_(rw), seg_(seg) {}
  // One-segment convenience.
  uio(void* base, size_t len, off_t offset, uio_rw rw, uio_seg seg = UIO_SYSSPACE);

  // Appends a segment; zero-length segments are kept but never moved into.
  void addiov(void* base, size_t len);

  off_t offset() const { return offset_; }
  size_t resid() const { return resid_; }
  uio_rw rw() const { return rw_; }
  uio_seg segflg() const { return seg_; }
  size_t iovcnt() const { return iov_.size() - cur_; }
  // Remaining segments; the first starts skip() bytes into iov()[0].
  const iovec* iov() const { return iov_.data() + cur_; }
  size_t skip() const { return cur_off_; }

  void setoffset(off_t off) { offset_ = off; }
  // Clips resid to n (n <= resid); the clipped bytes come back with setresid. Used for EOF clipping and
  // short writes: segments are not changed, so moves simply stop earlier.
  void setresid(size_t n);

  // Advances offset and consumes n bytes of the segments without copying (n <= resid).
  void update(size_t n);

  // A snapshot for IO_UNIT rollback: restore() puts offset, resid and position back.
  struct mark { off_t offset; size_t resid; size_t cur; size_t cur_off; size_t total; };
  mark save() const { return {offset_, resid_, cur_, cur_off_, total_}; }
  void restore(const mark& m);

 private:
  friend int uiomove(void* cp, size_t n, uio* uio);
  boost::container::small_vector<iovec, 8> iov_;
  size_t cur_ = 0;      // index of the first segment not fully consumed
  size_t cur_off_ = 0;  // bytes consumed from iov_[cur_]
  size_t total_ = 0;    // sum of segment lengths not yet consumed (>= resid_)
  off_t offset_;
  size_t resid_ = 0;
  uio_rw rw_;
  uio_seg seg_;
};

// Moves min(n, resid) bytes between cp and the uio, in the direction of uio->rw(): UIO_READ copies cp into
// the uio's memory, UIO_WRITE copies the uio's memory into cp. Advances offset and resid by exactly what
// moved, crossing segment boundaries; a partial move leaves the uio positioned mid-segment. Returns 0
// (user-space memory cannot fault here: it was already copied in by the FUSE request).
int uiomove(void* cp, size_t n, uio* uio);

// Zero-fills min(n, resid) bytes of the uio's memory (UIO_READ only) and advances it: holes read as zeros.
int uiozero(size_t n, uio* uio);

}  // namespace vnopfs

// uio.cpp: scatter/gather moves. The iovec list is copied in; consumption moves a (segment, offset)
// cursor, so a partial move leaves the uio exactly mid-segment and restore() can rewind it for IO_UNIT.
#include "vnopfs/uio.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace vnopfs {

uio::uio(void* base, size_t len, off_t offset, uio_rw rw, uio_seg seg) : offset_(offset), rw_(rw), seg_(seg) {
  addiov(base, len);
}

void uio::addiov(void* base, size_t len) {
  iov_.push_back({base, len});
  total_ += len;
  resid_ += len;
}

void uio::setresid(size_t n) {
  assert(n <= total_);
  resid_ = n;
}

void uio::update(size_t n) {
  assert(n <= resid_);
  resid_ -= n;
  total_ -= n;
  offset_ += static_cast<off_t>(n);
  while (n > 0) {
    size_t left = iov_[cur_].iov_len - cur_off_;
    if (n < left) {
      cur_off_ += n;
      return;
    }
    n -= left;
    ++cur_;
    cur_off_ = 0;
  }
  // Skip exhausted zero-length segments so iov() starts at real memory.
  while (cur_ < iov_.size() && iov_[cur_].iov_len == cur_off_ && resid_ > 0) {
    ++cur_;
    cur_off_ = 0;
  }
}

void uio::restore(const mark& m) {
  offset_ = m.offset;
  resid_ = m.resid;
  cur_ = m.cur;
  cur_off_ = m.cur_off;
  total_ = m.total;
}

int uiomove(void* cp, size_t n, uio* u) {
  if (n > u->resid_) n = u->resid_;
  char* p = static_cast<char*>(cp);
  size_t moved = 0;
  size_t seg = u->cur_;
  size_t segoff = u->cur_off_;
  while (moved < n) {
    assert(seg < u->iov_.size());
    const iovec& v = u->iov_[seg];
    size_t avail = v.iov_len - segoff;
    if (avail == 0) {
      ++seg;
      segoff = 0;
      continue;
    }
    size_t chunk = std::min(avail, n - moved);
    char* mem = static_cast<char*>(v.iov_base) + segoff;
    if (u->rw_ == UIO_READ) {
      std::memcpy(mem, p + moved, chunk);
    } else {
      std::memcpy(p + moved, mem, chunk);
    }
    moved += chunk;
    segoff += chunk;
  }
  u->update(moved);
  return 0;
}

int uiozero(size_t n, uio* u) {
  assert(u->rw() == UIO_READ);
  if (n > u->resid()) n = u->resid();
  static const char zeros[4096] = {};
  // uiomove copies *from* cp into the uio for UIO_READ: feed it zeros a page at a time.
  while (n > 0) {
    size_t chunk = std::min(n, sizeof zeros);
    uiomove(const_cast<char*>(zeros), chunk, u);
    n -= chunk;
  }
  return 0;
}

}  // namespace vnopfs

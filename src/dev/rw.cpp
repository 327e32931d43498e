// rw.cpp: loops of preadv/pwritev until the whole request is moved.
#include "src/dev/rw.h"

#include <cerrno>
#include <cstring>

#include <boost/container/small_vector.hpp>

namespace vnopfs::dev {

// Advances an iovec array past `n` bytes (a short transfer); returns the new first index.
static int advance(iovec* iov, int cnt, int first, size_t n) {
  while (first < cnt && n >= iov[first].iov_len) {
    n -= iov[first].iov_len;
    first++;
  }
  if (first < cnt && n) {
    iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + n;
    iov[first].iov_len -= n;
  }
  return first;
}

static size_t total(const iovec* iov, int n) {
  size_t t = 0;
  for (int i = 0; i < n; i++) t += iov[i].iov_len;
  return t;
}

int full_preadv(int fd, const iovec* iov0, int n, uint64_t off, size_t* done) {
  *done = 0;
  size_t want = total(iov0, n);
  ssize_t r = ::preadv(fd, iov0, n, off_t(off));  // the common case copies nothing
  if (r >= 0 && size_t(r) == want) {
    *done = want;
    return 0;
  }
  boost::container::small_vector<iovec, 16> iov(iov0, iov0 + n);
  int first = 0;
  for (;;) {
    if (r < 0) {
      if (errno != EINTR) return errno;
    } else if (r == 0) {
      // End of file: the rest of the device reads as zeros.
      for (int i = first; i < n; i++) memset(iov[i].iov_base, 0, iov[i].iov_len);
      *done = want;
      return 0;
    } else {
      *done += size_t(r);
      first = advance(iov.data(), n, first, size_t(r));
      if (first == n) return 0;
    }
    r = ::preadv(fd, iov.data() + first, n - first, off_t(off + *done));
  }
}

int full_pwritev(int fd, const iovec* iov0, int n, uint64_t off, int rwf, size_t* done) {
  *done = 0;
  size_t want = total(iov0, n);
  auto issue = [&](const iovec* v, int c, uint64_t o) {
    return rwf ? ::pwritev2(fd, v, c, off_t(o), rwf) : ::pwritev(fd, v, c, off_t(o));
  };
  ssize_t r = issue(iov0, n, off);
  if (r >= 0 && size_t(r) == want) {
    *done = want;
    return 0;
  }
  boost::container::small_vector<iovec, 16> iov(iov0, iov0 + n);
  int first = 0;
  for (;;) {
    if (r < 0) {
      if (errno != EINTR) return errno;
    } else if (r == 0 && want) {
      return EIO;  // no progress on a non-empty write: the device is full or gone
    } else {
      *done += size_t(r);
      first = advance(iov.data(), n, first, size_t(r));
      if (first == n) return 0;
    }
    r = issue(iov.data() + first, n - first, off + *done);
  }
}

}  // namespace vnopfs::dev

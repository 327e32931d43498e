// backing.cpp: open a file or block device for a backend; validate requests against it.
#include "src/dev/backing.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstring>

#include "src/dev/log.h"

namespace vnopfs::dev {

static int create_file(const std::string& path, uint64_t size) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno == EEXIST ? 0 : errno;  // raced with another creator: open it as it is
  int err = ::ftruncate(fd, off_t(size)) < 0 ? errno : 0;
  ::close(fd);
  return err;
}

int open_backing(const std::string& path, bool direct, bool readonly, uint64_t create_size, backing* out) {
  if (create_size && !readonly) {
    struct stat st;
    if (::stat(path.c_str(), &st) < 0 && errno == ENOENT) {
      if (int err = create_file(path, create_size)) return err;
    }
  }
  int flags = (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (direct ? O_DIRECT : 0);
  int fd = ::open(path.c_str(), flags);
  if (fd < 0) {
    int err = errno;
    DEV_LOG("open %s%s: %s", path.c_str(), direct ? " (O_DIRECT)" : "", strerror(err));
    return err;
  }
  struct stat st;
  if (::fstat(fd, &st) < 0) {
    int err = errno;
    ::close(fd);
    return err;
  }
  backing b;
  b.fd = fd;
  b.direct = direct;
  if (S_ISBLK(st.st_mode)) {
    b.blockdev = true;
    uint64_t bytes = 0;
    int ssz = 512;
    if (::ioctl(fd, BLKGETSIZE64, &bytes) < 0 || ::ioctl(fd, BLKSSZGET, &ssz) < 0) {
      int err = errno;
      ::close(fd);
      return err;
    }
    b.size = bytes;
    b.sector = uint32_t(ssz);
  } else if (S_ISREG(st.st_mode)) {
    b.size = uint64_t(st.st_size);
    b.sector = direct ? uint32_t(st.st_blksize > 512 ? st.st_blksize : 512) : 512;
  } else {
    ::close(fd);
    DEV_LOG("open %s: neither a regular file nor a block device", path.c_str());
    return EINVAL;
  }
  *out = b;
  return 0;
}

static bool aligned(uint64_t v, uint32_t a) { return v % a == 0; }

int check_request(const io_request* r, const backing& b, bool readonly, const std::string& devname) {
  const char* op = io_op_name(r->op);
  switch (r->op) {
    case io_op::flush: return 0;
    case io_op::read: case io_op::write: case io_op::unmap: break;
    default:
      DEV_LOG("%s: unknown op %d", devname.c_str(), int(r->op));
      return EINVAL;
  }
  if (readonly && r->op != io_op::read) {
    DEV_LOG("%s: %s on a read-only device", devname.c_str(), op);
    return EROFS;
  }
  if (r->offset > b.size || r->length > b.size - r->offset) {
    DEV_LOG("%s: %s [%" PRIu64 ", +%" PRIu64 ") beyond device size %" PRIu64, devname.c_str(), op, r->offset,
            r->length, b.size);
    return EIO;
  }
  if (!b.direct || r->op == io_op::unmap) return 0;
  bool ok = aligned(r->offset, b.sector) && aligned(r->length, b.sector);
  for (const iovec& v : r->iov) ok = ok && aligned(uintptr_t(v.iov_base), b.sector) && aligned(v.iov_len, b.sector);
  if (!ok) {
    DEV_LOG("%s: O_DIRECT %s [%" PRIu64 ", +%" PRIu64 ") with %zu iovecs not aligned to %u bytes: EINVAL",
            devname.c_str(), op, r->offset, r->length, r->iov.size(), b.sector);
    return EINVAL;
  }
  return 0;
}

}  // namespace vnopfs::dev

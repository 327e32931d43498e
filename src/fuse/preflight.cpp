// preflight.cpp: image and mountpoint checks before mounting (see preflight.h).
#include "src/fuse/preflight.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <time.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace vnopfs::fuse {

namespace {

std::string realpath_of(const std::string& p, int* err) {
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf) == nullptr) {
    *err = errno;
    return {};
  }
  *err = 0;
  return buf;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (size_t k = 1; k <= 3; k++) {
        if (i + k >= s.size() || s[i + k] < '0' || s[i + k] > '7') { ok = false; break; }
        v = v * 8 + (s[i + k] - '0');
      }
      if (ok) { out += static_cast<char>(v); i += 3; continue; }
    }
    out += s[i];
  }
  return out;
}

std::string loop_backing_file(const std::string& dev) {
  // /dev/loop3 -> /sys/block/loop3/loop/backing_file
  auto slash = dev.rfind('/');
  std::string name = dev.substr(slash == std::string::npos ? 0 : slash + 1);
  std::ifstream in("/sys/block/" + name + "/loop/backing_file");
  std::string line;
  if (!std::getline(in, line)) return {};
  const std::string deleted = " (deleted)";
  if (line.size() > deleted.size() && line.compare(line.size() - deleted.size(), deleted.size(), deleted) == 0)
    return {};
  return line;
}

uint64_t sysfs_u64(const std::string& path, bool* ok) {
  std::ifstream in(path);
  unsigned long long v = 0;
  *ok = static_cast<bool>(in >> v);
  return v;
}

bool overlaps(uint64_t s1, uint64_t l1, uint64_t s2, uint64_t l2) {
  return l1 && l2 && s1 < s2 + l2 && s2 < s1 + l1;  // every range here ends at or before UINT64_MAX
}

// The bytes of its backing file that a loop device (/dev/loop3) or a partition of one (/dev/loop3p2, from
// losetup -P) covers: the loop's offset and sizelimit, plus the partition's start and size (sectors of 512
// bytes in sysfs). false if sysfs does not say.
bool loop_range(const std::string& source, std::string* loopdev, uint64_t* start, uint64_t* length) {
  std::string name = source.substr(5);  // "loop3p2"
  size_t p = name.find('p', 4);
  std::string loop = p == std::string::npos ? name : name.substr(0, p);
  bool ok1, ok2;
  uint64_t off = sysfs_u64("/sys/block/" + loop + "/loop/offset", &ok1);
  uint64_t lim = sysfs_u64("/sys/block/" + loop + "/loop/sizelimit", &ok2);
  if (!ok1 || !ok2) return false;
  *loopdev = "/dev/" + loop;
  *start = off;
  *length = lim ? lim : UINT64_MAX - off;
  if (p == std::string::npos) return true;
  uint64_t ps = sysfs_u64("/sys/block/" + loop + "/" + name + "/start", &ok1);
  uint64_t pl = sysfs_u64("/sys/block/" + loop + "/" + name + "/size", &ok2);
  if (!ok1 || !ok2) return false;
  *start = off + ps * 512;
  *length = pl * 512;
  return true;
}

// The mountpoint where bytes [start, start + length) of `image` are mounted (the image itself, or a loop
// device or a loop partition over an overlapping range of it), or empty. A loop device over another,
// disjoint, part of the image (another partition of the same disk image) does not count.
std::string mounted_at(const std::string& image, const struct stat& ist, uint64_t start, uint64_t length) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string id, parent, majmin, root, mnt, f;
    ss >> id >> parent >> majmin >> root >> mnt;
    while (ss >> f && f != "-") {}
    std::string fstype, source;
    ss >> fstype >> source;
    source = unescape(source);
    mnt = unescape(mnt);
    if (source == image) return mnt;
    if (source.rfind("/dev/loop", 0) == 0) {
      std::string loopdev;
      uint64_t ls = 0, ll = UINT64_MAX;
      if (!loop_range(source, &loopdev, &ls, &ll)) loopdev = source, ls = 0, ll = UINT64_MAX;
      std::string back = loop_backing_file(loopdev);
      if (back.empty()) continue;
      struct stat bst;
      if (back == image || (::stat(back.c_str(), &bst) == 0 && bst.st_dev == ist.st_dev && bst.st_ino == ist.st_ino)) {
        if (!overlaps(start, length, ls, ll)) continue;
        return mnt + " (through " + source + ", bytes [" + std::to_string(ls) + ", +" +
               (ll == UINT64_MAX - ls ? std::string("end") : std::to_string(ll)) + ") of the image)";
      }
    }
  }
  return {};
}

}  // namespace

// The image's lock: an exclusive flock for the whole image; for a byte range (a partition), a shared flock
// (which still conflicts with a whole-image vnopfs, and with `flock IMAGE`) plus an OFD record lock on the
// range, which conflicts only with a vnopfs of an overlapping range. 0 or the errno (EWOULDBLOCK: held).
int lock_image(int fd, bool rdonly, const image_range& r) {
  if (r.whole()) return ::flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : errno;
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0) return errno;
  struct flock fl{};
  fl.l_type = rdonly ? F_RDLCK : F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(r.start);
  fl.l_len = static_cast<off_t>(r.length);
  if (::fcntl(fd, F_OFD_SETLK, &fl) == 0) return 0;
  int e = errno == EAGAIN || errno == EACCES ? EWOULDBLOCK : errno;
  (void)::flock(fd, LOCK_UN);
  return e;
}

std::string preflight_image(std::string* image, bool rdonly, int* lock_fd, double lock_wait_s, std::string* waited,
                            const image_range& range) {
  int err;
  std::string abs = realpath_of(*image, &err);
  if (abs.empty()) return "image '" + *image + "': " + std::strerror(err);
  struct stat st;
  if (::stat(abs.c_str(), &st) != 0) return "image '" + *image + "': " + std::strerror(errno);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
    return "image '" + *image + "': not a regular file or block device";
  int flags = (rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  if (S_ISBLK(st.st_mode)) flags |= O_EXCL;  // EBUSY while the kernel has it mounted
  int fd = ::open(abs.c_str(), flags);
  if (fd < 0) {
    if (errno == EBUSY) return "image '" + *image + "' is in use (mounted by the kernel?)";
    return "image '" + *image + "': " + std::strerror(errno);
  }
  // The previous daemon of this image may still be flushing after its unmount (the kernel lets go before
  // the daemon has written everything): wait for it, a bounded time, polling, while nothing mounts it.
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  bool waited_any = false;
  for (;;) {
    int e = lock_image(fd, rdonly, range);
    if (e == 0) break;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double el = static_cast<double>(now.tv_sec - t0.tv_sec) + static_cast<double>(now.tv_nsec - t0.tv_nsec) / 1e9;
    std::string where = e == EWOULDBLOCK ? mounted_at(abs, st, range.start, range.length) : std::string();
    if (e != EWOULDBLOCK || !where.empty() || el >= lock_wait_s) {
      ::close(fd);
      if (e != EWOULDBLOCK) return "image '" + *image + "': flock: " + std::strerror(e);
      return "image '" + *image + "' is already mounted by another vnopfs" + (where.empty() ? "" : " on " + where) +
             " (it holds the image's lock" + (waited_any ? ", still after " + std::to_string(static_cast<int>(el)) + " s" : "") + ")";
    }
    waited_any = true;
    ::usleep(20000);
  }
  if (waited_any && waited) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(now.tv_sec - t0.tv_sec) +
                  static_cast<double>(now.tv_nsec - t0.tv_nsec) / 1e9);
    *waited = "waited " + std::string(buf) + " s for the previous vnopfs of " + abs + " to finish and release it";
  }
  std::string where = mounted_at(abs, st, range.start, range.length);
  if (!where.empty()) {
    ::close(fd);
    return "image '" + *image + "' is already mounted on " + where;
  }
  *image = abs;
  *lock_fd = fd;
  return {};
}

std::string preflight_mountpoint(std::string* mountpoint) {
  int err;
  std::string abs = realpath_of(*mountpoint, &err);
  if (abs.empty()) return "mountpoint '" + *mountpoint + "': " + std::strerror(err);
  struct stat st;
  if (::stat(abs.c_str(), &st) != 0) return "mountpoint '" + *mountpoint + "': " + std::strerror(errno);
  if (!S_ISDIR(st.st_mode)) return "mountpoint '" + *mountpoint + "' is not a directory";
  DIR* d = ::opendir(abs.c_str());
  if (!d) return "mountpoint '" + *mountpoint + "': " + std::strerror(errno);
  bool empty = true;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) { empty = false; break; }
  }
  ::closedir(d);
  if (!empty) return "mountpoint '" + *mountpoint + "' is not an empty directory";
  *mountpoint = abs;
  return {};
}

std::string stats_link_path(const std::string& abs_mountpoint) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : abs_mountpoint) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "/run/vnopfs/%016llx.json", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace vnopfs::fuse

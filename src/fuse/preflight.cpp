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

// The mountpoint where `image` is mounted (directly or through a loop device), or empty.
std::string mounted_at(const std::string& image, const struct stat& ist) {
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
      std::string back = loop_backing_file(source);
      if (back.empty()) continue;
      struct stat bst;
      if (back == image || (::stat(back.c_str(), &bst) == 0 && bst.st_dev == ist.st_dev && bst.st_ino == ist.st_ino))
        return mnt + " (through " + source + ")";
    }
  }
  return {};
}

}  // namespace

std::string preflight_image(std::string* image, bool rdonly, int* lock_fd, double lock_wait_s, std::string* waited) {
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
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) break;
    int e = errno;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double el = static_cast<double>(now.tv_sec - t0.tv_sec) + static_cast<double>(now.tv_nsec - t0.tv_nsec) / 1e9;
    std::string where = e == EWOULDBLOCK ? mounted_at(abs, st) : std::string();
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
  std::string where = mounted_at(abs, st);
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

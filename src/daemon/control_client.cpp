// control_client.cpp: see control_client.h.
#include "src/daemon/control_client.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace vnopfs::control {

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
        s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
      continue;
    }
    out += s[i];
  }
  return out;
}

}  // namespace

std::string socket_path(int pid) { return std::string(kSocketDir) + "/" + std::to_string(pid) + ".sock"; }

connection::~connection() {
  if (fd_ >= 0) ::close(fd_);
}

std::string connection::open(const std::string& path, double timeout_s) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return "socket path too long: " + path;
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return std::string("socket: ") + std::strerror(errno);
  if (timeout_s > 0) {
    timeval tv{static_cast<time_t>(timeout_s),
               static_cast<suseconds_t>((timeout_s - static_cast<time_t>(timeout_s)) * 1e6)};
    (void)::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // also bounds connect (AF_UNIX)
  }
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    int e = errno;
    ::close(fd_);
    fd_ = -1;
    return path + ": " + std::strerror(e);
  }
  return {};
}

std::string connection::call(const nlohmann::json& request, nlohmann::json* reply) {
  std::string e = send(request);
  return e.empty() ? receive(reply) : e;
}

std::string connection::send(const nlohmann::json& request) {
  if (fd_ < 0) return "not connected";
  std::string line = request.dump() + "\n";
  for (size_t off = 0; off < line.size();) {
    ssize_t n = ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::string("send: ") + std::strerror(errno);
    off += static_cast<size_t>(n);
  }
  return {};
}

std::string connection::receive(nlohmann::json* reply) {
  if (fd_ < 0) return "not connected";
  size_t nl;
  while ((nl = buf_.find('\n')) == std::string::npos) {
    char b[4096];
    ssize_t n = ::recv(fd_, b, sizeof b, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::string("recv: ") + std::strerror(errno);
    if (n == 0) return "the daemon closed the connection";
    buf_.append(b, static_cast<size_t>(n));
  }
  std::string r = buf_.substr(0, nl);
  buf_.erase(0, nl + 1);
  *reply = nlohmann::json::parse(r, nullptr, false);
  if (reply->is_discarded() || !reply->is_object()) return "the daemon's reply is not a JSON object";
  return {};
}

std::vector<daemon_ref> list_daemons() {
  std::vector<daemon_ref> out;
  DIR* d = ::opendir(kSocketDir);
  if (!d) return out;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 5 && n.compare(n.size() - 5, 5, ".sock") == 0) names.push_back(n);
  }
  ::closedir(d);
  for (auto& n : names) {
    daemon_ref r;
    r.socket = std::string(kSocketDir) + "/" + n;
    connection c;
    if (!c.open(r.socket, 5).empty()) continue;  // a stuck daemon is skipped, not waited for
    if (!c.call({{"op", "status"}}, &r.status).empty() || !r.status.value("ok", false)) continue;
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<mount_entry> mount_table() {
  std::vector<mount_entry> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string id, parent, root, f;
    mount_entry m;
    ss >> id >> parent >> m.dev >> root >> m.mountpoint >> m.options;
    while (ss >> f && f != "-") {}
    ss >> m.fstype >> m.source;
    m.mountpoint = unescape(m.mountpoint);
    m.source = unescape(m.source);
    out.push_back(std::move(m));
  }
  return out;
}

std::string mounted_dev(const std::string& abs_path) {
  std::string dev;
  for (auto& m : mount_table())
    if (m.mountpoint == abs_path) dev = m.dev;
  return dev;
}

std::string find_daemon(const std::string& abs_path, daemon_ref* out) {
  std::string dev = mounted_dev(abs_path);
  auto all = list_daemons();
  for (auto& r : all)
    if (!dev.empty() && r.status.value("dev", "") == dev) return *out = r, std::string();
  for (auto& r : all)
    if (r.status.value("image", "") == abs_path) return *out = r, std::string();
  // Not mounted any more (or not at this device): the daemon that mounted this path, if still running.
  for (auto& r : all)
    if (r.status.value("mountpoint", "") == abs_path && (dev.empty() || r.status.value("state", "") != "mounted"))
      return *out = r, std::string();
  return "no vnopfs daemon serves " + abs_path;
}

namespace {

// mountinfo-style escaping (space, tab, newline, backslash as \ooo), as utab has it.
std::string mangle(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\\') {
      char b[5];
      std::snprintf(b, sizeof b, "\\%03o", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace

std::string utab_line(const std::string& source, const std::string& target) {
  return "SRC=" + mangle(source) + " TARGET=" + mangle(target) + " ROOT=/ OPTS=helper=fuse.vnopfs";
}

void forget_utab(const std::string& source, const std::string& target) {
  if (::geteuid() != 0) return;
  int lk = ::open("/run/mount/utab.lock", O_RDWR | O_CLOEXEC);
  if (lk < 0) return;
  (void)::flock(lk, LOCK_EX);
  std::ifstream in("/run/mount/utab");
  std::string line, keep, ours = utab_line(source, target);
  bool found = false;
  while (std::getline(in, line)) {
    if (line == ours) found = true;
    else keep += line + "\n";
  }
  if (found) {
    // As libmount does: a new file renamed over the old one, under the lock.
    int fd = ::open("/run/mount/utab.vnopfs.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      bool ok = ::write(fd, keep.data(), keep.size()) == static_cast<ssize_t>(keep.size());
      ::close(fd);
      if (!ok || ::rename("/run/mount/utab.vnopfs.tmp", "/run/mount/utab") != 0) ::unlink("/run/mount/utab.vnopfs.tmp");
    }
  }
  ::close(lk);
}

void record_utab(const std::string& source, const std::string& target) {
  if (::geteuid() != 0) return;
  ::mkdir("/run/mount", 0755);
  int lk = ::open("/run/mount/utab.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lk >= 0) (void)::flock(lk, LOCK_EX);
  int fd = ::open("/run/mount/utab", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) {
    std::string line = utab_line(source, target) + "\n";
    (void)!::write(fd, line.data(), line.size());
    ::close(fd);
  }
  if (lk >= 0) ::close(lk);
}

}  // namespace vnopfs::control

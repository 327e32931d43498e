// control.cpp: see control.h.
#include "src/daemon/control.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>

#include "src/daemon/control_client.h"

namespace vnopfs::daemon {

namespace {

void send_line(int fd, const nlohmann::json& j) {
  std::string s = j.dump() + "\n";
  for (size_t off = 0; off < s.size();) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the peer went away: nothing to tell it
    off += static_cast<size_t>(n);
  }
}

nlohmann::json error_reply(const std::string& e) { return {{"ok", false}, {"error", e}}; }

// Sockets of daemons that died without unlinking theirs (SIGKILL, a crash): PID.sock whose process no
// longer exists. A pid reused by another process keeps its file until that one exits: harmless.
void remove_stale_sockets() {
  DIR* d = ::opendir(control::kSocketDir);
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || end == e->d_name || std::strcmp(end, ".sock") != 0) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
      (void)::unlinkat(::dirfd(d), e->d_name, 0);
  }
  ::closedir(d);
}

}  // namespace

control_server::~control_server() {
  if (thread_.joinable()) finish(false);
}

std::string control_server::start(control_hooks hooks) {
  {
    std::lock_guard g(hooks_mu_);
    hooks_ = std::move(hooks);
    attached_ = true;
  }
  ::mkdir("/run/vnopfs", 0755);
  ::mkdir(control::kSocketDir, 0700);
  struct stat st;
  if (::lstat(control::kSocketDir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid())
    return std::string(control::kSocketDir) + " is not a directory of ours";
  (void)::chmod(control::kSocketDir, 0700);
  remove_stale_sockets();
  path_ = control::socket_path(::getpid());
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path_.c_str(), path_.size() + 1);
  ::unlink(path_.c_str());  // a socket of a dead daemon whose pid we now have
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return std::string("control socket: ") + std::strerror(errno);
  mode_t old = ::umask(0177);
  int rc = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::umask(old);
  if (rc != 0 || ::chmod(path_.c_str(), 0600) != 0 || ::listen(listen_fd_, 16) != 0) {
    int e = errno;
    ::close(listen_fd_);
    listen_fd_ = -1;
    return "control socket " + path_ + ": " + std::strerror(e);
  }
  if (::pipe2(wake_, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  thread_ = std::thread([this] { loop(); });
  return {};
}

void control_server::detach_hooks() {
  std::lock_guard g(hooks_mu_);
  if (attached_ && hooks_.status) last_status_ = hooks_.status();
  last_status_["state"] = "flushing";
  attached_ = false;
  hooks_ = {};
}

void control_server::finish(bool clean) {
  detach_hooks();
  if (!thread_.joinable()) return;
  clean_ = clean;
  char c = 1;
  while (::write(wake_[1], &c, 1) < 0 && errno == EINTR) {}
  thread_.join();
  ::close(wake_[0]);
  ::close(wake_[1]);
}

nlohmann::json control_server::handle(int fd, const nlohmann::json& req) {
  std::string op = req.is_object() ? req.value("op", "") : "";
  std::lock_guard g(hooks_mu_);
  if (op == "status") {
    nlohmann::json j = attached_ ? hooks_.status() : last_status_;
    if (attached_) last_status_ = j;
    j["ok"] = true;
    return j;
  }
  if (op == "wait") {
    waiters_.push_back(fd);
    return nullptr;  // answered by finish()
  }
  if (op == "remount-ro" || op == "remount-rw") {
    if (!attached_) return error_reply("the daemon is unmounting");
    std::string e = hooks_.remount(op == "remount-ro");
    return e.empty() ? nlohmann::json{{"ok", true}} : error_reply(e);
  }
  // Ops that take one string argument and answer "" or an error.
  const std::pair<const char*, const std::function<std::string(const std::string&)>*> one_arg[] = {
      {"spec", &hooks_.set_layers}, {"spec", &hooks_.set_dev_layers},
      {"path", &hooks_.mirror_add}, {"path", &hooks_.mirror_remove}};
  const char* names[] = {"layers", "dev-layers", "mirror-add", "mirror-remove"};
  for (size_t i = 0; i < 4; i++) {
    if (op != names[i]) continue;
    auto [field, hook] = one_arg[i];
    if (!attached_) return error_reply("the daemon is unmounting");
    if (!req.contains(field) || !req[field].is_string())
      return error_reply("op '" + op + "' needs a string '" + field + "'");
    if (!*hook) return error_reply("op '" + op + "' is not served here");
    std::string e = (*hook)(req[field].get<std::string>());
    return e.empty() ? nlohmann::json{{"ok", true}} : error_reply(e);
  }
  return error_reply("unknown op '" + op + "'");
}

void control_server::loop() {
  std::map<int, std::string> clients;  // fd -> bytes read, not yet a whole line
  auto drop = [&](int fd) {
    clients.erase(fd);
    for (auto it = waiters_.begin(); it != waiters_.end(); ++it)
      if (*it == fd) { waiters_.erase(it); break; }
    ::close(fd);
  };
  for (;;) {
    std::vector<pollfd> p{{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    for (auto& [fd, b] : clients) p.push_back({fd, POLLIN, 0});
    if (::poll(p.data(), p.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[1].revents) break;
    if (p[0].revents & POLLIN) {
      int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0) clients[c];
    }
    for (size_t i = 2; i < p.size(); i++) {
      if (!p[i].revents) continue;
      int fd = p[i].fd;
      char b[4096];
      ssize_t n = ::recv(fd, b, sizeof b, 0);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        drop(fd);
        continue;
      }
      std::string& buf = clients[fd];
      buf.append(b, static_cast<size_t>(n));
      if (buf.size() > (1u << 20)) { drop(fd); continue; }  // no request is that long
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        auto req = nlohmann::json::parse(buf.substr(0, nl), nullptr, false);
        buf.erase(0, nl + 1);
        nlohmann::json r = req.is_discarded() ? error_reply("not a JSON line") : handle(fd, req);
        if (!r.is_null()) send_line(fd, r);
      }
    }
  }
  ::close(listen_fd_);
  listen_fd_ = -1;
  ::unlink(path_.c_str());
  for (int fd : waiters_) send_line(fd, {{"ok", true}, {"clean", clean_}});
  for (auto& [fd, b] : clients) ::close(fd);
  waiters_.clear();
}

}  // namespace vnopfs::daemon

// control.h: the daemon's control socket (protocol and location: src/daemon/control_client.h).
//
// One thread serves every connection, one request at a time (a remount's flush holds the others back);
// "wait" requests are parked until finish(). The thread and the socket belong to the control_server;
// the hooks are called on that thread, under hooks_mu_, until detach_hooks() returns.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace vnopfs::daemon {

struct control_hooks {
  std::function<nlohmann::json()> status;       // the status reply's fields
  std::function<std::string(bool ro)> remount;  // "" or the error
  std::function<std::string(const std::string& spec)> set_layers;      // "" or the error
  std::function<std::string(const std::string& spec)> set_dev_layers;  // "" or the error
  std::function<std::string(const std::string& path)> mirror_add;      // "" or the error
  std::function<std::string(const std::string& path)> mirror_remove;   // "" or the error
};

class control_server {
 public:
  control_server() = default;
  ~control_server();  // finish(false) if finish was not called
  control_server(const control_server&) = delete;
  control_server& operator=(const control_server&) = delete;

  // Creates /run/vnopfs/ctl (0700) and PID.sock (0600) and starts the thread. "" or the error.
  std::string start(control_hooks hooks);
  // From now on status comes from the last answer (with state "flushing") and remounts are refused;
  // returns once no hook runs.
  void detach_hooks();
  // Answers every parked and later "wait" with {"ok":true,"clean":clean}, stops the thread, removes the
  // socket. Call when the filesystem is flushed and the image lock released.
  void finish(bool clean);

 private:
  void loop();
  nlohmann::json handle(int fd, const nlohmann::json& req);

  std::mutex hooks_mu_;
  control_hooks hooks_;
  bool attached_ = false;
  nlohmann::json last_status_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};  // finish() writes to wake_[1]
  std::string path_;
  std::thread thread_;
  bool clean_ = false;
  std::vector<int> waiters_;  // parked "wait" connections (thread-owned)
};

}  // namespace vnopfs::daemon

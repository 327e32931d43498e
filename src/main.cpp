// main.cpp: the vnopfs daemon: read the options, check everything that can fail with a message before
// anything is touched, go to the background, start the filesystem (src/daemon/daemon.h) and serve it.
//
// The fork happens before any thread exists; the parent exits only when the child reports that the mount
// is up (or failed, with the child's message already on stderr). Success prints nothing: the info lines go
// to the daemon's log (log=, or stderr in the foreground) and to syslog. The control socket
// (src/daemon/control.h) answers its last "wait" only after the image's lock is released.
#include <syslog.h>
#include <unistd.h>

#include <cstdio>
#include <new>
#include <string>

#include "src/config/options.h"
#include "src/daemon/background.h"
#include "src/daemon/control.h"
#include "src/daemon/daemon.h"
#include "vnopfs/mount.h"

namespace {

int fail(const std::string& msg) {
  std::fprintf(stderr, "vnopfs: %s\n", msg.c_str());
  vnopfs::daemon::report_started(1);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace vnopfs;
  config::options o;
  if (std::string e = config::parse_command_line(argc, argv, &o); !e.empty()) return fail(e);
  if (o.act == config::options::action::help) return std::fputs(config::usage().c_str(), stdout), 0;
  if (o.act == config::options::action::version) return std::fputs(config::version().c_str(), stdout), 0;
  ::openlog("vnopfs", LOG_PID, LOG_DAEMON);

  daemon::prepared prep;  // prep.lock_fd: the image's lock, held until the end
  if (std::string e = daemon::prepare(&o, &prep); !e.empty()) return fail(e);
  if (prep.bound) {  // another vnopfs serves the image: the mountpoint is a bind mount of it
    syslog(LOG_INFO, "%s", prep.note.c_str());
    return 0;
  }
  if (!o.foreground)
    if (std::string e = daemon::fork_background(); !e.empty()) return fail(e);
  daemon::control_server ctl;
  std::string err;
  bool started = false;
  try {
    daemon::fs_daemon d(o);  // its destructor releases what start() built, before the verdict below
    struct detach_at_exit {  // the control thread never calls into a destroyed d, whatever throws
      daemon::control_server& c;
      ~detach_at_exit() { c.detach_hooks(); }
    } detach{ctl};
    err = d.start();
    if (err.empty()) {
      started = true;
      daemon::report_started(0);
      if (!o.foreground) daemon::detach_stdio(o.log_path);
      d.log_mounted(prep.note);
      daemon::control_hooks hooks;
      hooks.status = [&d] { return d.status_json(); };
      hooks.remount = [&d](bool ro) { return d.remount(ro); };
      hooks.set_layers = [&d](const std::string& s) { return d.set_layers(s); };
      hooks.set_dev_layers = [&d](const std::string& s) { return d.set_dev_layers(s); };
      hooks.mirror_add = [&d](const std::string& p) { return d.mirror_add(p); };
      hooks.mirror_remove = [&d](const std::string& p) { return d.mirror_remove(p); };
      if (std::string e = ctl.start(std::move(hooks)); !e.empty())
        VLOG_WARN("no control socket (vnopfs-ctl and the mount helpers cannot reach this daemon): %s", e.c_str());
      err = d.serve([&ctl] { ctl.detach_hooks(); });
    }
  } catch (const std::bad_alloc&) {
    err = "out of memory";
  }
  if (prep.lock_fd >= 0) ::close(prep.lock_fd);
  for (int fd : prep.member_lock_fds) ::close(fd);
  ctl.finish(started && err.empty());
  return err.empty() ? 0 : fail(err);
}

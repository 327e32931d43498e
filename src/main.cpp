// main.cpp: the vnopfs daemon: read the options, check everything that can fail with a message before
// anything is touched, go to the background, start the filesystem (src/daemon/daemon.h) and serve it.
//
// The fork happens before any thread exists; the parent exits only when the child reports that the mount
// is up (or failed, with the child's message already on stderr).
#include <cstdio>
#include <new>
#include <string>

#include "src/config/options.h"
#include "src/daemon/background.h"
#include "src/daemon/daemon.h"

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

  int lock_fd = -1;  // the image's lock, held until exit
  if (std::string e = daemon::prepare(&o, &lock_fd); !e.empty()) return fail(e);
  if (!o.foreground)
    if (std::string e = daemon::fork_background(); !e.empty()) return fail(e);
  std::string err;
  try {
    daemon::fs_daemon d(o);  // its destructor releases what start() built, before the verdict below
    err = d.start();
    if (err.empty()) {
      daemon::report_started(0);
      if (!o.foreground) daemon::detach_stdio(o.log_path);
      err = d.serve();
    }
  } catch (const std::bad_alloc&) {
    err = "out of memory";
  }
  return err.empty() ? 0 : fail(err);
}

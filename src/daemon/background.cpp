// background.cpp: see background.h.
#include "src/daemon/background.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace vnopfs::daemon {

namespace {
int g_status_fd = -1;  // the child's end of the verdict pipe
}

std::string fork_background() {
  int pfd[2];
  if (::pipe2(pfd, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(pfd[0]);
    ::close(pfd[1]);
    return std::string("fork: ") + std::strerror(e);
  }
  if (pid > 0) {
    ::close(pfd[1]);
    unsigned char c = 1;
    ssize_t n;
    do n = ::read(pfd[0], &c, 1); while (n < 0 && errno == EINTR);
    if (n != 1) {  // the child died before reporting
      int st = 0;
      ::waitpid(pid, &st, 0);
      std::_Exit(1);
    }
    std::_Exit(c);
  }
  ::close(pfd[0]);
  g_status_fd = pfd[1];
  ::setsid();
  return {};
}

void report_started(int status) {
  if (g_status_fd < 0) return;
  unsigned char c = static_cast<unsigned char>(status);
  ssize_t n;
  do n = ::write(g_status_fd, &c, 1); while (n < 0 && errno == EINTR);
  ::close(g_status_fd);
  g_status_fd = -1;
}

void detach_stdio(const std::string& log_path) {
  int null = ::open("/dev/null", O_RDWR);
  if (null >= 0) {
    ::dup2(null, 0);
    ::dup2(null, 1);
  }
  int log = log_path.empty() ? -1 : ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log >= 0) {
    ::dup2(log, 2);
    ::close(log);
  } else if (null >= 0) {
    ::dup2(null, 2);
  }
  if (null > 2) ::close(null);
  (void)::chdir("/");
}

}  // namespace vnopfs::daemon

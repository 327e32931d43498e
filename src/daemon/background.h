// background.h: becoming a daemon. The parent of the fork waits on a pipe for the child's verdict, so an
// error found while starting (image, mount, FUSE session) still reaches the terminal and the exit status.
#pragma once

#include <string>

namespace vnopfs::daemon {

// Forks; returns in the child (now a session leader), and the parent exits with the status the child
// reports, or 1 if the child dies first. Call before any thread exists. A failure to fork or to make the
// pipe is the returned message (no fork happened); "" on success.
std::string fork_background();
// The child's verdict to the waiting parent: 0 mounted, non-zero failed. Only the first call counts; a
// no-op in the foreground.
void report_started(int status);
// stdin and stdout to /dev/null, stderr to log_path (or /dev/null), cwd to /.
void detach_stdio(const std::string& log_path);

}  // namespace vnopfs::daemon

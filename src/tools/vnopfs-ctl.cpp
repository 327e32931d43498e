// vnopfs-ctl: talks to a running vnopfs daemon over its control socket (src/daemon/control_client.h),
// and is the mount(8) helpers of the type fuse.vnopfs under the names it is called by.
//
//   vnopfs-ctl MOUNTPOINT|IMAGE status [--json]   where it is mounted, its pid, state, ro or rw, device layers,
//                                                 a mirror's members and their state
//   vnopfs-ctl MOUNTPOINT|IMAGE wait              returns when that daemon has flushed, marked the image
//                                                 clean and released it (after an unmount)
//   vnopfs-ctl MOUNTPOINT remount-ro|remount-rw   what mount -o remount,ro|rw does through the helper (the
//                                                 kernel's mount and the daemon), also for the type fuse
//   vnopfs-ctl MOUNTPOINT|IMAGE layers SPEC       replaces the VNOP layer stack while mounted (SPEC as for
//                                                 -o layers=, '+' between layers; "none": no layer)
//   vnopfs-ctl MOUNTPOINT|IMAGE dev-layers SPEC   replaces the device layers likewise (as -o dev_layers=)
//   vnopfs-ctl MOUNTPOINT|IMAGE mirror-add FILE   adds a mirror member, copied in the background
//   vnopfs-ctl MOUNTPOINT|IMAGE mirror-remove FILE   takes a member out of service for good
//   vnopfs-ctl --list                             every running daemon, one JSON line each
//
//   /sbin/mount.fuse.vnopfs SOURCE TARGET [-o OPTS] [-s] [-n] [-v] [-t TYPE]
//       mount(8) runs it for -t fuse.vnopfs and for remounts of such a mount. A mount goes on to
//       mount.fuse3 exactly as before this helper existed (with this build's vnopfs first in PATH). A remount
//       (-o remount,...) goes to the running daemon and the kernel: to ro, the kernel first (it refuses
//       while files are open for writing), then the daemon flushes and marks the image clean; to rw, the
//       daemon first. Never a second daemon.
//   /sbin/umount.fuse.vnopfs TARGET [-n] [-l] [-f] [-v] [-r] [-t TYPE]
//       unmounts (umount -i) and returns only when the daemon has flushed and released the image, unless
//       the filesystem stays mounted elsewhere (a bind mount) or -l was given.
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "src/daemon/control_client.h"

namespace {

using json = nlohmann::json;
namespace ctl = vnopfs::control;

std::string prog = "vnopfs-ctl";

int die(const std::string& msg, int rc = 1) {
  std::fprintf(stderr, "%s: %s\n", prog.c_str(), msg.c_str());
  return rc;
}

std::string abs_path(const std::string& p) {
  char buf[PATH_MAX];
  return ::realpath(p.c_str(), buf) ? std::string(buf) : p;
}

// Absolute even when the file does not exist (realpath fails then): the daemon's cwd is not ours.
std::string abs_any(const std::string& p) {
  std::string a = abs_path(p);
  char cwd[PATH_MAX];
  if (!a.empty() && a[0] != '/' && ::getcwd(cwd, sizeof cwd)) a = std::string(cwd) + "/" + a;
  return a;
}
std::vector<std::string> split_opts(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 1 < s.size()) { cur += s[i]; cur += s[++i]; continue; }
    if (s[i] == ',') { if (!cur.empty()) out.push_back(cur); cur.clear(); continue; }
    cur += s[i];
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// Runs argv, waits; the exit status (127 if it could not run).
int run(const std::vector<std::string>& argv, const std::string& path_env = {}) {
  pid_t pid = ::fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    if (!path_env.empty()) ::setenv("PATH", path_env.c_str(), 1);
    std::vector<char*> a;
    for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    ::execvp(a[0], a.data());
    std::fprintf(stderr, "%s: cannot run %s: %s\n", prog.c_str(), a[0], std::strerror(errno));
    std::_Exit(127);
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

// A zombie counts as ended: it has closed its files and dropped its image lock, and the reap is its
// parent's business. The daemon's parent is whatever adopted it after mount.fuse3 exited; a container's
// init may reap seconds late (1.7 s an unmount measured here, which was most of an xfstests "not run").
bool pid_alive(int pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  int fd = ::open(("/proc/" + std::to_string(pid) + "/stat").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT;
  char buf[512];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return n < 0 && errno != ESRCH;
  buf[n] = 0;
  // "pid (comm) S ...": comm may hold ')', the state follows the last one.
  const char* p = std::strrchr(buf, ')');
  return !(p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

// Waits for the daemon behind c (the answer to a "wait" already sent), then for its process to end.
// "" or why not.
std::string wait_done(ctl::connection& c, int pid, bool* clean) {
  json r;
  std::string e = c.receive(&r);
  // A daemon that dies (or closes) without answering has still released everything once it is gone.
  *clean = e.empty() ? r.value("clean", false) : true;
  for (int i = 0; pid_alive(pid); i++) {
    if (i > 600 * 100) return "daemon " + std::to_string(pid) + " still running after 600 s";
    ::usleep(10000);
  }
  if (!e.empty() && e != "the daemon closed the connection") return e;
  return {};
}

// The directory holding the vnopfs daemon that belongs with this binary: beside it (installed) or one up
// (the build tree: src/tools/vnopfs-ctl, src/vnopfs).
std::string daemon_dir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  buf[n] = 0;
  std::string dir = ::dirname(buf);
  for (std::string d : {dir, dir + "/.."})
    if (::access((d + "/vnopfs").c_str(), X_OK) == 0) return abs_path(d);
  return {};
}

unsigned long kernel_flags(const std::vector<std::string>& opts, bool* ro) {
  unsigned long f = 0;
  *ro = false;
  for (auto& o : opts) {
    if (o == "ro") *ro = true;
    else if (o == "rw") *ro = false;
    else if (o == "nosuid") f |= MS_NOSUID;
    else if (o == "nodev") f |= MS_NODEV;
    else if (o == "noexec") f |= MS_NOEXEC;
    else if (o == "noatime") f |= MS_NOATIME;
    else if (o == "nodiratime") f |= MS_NODIRATIME;
    else if (o == "relatime") f |= MS_RELATIME;
    else if (o == "strictatime") f |= MS_STRICTATIME;
    else if (o == "lazytime") f |= MS_LAZYTIME;
    else if (o == "sync") f |= MS_SYNCHRONOUS;
    else if (o == "dirsync") f |= MS_DIRSYNC;
  }
  return f;
}

int remount(const std::string& target, const std::vector<std::string>& opts) {
  std::string abs = abs_path(target);
  ctl::daemon_ref d;
  if (std::string dev = ctl::mounted_dev(abs); dev.empty()) return die(target + ": not mounted", 32);
  if (std::string e = ctl::find_daemon(abs, &d); !e.empty()) return die(target + ": " + e, 32);
  bool ro;
  unsigned long f = kernel_flags(opts, &ro);
  ctl::connection c;
  if (std::string e = c.open(d.socket); !e.empty()) return die(e, 32);
  auto daemon_remount = [&](bool to_ro) -> std::string {
    json r;
    std::string e = c.call({{"op", to_ro ? "remount-ro" : "remount-rw"}}, &r);
    if (e.empty() && !r.value("ok", false)) e = r.value("error", "remount refused");
    return e;
  };
  if (ro) {
    if (::mount(nullptr, abs.c_str(), nullptr, MS_REMOUNT | MS_RDONLY | f, nullptr) != 0)
      return die(target + ": remount read-only: " + std::strerror(errno), 32);
    if (std::string e = daemon_remount(true); !e.empty()) {
      (void)::mount(nullptr, abs.c_str(), nullptr, MS_REMOUNT | f, nullptr);
      return die(target + ": " + e, 32);
    }
    return 0;
  }
  if (std::string e = daemon_remount(false); !e.empty()) return die(target + ": " + e, 32);
  if (::mount(nullptr, abs.c_str(), nullptr, MS_REMOUNT | f, nullptr) != 0) {
    int e = errno;
    (void)daemon_remount(true);
    return die(target + ": remount read-write: " + std::strerror(e), 32);
  }
  return 0;
}

int mount_helper(int argc, char** argv) {
  std::vector<std::string> pos, opts, pass;
  bool has_type = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "-o" && i + 1 < argc) {
      for (auto& o : split_opts(argv[++i])) opts.push_back(o);
    } else if ((a == "-t" || a == "-N") && i + 1 < argc) {
      if (a == "-t") has_type = true;
      pass.push_back(a);
      pass.push_back(argv[++i]);
    } else if (!a.empty() && a[0] == '-') {
      pass.push_back(a);
    } else {
      pos.push_back(a);
    }
  }
  if (pos.size() != 2) return die("usage: mount.fuse.vnopfs SOURCE TARGET [-o OPTIONS]", 1);
  for (auto& o : opts)
    if (o == "remount") return remount(pos[1], opts);
  std::vector<std::string> av{"mount.fuse3", pos[0], pos[1]};
  if (!opts.empty()) {
    std::string j;
    for (auto& o : opts) j += (j.empty() ? "" : ",") + o;
    av.push_back("-o");
    av.push_back(j);
  }
  for (auto& p : pass) av.push_back(p);
  if (!has_type) {
    av.push_back("-t");
    av.push_back("fuse.vnopfs");
  }
  std::string path = ::getenv("PATH") ? ::getenv("PATH") : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  if (std::string d = daemon_dir(); !d.empty()) path = d + ":" + path;
  return run(av, path);
}

int umount_helper(int argc, char** argv) {
  std::string target;
  std::vector<std::string> flags;
  bool lazy = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if ((a == "-t" || a == "-N") && i + 1 < argc) { i++; continue; }  // -i below: no helper, no type needed
    if (a == "-l") lazy = true;
    if (!a.empty() && a[0] == '-') flags.push_back(a);
    else target = a;
  }
  if (target.empty()) return die("usage: umount.fuse.vnopfs TARGET [-l] [-f] [-n] [-r] [-v]", 1);
  std::string abs = abs_path(target);
  std::string dev = ctl::mounted_dev(abs);
  ctl::daemon_ref d;
  bool ours = !dev.empty() && ctl::find_daemon(abs, &d).empty() && d.status.value("dev", "") == dev;
  ctl::connection c;
  if (ours && (!c.open(d.socket).empty() || !c.send({{"op", "wait"}}).empty())) ours = false;
  std::vector<std::string> av{"umount", "-i"};
  for (auto& f : flags) av.push_back(f);
  av.push_back(target);
  if (int rc = run(av); rc != 0) return rc;
  if (!ours || lazy) return 0;
  for (auto& m : ctl::mount_table())
    if (m.dev == dev) return 0;  // still mounted elsewhere (a bind mount): the daemon goes on serving it
  bool clean = false;
  if (std::string e = wait_done(c, d.status.value("pid", 0), &clean); !e.empty()) return die(target + ": " + e, 1);
  if (!clean) return die(target + ": vnopfs reported errors while flushing " + d.status.value("image", "") + " (see its log)", 1);
  return 0;
}

int usage() {
  std::fputs("usage: vnopfs-ctl MOUNTPOINT|IMAGE status [--json] | wait | remount-ro | remount-rw |\n"
             "                                  layers SPEC | dev-layers SPEC | mirror-add FILE | mirror-remove FILE\n"
             "       vnopfs-ctl --list\n", stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string name = ::basename(argv[0]);
  if (name == "mount.fuse.vnopfs") return prog = name, mount_helper(argc, argv);
  if (name == "umount.fuse.vnopfs") return prog = name, umount_helper(argc, argv);
  if (argc == 2 && std::string(argv[1]) == "--list") {
    for (auto& d : ctl::list_daemons()) std::printf("%s\n", d.status.dump().c_str());
    return 0;
  }
  if (argc < 3) return usage();
  std::string what = abs_path(argv[1]), op = argv[2];
  bool as_json = argc > 3 && std::string(argv[3]) == "--json";
  ctl::daemon_ref d;
  if (std::string e = ctl::find_daemon(what, &d); !e.empty()) return die(e);
  ctl::connection c;
  if (std::string e = c.open(d.socket); !e.empty()) return die(e);
  if (op == "status") {
    if (as_json) return std::printf("%s\n", d.status.dump().c_str()), 0;
    auto& s = d.status;
    std::printf("%s on %s: pid %d, %s, %s, %s\n", s.value("image", "?").c_str(), s.value("mountpoint", "?").c_str(),
                s.value("pid", 0), s.value("state", "?").c_str(), s.value("ro", false) ? "ro" : "rw",
                s.value("fstype", "?").c_str());
    if (s.contains("layers") && s["layers"].is_array()) {  // the VNOP stack, top first, down to the table
      std::string stack;
      for (auto it = s["layers"].rbegin(); it != s["layers"].rend(); ++it)
        stack += (stack.empty() ? "" : " over ") + it->get<std::string>();
      stack += (stack.empty() ? "table " : " over table ") + s.value("table", std::string("?"));
      std::printf("vnops: %s\n", stack.c_str());
    }
    if (s.contains("device_stack") && !s["device_stack"].empty()) {  // the backend and the layers over it, top first
      std::string stack;
      for (auto it = s["device_stack"].rbegin(); it != s["device_stack"].rend(); ++it)
        stack += (stack.empty() ? "" : " over ") + it->get<std::string>().substr(0, it->get<std::string>().find('('));
      std::printf("device: %s\n", stack.c_str());
    }
    if (s.contains("mirror") && s["mirror"].is_object()) {  // -o mirror=: each member and its state
      auto& m = s["mirror"];
      size_t n = 0, copying = 0, live = m.value("in_service", size_t{0});
      for (auto& x : m["members"]) {  // removed ones are listed, not counted
        n += !x.value("removed", false);
        copying += x.value("syncing", false);
      }
      std::printf("mirror: %zu members, %s, events %llu\n", n,
                  live == n ? "in sync"
                  : live && live + copying == n ? ("RESYNCING (" + std::to_string(live) + " in service, " +
                                                   std::to_string(copying) + " being copied)").c_str()
                  : live ? ("DEGRADED (" + std::to_string(live) + " in service)").c_str()
                         : "FAILED (no member in service)",
                  static_cast<unsigned long long>(m.value("events", uint64_t{0})));
      for (auto& x : m["members"])
        std::printf("  %s: %s, events %llu, %llu reads, %llu writes, %llu errors\n", x.value("path", "?").c_str(),
                    x.value("state", "?").c_str(), static_cast<unsigned long long>(x.value("events", uint64_t{0})),
                    static_cast<unsigned long long>(x.value("reads", uint64_t{0})),
                    static_cast<unsigned long long>(x.value("writes", uint64_t{0})),
                    static_cast<unsigned long long>(x.value("errors", uint64_t{0})));
    }
    return 0;
  }
  if (op == "layers" || op == "dev-layers") {
    if (argc != 4) return usage();
    std::string spec = argv[3];
    if (op == "layers") {  // a module path is the daemon's to open, and its cwd is /
      std::string out, l = spec + "+";
      for (auto& ch : l) if (ch == ',') ch = '+';
      for (size_t q = 0, e; (e = l.find('+', q)) != std::string::npos; q = e + 1) {
        std::string one = l.substr(q, e - q), name = one.substr(0, one.find(':'));
        if (name.find('/') != std::string::npos || (name.size() > 3 && name.ends_with(".so"))) {
          one = abs_any(name) + one.substr(name.size());
        }
        if (!one.empty()) out += (out.empty() ? "" : "+") + one;
      }
      spec = spec == "none" ? spec : out;
    }
    json r;
    if (std::string e = c.call({{"op", op}, {"spec", spec}}, &r); !e.empty()) return die(e);
    if (!r.value("ok", false)) return die(r.value("error", op + " refused"));
    return 0;
  }
  if (op == "mirror-add" || op == "mirror-remove") {
    if (argc != 4) return usage();
    json r;
    if (std::string e = c.call({{"op", op}, {"path", abs_any(argv[3])}}, &r); !e.empty()) return die(e);
    if (!r.value("ok", false)) return die(r.value("error", op + " refused"));
    return 0;
  }
  if (op == "wait") {
    bool clean = false;
    if (std::string e = c.send({{"op", "wait"}}); !e.empty()) return die(e);
    if (std::string e = wait_done(c, d.status.value("pid", 0), &clean); !e.empty()) return die(e);
    return clean ? 0 : die("the daemon reported errors while flushing (see its log)");
  }
  if (op == "remount-ro" || op == "remount-rw") {
    // The whole remount, kernel and daemon, as mount -o remount through the helper does it: with the
    // plain type fuse, mount(8) runs mount.fuse3 for a remount, which cannot do it.
    std::string opts, mp;
    std::string dev = ctl::mounted_dev(what);
    for (auto& m : ctl::mount_table())
      if (!dev.empty() && m.dev == dev && m.mountpoint == what) opts = m.options, mp = m.mountpoint;
    if (mp.empty()) return die(what + ": not a mountpoint of a vnopfs filesystem");
    std::vector<std::string> o;
    for (auto& x : split_opts(opts))
      if (x != "ro" && x != "rw") o.push_back(x);
    o.push_back(op == "remount-ro" ? "ro" : "rw");
    return remount(mp, o);
  }
  return usage();
}

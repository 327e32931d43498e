// main.cpp: the vnopfs daemon: options, preflight checks, the device stack, VFS_MOUNT, the FUSE session,
// signals, statistics, and a clean unmount (all dirty data flushed, superblock marked clean) at the end.
//
// Order matters: everything that can fail with a message (options, image, mountpoint) is checked before
// the daemon forks into the background, and the parent exits only when the child reports that the mount is
// up (or failed, with the child's message already on stderr). The fork happens before any thread exists.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "src/config/options.h"
#include "src/fuse/frontend.h"
#include "src/fuse/preflight.h"
#include "src/fuse/statsfile.h"
#include "vnopfs/buf.h"
#include "vnopfs/device.h"
#include "vnopfs/mount.h"
#include "vnops/layers/layer.h"
#include "vnops/layers/stats.h"
#include "src/fuse/fsglue.h"

using namespace vnopfs;
namespace cfg = vnopfs::config;

namespace {

void die_msg(const std::string& m) { std::fprintf(stderr, "vnopfs: %s\n", m.c_str()); }

// ---- daemonizing: the parent waits for the child's verdict on a pipe.
int g_status_fd = -1;

void report_status(int code) {
  if (g_status_fd < 0) return;
  unsigned char c = static_cast<unsigned char>(code);
  ssize_t n;
  do n = ::write(g_status_fd, &c, 1); while (n < 0 && errno == EINTR);
  ::close(g_status_fd);
  g_status_fd = -1;
}

// Returns in the child; the parent exits with the child's status.
void fork_background() {
  int pfd[2];
  if (::pipe2(pfd, O_CLOEXEC) != 0) { die_msg(std::string("pipe: ") + std::strerror(errno)); std::exit(1); }
  pid_t pid = ::fork();
  if (pid < 0) { die_msg(std::string("fork: ") + std::strerror(errno)); std::exit(1); }
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

// ext2 keeps nanoseconds only in the extra fields of inodes larger than 128 bytes: the kernel must not
// cache finer times than the filesystem keeps (FUSE time_gran).
unsigned probe_time_gran(dev::device& d) {
  // One aligned 4 KiB read at 0 (O_DIRECT devices refuse anything less aligned); the superblock is at 1024.
  void* mem = nullptr;
  if (posix_memalign(&mem, 4096, 4096) != 0) return 1000000000u;
  std::unique_ptr<unsigned char, decltype(&std::free)> page(static_cast<unsigned char*>(mem), &std::free);
  if (dev::dev_sync_io(d, dev::io_op::read, 0, page.get(), 4096) != 0) return 1000000000u;
  const unsigned char* sb = page.get() + 1024;
  auto le16 = [&](size_t o) { return static_cast<unsigned>(sb[o] | (sb[o + 1] << 8)); };
  auto le32 = [&](size_t o) { return static_cast<unsigned>(sb[o] | (sb[o + 1] << 8) | (sb[o + 2] << 16) | (sb[o + 3] << 24)); };
  if (le16(56) != 0xEF53) return 1000000000u;
  unsigned inode_size = le32(76) >= 1 ? le16(88) : 128;
  return inode_size > 128 ? 1u : 1000000000u;
}

std::string escape_opt(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

nlohmann::json cache_json(const bufcache_stats& s) {
  nlohmann::json w = nlohmann::json::array(), r = nlohmann::json::array();
  for (int i = 0; i < bufcache_stats::kSizeBuckets; i++) {
    w.push_back(s.write_size_hist[i]);
    r.push_back(s.read_size_hist[i]);
  }
  return {
      {"cache",
       {{"buffers", s.buffers}, {"block_size", s.block_size}, {"hits", s.hits}, {"misses", s.misses},
        {"evictions", s.evictions}, {"dirty", s.dirty}, {"dirty_max", s.dirty_max}, {"busy", s.busy},
        {"throttle_waits", s.throttle_waits}, {"bdwrite_to_async", s.bdwrite_to_async}, {"reads", s.reads},
        {"writes", s.writes}, {"read_errors", s.read_errors}, {"write_errors", s.write_errors},
        {"dropped_dirty", s.dropped_dirty}, {"flusher_runs", s.flusher_runs}, {"flusher_writes", s.flusher_writes}}},
      {"cluster",
       {{"pushes", s.cluster_pushes}, {"sparse_pushes", s.sparse_pushes}, {"readahead_issued", s.readahead_issued},
        {"readahead_used", s.readahead_used}, {"write_size_hist_blocks_log2", w}, {"read_size_hist_blocks_log2", r}}},
  };
}

nlohmann::json device_json(const dev::device& d) {
  dev::device_stats s = d.stats();
  nlohmann::json h = nlohmann::json::array();
  for (int i = 0; i < dev::device_stats::kSizeBuckets; i++) h.push_back(s.size_hist[i]);
  uint64_t ios = s.reads + s.writes + s.flushes + s.unmaps;
  return {{"name", d.name()}, {"reads", s.reads}, {"writes", s.writes}, {"flushes", s.flushes},
          {"unmaps", s.unmaps}, {"bytes_read", s.bytes_read}, {"bytes_written", s.bytes_written},
          {"errors", s.errors}, {"merged", s.merged}, {"in_flight_max", s.in_flight_max},
          {"latency_ns_total", s.latency_ns_total}, {"latency_ns_avg", ios ? s.latency_ns_total / ios : 0},
          {"size_hist_bytes_log2_from_512", h}};
}

struct daemon_state {
  cfg::options o;
  int lock_fd = -1;
  std::unique_ptr<dev::device> device;
  mount mnt;
  std::unique_ptr<layer_stack> layers;
  stats_layer* stats = nullptr;
  std::unique_ptr<fuse::inode_table> inodes;
  fuse::frontend fe;
  bool vfs_mounted = false;
  std::string stats_link;
};

nlohmann::json stats_json(daemon_state& s, bool with_cache) {
  nlohmann::json j;
  j["version"] = 1;
  j["time"] = static_cast<uint64_t>(::time(nullptr));
  j["pid"] = ::getpid();
  j["image"] = s.o.image;
  j["mountpoint"] = s.o.mountpoint;
  j["options"] = {{"kcache", cfg::kcache_name(s.o.kcache_mode)}, {"backend", cfg::backend_name(s.o.dev_backend)},
                  {"cache_size", s.o.cache_bytes}, {"direct", s.o.direct}, {"sync", s.o.sync},
                  {"threads", s.o.threads}, {"ro", s.o.rdonly}, {"layers", s.o.layers}};
  j["vnops"] = s.stats ? s.stats->to_json()["ops"] : nlohmann::json::object();
  if (with_cache && s.vfs_mounted) {
    auto c = cache_json(bufcache_getstats(&s.mnt));
    j["cache"] = c["cache"];
    j["cluster"] = c["cluster"];
  }
  if (s.device) j["device"] = device_json(*s.device);
  j["inodes"] = s.inodes ? s.inodes->size() : 0;
  return j;
}

int open_device(daemon_state& s) {
  int err = 0;
  if (s.o.dev_backend == cfg::backend::uring) {
    dev::uring_options u;
    u.direct = s.o.direct;
    u.readonly = s.o.rdonly;
    s.device = dev::make_uring_device(s.o.image, u, &err);
  } else {
    dev::file_options f;
    f.direct = s.o.direct;
    f.readonly = s.o.rdonly;
    s.device = dev::make_file_device(s.o.image, f, &err);
  }
  if (!s.device) {
    die_msg("image '" + s.o.image + "': cannot open the " + cfg::backend_name(s.o.dev_backend) +
            " device: " + std::strerror(err ? err : EIO));
    return 1;
  }
  return 0;
}

int mount_fs(daemon_state& s) {
  fuse::register_filesystems();
  const vfsops* fs = vfs_lookup_fs("ext2");
  if (!fs) { die_msg("no filesystem named ext2 is registered"); return 1; }
  const vnop_table* bottom = fuse::filesystem_table("ext2");
  s.layers = std::make_unique<layer_stack>(bottom);
  std::string err;
  if (!s.o.layers.empty() && !s.layers->push_list(s.o.layers, &err)) { die_msg("option 'layers': " + err); return 1; }
  if (!s.o.stats_path.empty()) {
    if (!s.layers->push("stats", &err)) { die_msg(err); return 1; }
    s.stats = static_cast<stats_layer*>(s.layers->find("stats"));
  }
  mount_args a;
  a.rdonly = s.o.rdonly;
  a.synchronous = s.o.sync;
  a.cache_bytes = s.o.cache_bytes;
  a.layers = s.layers->layers().empty() ? nullptr : s.layers->top();
  s.mnt.mnt_op = fs;
  s.mnt.mnt_from = s.o.image;
  s.mnt.mnt_device = s.device.get();
  s.mnt.mnt_flag = (s.o.rdonly ? uint32_t{MNT_RDONLY} : 0u) | (s.o.sync ? uint32_t{MNT_SYNCHRONOUS} : 0u) |
                   (s.o.noatime ? uint32_t{MNT_NOATIME} : 0u);
  int e = VFS_MOUNT(&s.mnt, a, vfs_context::kernel());
  if (e) {
    die_msg("cannot mount '" + s.o.image + "': " + std::strerror(e));
    return 1;
  }
  s.vfs_mounted = true;
  return 0;
}

int unmount_fs(daemon_state& s) {
  if (!s.vfs_mounted) return 0;
  if (s.inodes) s.inodes->release_all();
  int e = VFS_UNMOUNT(&s.mnt, false, vfs_context::kernel());
  if (e == EBUSY) {
    VLOG_WARN("unmount: vnodes still referenced; forcing");
    e = VFS_UNMOUNT(&s.mnt, true, vfs_context::kernel());
  }
  s.vfs_mounted = false;
  if (e) die_msg("unmount of '" + s.o.image + "' failed: " + std::strerror(e) + " (run e2fsck)");
  return e ? 1 : 0;
}

std::vector<std::string> fuse_argv(const cfg::options& o) {
  std::vector<std::string> v{"vnopfs"};
  if (o.debug) v.push_back("-d");
  std::string mo = "fsname=" + escape_opt(o.fsname.empty() ? o.image : o.fsname) + ",subtype=vnopfs";
  if (o.default_permissions) mo += ",default_permissions";
  if (o.allow_other) mo += ",allow_other";
  mo += o.rdonly ? ",ro" : ",rw";
  for (auto& k : o.kernel_opts) mo += "," + k;
  v.push_back("-o");
  v.push_back(mo);
  return v;
}

int serve(daemon_state& s) {
  std::signal(SIGPIPE, SIG_IGN);
  if (open_device(s)) return 1;
  s.fe.time_gran = probe_time_gran(*s.device);
  if (mount_fs(s)) return 1;

  vnode* root = nullptr;
  if (int e = VFS_ROOT(&s.mnt, &root, vfs_context::kernel())) {
    die_msg(std::string("cannot get the root directory: ") + std::strerror(e));
    unmount_fs(s);
    return 1;
  }
  s.inodes = std::make_unique<fuse::inode_table>(&s.mnt);
  s.inodes->set_root(root);
  vnode_put(root);

  s.fe.mp = &s.mnt;
  s.fe.opts = &s.o;
  s.fe.inodes = s.inodes.get();
  s.fe.attr_timeout = s.fe.entry_timeout = s.o.attr_timeout;
  s.fe.direct_io = s.o.kcache_mode == cfg::kcache::none;

  std::vector<std::string> av = fuse_argv(s.o);
  std::vector<char*> argv;
  for (auto& a : av) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse_session* se = fuse_session_new(&args, fuse::lowlevel_ops(), sizeof(fuse_lowlevel_ops), &s.fe);
  if (!se) {
    die_msg("cannot create the FUSE session");
    unmount_fs(s);
    return 1;
  }
  // libfuse installs its handlers only over SIG_DFL; a daemon started in the background of a script
  // inherits SIGINT ignored, and must still stop cleanly on it.
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGHUP, SIG_DFL);
  if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, s.o.mountpoint.c_str()) != 0) {
    die_msg("cannot mount FUSE on '" + s.o.mountpoint + "'");
    fuse_session_destroy(se);
    unmount_fs(s);
    return 1;
  }
  if (int e = fuse::install_kernel_io(se)) die_msg(std::string("INIT flags hook not installed: ") + std::strerror(e));

  std::unique_ptr<fuse::stats_writer> sw;
  if (!s.o.stats_path.empty()) {
    sw = std::make_unique<fuse::stats_writer>(s.o.stats_path, s.o.stats_interval, [&s] { return stats_json(s, true); });
    if (int e = sw->write_now()) {
      die_msg("stats file '" + s.o.stats_path + "': " + std::strerror(e));
      fuse_session_unmount(se);
      fuse_session_destroy(se);
      unmount_fs(s);
      return 1;
    }
    ::mkdir("/run/vnopfs", 0755);
    s.stats_link = fuse::stats_link_path(s.o.mountpoint);
    ::unlink(s.stats_link.c_str());
    if (::symlink(s.o.stats_path.c_str(), s.stats_link.c_str()) != 0) s.stats_link.clear();
    sw->start();
  }

  VLOG_INFO("%s mounted on %s (kcache=%s, backend=%s, cache %zu MiB)", s.o.image.c_str(), s.o.mountpoint.c_str(),
            cfg::kcache_name(s.o.kcache_mode), cfg::backend_name(s.o.dev_backend), s.o.cache_bytes >> 20);
  report_status(0);
  if (!s.o.foreground) detach_stdio(s.o.log_path);

  fuse_loop_config* lc = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(lc, static_cast<unsigned>(s.o.threads));
  fuse_loop_cfg_set_clone_fd(lc, 0);
  int lrc = fuse_session_loop_mt(se, lc);
  fuse_loop_cfg_destroy(lc);
  (void)lrc;

  // Unmounted by the kernel (umount, fusermount3 -u) or asked to stop (SIGTERM, SIGINT, SIGHUP): detach the
  // mount if still there, then flush everything and mark the filesystem clean.
  fuse_remove_signal_handlers(se);
  fuse_session_unmount(se);
  if (sw) {
    sw->stop();
    (void)sw->write_now();
  }
  int rc = unmount_fs(s);
  if (sw) (void)sw->write_now();  // vnop and device figures after the last flush
  fuse_session_destroy(se);
  if (!s.stats_link.empty()) ::unlink(s.stats_link.c_str());
  VLOG_INFO("%s unmounted%s", s.o.image.c_str(), rc ? " with errors" : " cleanly");
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  daemon_state s;
  int rc = cfg::parse_command_line(argc, argv, &s.o);
  if (rc < 0) return 0;
  if (rc > 0) return 1;
  cfg::options& o = s.o;
  if (!o.layers.empty()) {
    std::string names = o.layers + ",";
    for (size_t p = 0, c; (c = names.find(',', p)) != std::string::npos; p = c + 1) {
      std::string n = names.substr(p, c - p);
      if (n.empty()) continue;
      auto& known = layer_names();
      if (std::find(known.begin(), known.end(), n) == known.end()) {
        die_msg("option 'layers': unknown layer '" + n + "'");
        return 1;
      }
    }
  }
  if (!o.stats_path.empty() && o.stats_path[0] != '/') {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof cwd)) o.stats_path = std::string(cwd) + "/" + o.stats_path;
  }
  if (!o.log_path.empty() && o.log_path[0] != '/') {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof cwd)) o.log_path = std::string(cwd) + "/" + o.log_path;
  }
  std::string err = fuse::preflight_mountpoint(&o.mountpoint);
  if (err.empty()) err = fuse::preflight_image(&o.image, o.rdonly, &s.lock_fd);
  if (!err.empty()) {
    die_msg(err);
    return 1;
  }
  if (!o.foreground) fork_background();
  int result;
  try {
    result = serve(s);
  } catch (const std::bad_alloc&) {
    die_msg("out of memory");
    result = 1;
  }
  report_status(result ? 1 : 0);
  return result;
}

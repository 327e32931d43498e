// daemon.cpp: see daemon.h.
#include "src/daemon/daemon.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "src/daemon/background.h"
#include "src/daemon/control_client.h"
#include "src/daemon/stats_doc.h"
#include "src/dev/label.h"
#include "src/dev/mirror.h"
#include "src/fuse/preflight.h"
#include "vnopfs/buf.h"
#include "vnops/registry.h"

namespace vnopfs::daemon {

namespace cfg = vnopfs::config;

namespace {

std::string errstr(int e) { return std::strerror(e); }

std::string absolute(const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  char cwd[PATH_MAX];
  return ::getcwd(cwd, sizeof cwd) ? std::string(cwd) + "/" + p : p;
}

std::string escape_opt(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::vector<std::string> fuse_argv(const cfg::options& o) {
  std::vector<std::string> v{"vnopfs"};
  if (o.debug) v.push_back("-d");
  std::string mo = "fsname=" + escape_opt(o.fsname.empty() ? o.image : o.fsname);
  if (o.subtype) mo += ",subtype=vnopfs";
  if (o.default_permissions) mo += ",default_permissions";
  if (o.allow_other) mo += ",allow_other";
  mo += o.rdonly ? ",ro" : ",rw";
  for (auto& k : o.kernel_opts) mo += "," + k;
  v.push_back("-o");
  v.push_back(mo);
  return v;
}

}  // namespace

namespace {

// A running vnopfs that serves this image with its filesystem mounted somewhere: bind that mount onto
// mountpoint (per-mount ro if asked), so both show the same filesystem. "" and *bound = true when done.
std::string bind_to_running(const cfg::options& o, const std::string& abs_image, bool* bound, std::string* note) {
  for (auto& r : control::list_daemons()) {
    if (r.status.value("image", "") != abs_image || r.status.value("state", "") != "mounted") continue;
    if (r.status.value("partition", 0u) != o.partition) continue;  // another part of the disk image
    std::string dev = r.status.value("dev", "");
    std::string from;
    for (auto& m : control::mount_table())
      if (!dev.empty() && m.dev == dev && m.mountpoint != o.mountpoint) from = m.mountpoint;
    if (from.empty()) continue;
    if (::mount(from.c_str(), o.mountpoint.c_str(), nullptr, MS_BIND, nullptr) != 0)
      return "cannot bind the running vnopfs of '" + abs_image + "' (" + from + ") onto '" + o.mountpoint +
             "': " + errstr(errno);
    if (o.rdonly && ::mount(nullptr, o.mountpoint.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
      int e = errno;
      (void)::umount2(o.mountpoint.c_str(), MNT_DETACH);
      return "cannot make the bind mount '" + o.mountpoint + "' read-only: " + errstr(e);
    }
    *bound = true;
    control::record_utab(abs_image, o.mountpoint);
    *note = abs_image + " is served by vnopfs pid " + std::to_string(r.status.value("pid", 0)) + " on " + from +
            ": " + o.mountpoint + " is a bind mount of it";
    return {};
  }
  return {};
}

// -o partition=N: the bytes of partition N of the image's label, for the preflight's checks of what else
// uses them (the device layer reads the label again through the backend when the daemon opens it).
std::string partition_range(const cfg::options& o, fuse::image_range* r) {
  int fd = ::open(o.image.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "image '" + o.image + "': " + errstr(errno);
  struct stat st{};
  uint64_t size = 0;
  int ssz = 512;
  std::string e;
  if (::fstat(fd, &st) != 0) e = errstr(errno);
  else if (S_ISBLK(st.st_mode) && (::ioctl(fd, BLKGETSIZE64, &size) != 0 || ::ioctl(fd, BLKSSZGET, &ssz) != 0)) e = errstr(errno);
  else if (!S_ISBLK(st.st_mode)) size = static_cast<uint64_t>(st.st_size);
  dev::partition_extent x;
  if (e.empty()) e = dev::find_partition(dev::label_reader_fd(fd), size, static_cast<uint32_t>(ssz), o.partition, &x);
  ::close(fd);
  if (!e.empty()) return "option 'partition=" + std::to_string(o.partition) + "': image '" + o.image + "': " + e;
  r->start = x.start;
  r->length = x.length;
  return {};
}

// -o mirror=: every member other than IMAGE resolved, checked and locked like IMAGE; the member layers
// parsed. o->mirror becomes the absolute paths of the members after IMAGE.
std::string prepare_mirror(cfg::options* o, prepared* p, const fuse::image_range& range) {
  std::vector<std::string> members;
  for (const std::string& m : o->mirror) {
    char abs[PATH_MAX];
    if (::realpath(m.c_str(), abs) == nullptr) return "option 'mirror': member '" + m + "': " + errstr(errno);
    if (abs == o->image || std::find(members.begin(), members.end(), abs) != members.end()) continue;
    members.emplace_back(abs);
  }
  if (members.empty()) return "option 'mirror': a mirror needs a member besides '" + o->image + "'";
  // The state record lives beside the member (docs/dev.md): a block device's would be in /dev, lost at
  // reboot, after which a stale member could be taken for the source of a new mirror.
  {
    std::vector<std::string> all{o->image};
    all.insert(all.end(), members.begin(), members.end());
    for (const std::string& m : all) {
      struct stat st{};
      if (::stat(m.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
        return "option 'mirror': member '" + m + "' is not a regular file: its state record would have no " +
               "durable place beside it (block device members are not supported)";
    }
  }
  for (std::string& m : members) {
    int fd = -1;
    if (std::string e = fuse::preflight_image(&m, o->rdonly, &fd, kLockWaitSeconds, nullptr, range); !e.empty())
      return "option 'mirror': " + e;
    p->member_lock_fds.push_back(fd);
  }
  o->mirror = members;
  for (auto& [n, l] : o->mirror_layers) {
    if (n > members.size() + 1)
      return "option 'mirror_layers': member " + std::to_string(n) + " does not exist (the mirror has " +
             std::to_string(members.size() + 1) + ": 1 is IMAGE)";
    std::vector<dev::dev_layer_spec> specs;
    if (std::string e = dev::parse_dev_layers(l, &specs); !e.empty()) return "option 'mirror_layers': " + e;
  }
  return {};
}

}  // namespace

std::string normalize_layers(const std::string& in, std::string* out, bool relative_ok) {
  std::string names = in + ",", layers;
  for (auto& c : names) if (c == '+') c = ',';
  for (size_t q = 0, c; (c = names.find(',', q)) != std::string::npos; q = c + 1) {
    std::string spec = names.substr(q, c - q);
    size_t colon = spec.find(':');
    std::string n = spec.substr(0, colon);  // the name; its arguments are checked when the stack is built
    auto& known = layer_names();
    if (is_layer_module_path(n) && n[0] != '/' && !relative_ok)  // relative to what? Not the caller's cwd
      return "layer module '" + n + "': give an absolute path";
    if (is_layer_module_path(n))  // loaded in start(), after the fork: the path must not depend on the cwd
      spec = absolute(n) + (colon == std::string::npos ? std::string() : spec.substr(colon));
    else if (!n.empty() && std::find(known.begin(), known.end(), n) == known.end())
      return "unknown layer '" + n + "'";
    if (!spec.empty()) layers += (layers.empty() ? "" : ",") + spec;
  }
  *out = layers;
  return {};
}

std::string prepare(cfg::options* o, prepared* p) {
  if (!vnops_lookup_table(o->table))
    return "option 'table': unknown table '" + o->table + "' (known: " + vnops_table_names() + ")";
  if (std::string e = normalize_layers(o->layers, &o->layers, true); !e.empty()) return "option 'layers': " + e;
  std::vector<dev::dev_layer_spec> dev_specs;
  if (std::string e = dev::parse_dev_layers(o->dev_layers, &dev_specs); !e.empty()) return "option 'dev_layers': " + e;
  o->stats_path = absolute(o->stats_path);
  o->log_path = absolute(o->log_path);
  if (std::string e = fuse::preflight_mountpoint(&o->mountpoint); !e.empty()) return e;
  if (dev::is_nbd_uri(o->image)) o->dev_backend = cfg::backend::nbd;
  if (!o->mirror_layers.empty() && o->mirror.empty()) return "option 'mirror_layers' needs mirror=";
  if (!o->mirror.empty() && o->dev_backend == cfg::backend::nbd)
    return "option 'mirror': the members are files or block devices (backend=nbd cannot be mirrored)";
  if (o->dev_backend == cfg::backend::nbd) {
    // No file to lock or to find in the mount table: the export is ours alone (docs/dev.md); the URI is
    // checked by connecting, in start().
    if (!dev::is_nbd_uri(o->image)) return "backend=nbd: '" + o->image + "' is not an NBD URI (nbd://HOST/EXPORT, nbd+unix:///EXPORT?socket=PATH)";
    return {};
  }
  char abs[PATH_MAX];
  if (::realpath(o->image.c_str(), abs) != nullptr) {
    if (std::string e = bind_to_running(*o, abs, &p->bound, &p->note); !e.empty() || p->bound) return e;
  }
  if (o->mirror.empty()) {
    // A member of a mirror mounted alone would be changed behind its record's back (src/dev/mirror.h).
    struct stat st{};
    if (::stat((o->image + ".mirror").c_str(), &st) == 0)
      return "image '" + o->image + "' is a member of a mirror (its state record '" + o->image +
             ".mirror'): mount it with -o mirror=..., or delete the record to use it alone";
  }
  fuse::image_range range;
  if (o->partition)
    if (std::string e = partition_range(*o, &range); !e.empty()) return e;
  std::string e = fuse::preflight_image(&o->image, o->rdonly, &p->lock_fd, kLockWaitSeconds, &p->note, range);
  if (!e.empty() || o->mirror.empty()) return e;
  return prepare_mirror(o, p, range);
}

fs_daemon::~fs_daemon() = default;

fs_daemon::lock_fds::~lock_fds() {
  for (int fd : fds) ::close(fd);
}

fs_daemon::stats_link_hold::~stats_link_hold() {
  if (!path.empty()) ::unlink(path.c_str());
}

std::unique_ptr<dev::device> fs_daemon::open_backend(const std::string& path, int* err) const {
  if (o_.dev_backend == cfg::backend::nbd) {
    dev::nbd_options n;
    n.readonly = o_.rdonly;
    return dev::make_nbd_device(path, n, err);
  }
  if (o_.dev_backend == cfg::backend::uring) {
    dev::uring_options u;
    u.direct = o_.direct;
    u.readonly = o_.rdonly;
    return dev::make_uring_device(path, u, err);  // io_uring has no queue of its own to merge in
  }
  dev::file_options f;
  f.direct = o_.direct;
  f.readonly = o_.rdonly;
  f.merge_queue = o_.dev_queue_merge;
  return dev::make_file_device(path, f, err);
}

std::string fs_daemon::open_device() {
  int err = 0;
  std::unique_ptr<dev::device> backend;
  if (!o_.mirror.empty()) {
    // Each member: its backend and its own layers; the mirror over them is the stack's backend.
    std::vector<std::string> paths{o_.image};
    paths.insert(paths.end(), o_.mirror.begin(), o_.mirror.end());
    std::vector<dev::mirror_member_spec> members;
    for (size_t i = 0; i < paths.size(); i++) {
      auto b = open_backend(paths[i], &err);
      if (!b)
        return "mirror member '" + paths[i] + "': cannot open the " + cfg::backend_name(o_.dev_backend) +
               " device: " + errstr(err ? err : EIO);
      dev::mirror_member_spec m;
      m.stack = std::make_unique<dev::dev_stack>(std::move(b));
      for (auto& [n, l] : o_.mirror_layers) {
        std::vector<dev::dev_layer_spec> specs;
        std::string e = n == i + 1 ? dev::parse_dev_layers(l, &specs) : std::string();  // checked by prepare
        if (e.empty() && n == i + 1) e = m.stack->push(specs);
        if (!e.empty()) return "option 'mirror_layers': " + e;
      }
      m.label = paths[i];
      m.state_path = paths[i] + ".mirror";  // beside the member: docs/dev.md says why
      members.push_back(std::move(m));
    }
    dev::mirror_options mo;
    mo.stale = o_.mirror_resync ? dev::mirror_stale::resync : dev::mirror_stale::refuse;
    mo.readonly = o_.rdonly;
    std::string msg;
    backend = dev::make_mirror(std::move(members), mo, &msg);
    if (!backend) return msg;
  } else {
    backend = open_backend(o_.image, &err);
  }
  if (!backend)
    return "image '" + o_.image + "': cannot open the " + cfg::backend_name(o_.dev_backend) +
           " device: " + errstr(err ? err : EIO);
  devices_ = std::make_unique<dev::dev_stack>(std::move(backend));
  if (o_.partition) {
    // The label is read again here, through the backend, so the window is the one of the device served.
    dev::device* b = devices_->backend();
    dev::partition_extent x;
    // A label's LBA is the logical sector of a block device, 512 bytes in an image file (whose O_DIRECT
    // alignment, b->sector_size(), may be 4096).
    struct stat st{};
    uint32_t lba = ::stat(o_.image.c_str(), &st) == 0 && S_ISBLK(st.st_mode) ? b->sector_size() : 512;
    auto read = [b](uint64_t off, void* buf, size_t len) -> int {
      uint64_t sec = std::max<uint32_t>(b->sector_size(), 512);
      uint64_t lo = off / sec * sec, hi = (off + len + sec - 1) / sec * sec;
      void* bounce = std::aligned_alloc(sec, hi - lo);  // O_DIRECT wants aligned memory, offsets and lengths
      if (!bounce) return ENOMEM;
      int e = dev::dev_sync_io(*b, dev::io_op::read, lo, bounce, hi - lo);
      if (!e) std::memcpy(buf, static_cast<char*>(bounce) + (off - lo), len);
      std::free(bounce);
      return e;
    };
    std::string e = dev::find_partition(read, b->size(), lba, o_.partition, &x);
    if (e.empty()) {
      dev::dev_layer_spec p;
      p.name = "partition";
      p.args = {{"start", std::to_string(x.start)}, {"length", std::to_string(x.length)}};
      p.text = "partition=" + std::to_string(o_.partition) + " (" + x.scheme + ")";
      e = devices_->push({p});
    }
    if (!e.empty()) return "option 'partition=" + std::to_string(o_.partition) + "': " + e;
  }
  std::vector<dev::dev_layer_spec> specs;
  std::string e = dev::parse_dev_layers(o_.dev_layers, &specs);  // checked by prepare: cannot fail here
  if (e.empty()) e = devices_->push(specs);
  if (!e.empty()) return "option 'dev_layers': " + e;
  // A swap keeps what defines the filesystem's address space: the partition window (-o partition=, or a
  // partition layer of -o dev_layers=) and everything under it.
  dev_fixed_ = o_.partition ? 1 : 0;
  for (size_t i = 0; i < specs.size(); i++)
    if (specs[i].name == "partition") dev_fixed_ = (o_.partition ? 1 : 0) + i + 1;
  dev_switch_ = std::make_unique<dev::switch_device>(devices_->top());
  dev_layers_now_ = o_.dev_layers;
  return {};
}

std::string fs_daemon::mount_fs() {
  const fs_table* t = vnops_lookup_table(o_.table);
  if (!t) return "option 'table': unknown table '" + o_.table + "' (known: " + vnops_table_names() + ")";
  layers_ = std::make_unique<layer_stack>(t->vnops);
  std::string err;
  if (!o_.layers.empty() && !layers_->push_list(o_.layers, &err)) return "option 'layers': " + err;
  layers_now_ = o_.layers;
  if (!o_.stats_path.empty()) {
    if (!layers_->push("stats", &err)) return err;
    stats_ = static_cast<stats_layer*>(layers_->find("stats"));
  }
  mount_args a;
  a.rdonly = o_.rdonly;
  a.synchronous = o_.sync;
  a.posix_acl = o_.acl;
  a.cache_bytes = o_.cache_bytes;
  a.flush_age_ms = o_.dirty_expire_s * 1000;
  a.direct_min = o_.direct_min;
  a.layers = layers_->top();  // the table's own when no layer is stacked
  mnt_.mnt_op = t->vfs;
  mnt_.mnt_from = o_.image;
  mnt_.mnt_device = dev_switch_.get();
  mnt_.mnt_flag = (o_.rdonly ? uint32_t{MNT_RDONLY} : 0u) | (o_.sync ? uint32_t{MNT_SYNCHRONOUS} : 0u) |
                  (o_.noatime ? uint32_t{MNT_NOATIME} : 0u) | (o_.strictatime ? uint32_t{MNT_STRICTATIME} : 0u) |
                  (o_.nodiratime ? uint32_t{MNT_NODIRATIME} : 0u) | (o_.lazytime ? uint32_t{MNT_LAZYTIME} : 0u) |
                  (o_.dirsync ? uint32_t{MNT_DIRSYNC} : 0u);
  if (int e = VFS_MOUNT(&mnt_, a, vfs_context::kernel())) return "cannot mount '" + o_.image + "': " + errstr(e);
  vfs_mounted_ = true;
  vfs_hold_.d = this;

  vnode* root = nullptr;
  if (int e = VFS_ROOT(&mnt_, &root, vfs_context::kernel())) return "cannot get the root directory: " + errstr(e);
  iocount_ref root_ref(root);
  // The filesystem's limits, not the frontend's guesses.
  struct statvfs sv{};
  if (int e = VFS_STATFS(&mnt_, &sv, vfs_context::kernel())) return "cannot statfs '" + o_.image + "': " + errstr(e);
  if (sv.f_namemax > 0) fe_.name_max = sv.f_namemax;
  fe_.time_gran = mnt_.mnt_time_gran;
  inodes_ = std::make_unique<fuse::inode_table>(&mnt_);
  inodes_->set_root(root);
  // In-memory inode changes reach the flusher every min(5 s, dirty_expire) (Linux's writeback period).
  if (!o_.rdonly) syncer_ = std::make_unique<vfs_syncer>(&mnt_, std::min<uint32_t>(5000, o_.dirty_expire_s * 1000));
  return {};
}

std::string fs_daemon::unmount_fs() {
  if (!vfs_mounted_) return {};
  syncer_.reset();  // stops it: no sync runs beside the unmount
  vfs_hold_.d = nullptr;
  if (inodes_) inodes_->release_all();
  int e = VFS_UNMOUNT(&mnt_, false, vfs_context::kernel());
  if (e == EBUSY) {
    VLOG_WARN("unmount: vnodes still referenced; forcing");
    e = VFS_UNMOUNT(&mnt_, true, vfs_context::kernel());
  }
  vfs_mounted_ = false;
  return e ? "unmount of '" + o_.image + "' failed: " + errstr(e) + " (run e2fsck)" : std::string();
}

std::string fs_daemon::mount_fuse() {
  fe_.mp = &mnt_;
  fe_.opts = &o_;
  fe_.inodes = inodes_.get();
  fe_.attr_timeout = fe_.entry_timeout = o_.attr_timeout;
  fe_.direct_io = o_.kcache_mode == cfg::kcache::none;

  std::vector<std::string> av = fuse_argv(o_);
  std::vector<char*> argv;
  for (auto& a : av) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  session_.reset(fuse_session_new(&args, fuse::lowlevel_ops(), sizeof(fuse_lowlevel_ops), &fe_));
  if (!session_) return "cannot create the FUSE session";
  fe_.se = session_.get();  // for notifications (file.cpp: O_DIRECT writes)
  if (inval_.start(session_.get())) fe_.inval = &inval_;
  else VLOG_WARN("no page invalidation thread: buffered readers may see stale pages after AIO O_DIRECT writes");
  // libfuse installs its handlers only over SIG_DFL; a daemon started in the background of a script
  // inherits SIGINT ignored, and must still stop cleanly on it.
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGHUP, SIG_DFL);
  if (fuse_set_signal_handlers(session_.get()) != 0) return "cannot install the signal handlers";
  fuse_hold_.signals = true;
  if (fuse_session_mount(session_.get(), o_.mountpoint.c_str()) != 0)
    return "cannot mount FUSE on '" + o_.mountpoint + "'";
  fuse_hold_.se = session_.get();
  dev_ = control::mounted_dev(o_.mountpoint);
  control::record_utab(o_.image, o_.mountpoint);
  // libfuse 3.14 drops PARALLEL_DIROPS and HANDLE_KILLPRIV from its INIT reply: our I/O hook adds them
  // (src/fuse/kernelio.cpp). Without it the mount still works, with the kernel's defaults.
  if (int e = fuse::install_kernel_io(session_.get()))
    VLOG_WARN("INIT flags hook not installed: %s", std::strerror(e));
  return {};
}

nlohmann::json fs_daemon::stats_json() {
  nlohmann::json j;
  j["version"] = 1;
  j["time"] = static_cast<uint64_t>(::time(nullptr));
  j["pid"] = ::getpid();
  j["image"] = o_.image;
  j["mountpoint"] = o_.mountpoint;
  j["options"] = {{"kcache", cfg::kcache_name(o_.kcache_mode)}, {"backend", cfg::backend_name(o_.dev_backend)},
                  {"cache_size", o_.cache_bytes}, {"direct", o_.direct}, {"sync", o_.sync},
                  {"threads", o_.threads}, {"ro", o_.rdonly}, {"layers", o_.layers}, {"table", o_.table},
                  {"dev_queue", o_.dev_queue_merge ? "merge" : "nomerge"}, {"dev_layers", o_.dev_layers},
                  {"dirty_expire", o_.dirty_expire_s}, {"direct_min", o_.direct_min}, {"lazytime", o_.lazytime}};
  if (syncer_) j["syncer"] = {{"runs", syncer_->runs()}};
  stats_layer* st = stats_.load(std::memory_order_acquire);  // set_layers may replace it (the old one lives on)
  j["vnops"] = st ? st->to_json()["ops"] : nlohmann::json::object();
  if (vfs_mounted_) {
    auto c = cache_json(bufcache_getstats(&mnt_));
    j["cache"] = c["cache"];
    j["cluster"] = c["cluster"];
  }
  std::lock_guard dg(dev_mu_);  // set_dev_layers replaces layers of devices_
  j["options"]["layers"] = layers_now_;
  j["options"]["dev_layers"] = dev_layers_now_;
  if (devices_) {
    j["device"] = device_json(*devices_->backend());  // the backend's counters, whatever is stacked on it
    nlohmann::json st = nlohmann::json::array();   // every member, bottom first
    for (dev::device* d : devices_->members()) st.push_back(device_json(*d));
    j["device_stack"] = st;
    if (auto* m = dynamic_cast<dev::mirror_device*>(devices_->backend())) {
      nlohmann::json mm = nlohmann::json::array();
      for (size_t i = 0, n = m->status().size(); i < n; i++) mm.push_back(device_json(*m->member_device(i)));
      j["mirror_members"] = mm;  // each member's top device, in member order
    }
  }
  j["inodes"] = inodes_ ? inodes_->size() : 0;
  j["page_invalidation"] = {{"done", inval_.done()}, {"timeouts", inval_.timeouts()},
                            {"long_timeouts", inval_.long_timeouts()}};
  return j;
}

std::string fs_daemon::start_stats() {
  if (o_.stats_path.empty()) return {};
  stats_writer_ = std::make_unique<fuse::stats_writer>(o_.stats_path, o_.stats_interval, [this] { return stats_json(); },
                                                       o_.stats_prometheus);
  if (int e = stats_writer_->write_now()) return "stats file '" + o_.stats_path + "': " + errstr(e);
  ::mkdir("/run/vnopfs", 0755);
  std::string link = fuse::stats_link_path(o_.mountpoint);
  ::unlink(link.c_str());
  if (::symlink(o_.stats_path.c_str(), link.c_str()) == 0) stats_link_.path = link;
  stats_writer_->start();
  return {};
}

std::string fs_daemon::start() {
  std::signal(SIGPIPE, SIG_IGN);
  for (auto step : {&fs_daemon::open_device, &fs_daemon::mount_fs, &fs_daemon::mount_fuse, &fs_daemon::start_stats})
    if (std::string e = (this->*step)(); !e.empty()) return e;
  std::lock_guard g(state_mu_);
  serving_ = true;
  return {};
}

void fs_daemon::log_mounted(const std::string& note) const {
  if (!note.empty()) {
    VLOG_INFO("%s", note.c_str());
    syslog(LOG_INFO, "%s", note.c_str());
  }
  VLOG_INFO("%s mounted on %s (%s, kcache=%s, backend=%s, cache %zu MiB)", o_.image.c_str(), o_.mountpoint.c_str(),
            o_.subtype ? "fuse.vnopfs" : "fuse", cfg::kcache_name(o_.kcache_mode), cfg::backend_name(o_.dev_backend),
            o_.cache_bytes >> 20);
  syslog(LOG_INFO, "%s mounted on %s", o_.image.c_str(), o_.mountpoint.c_str());
}

bool fs_daemon::fs_rdonly() {
  struct statvfs sv{};
  return vfs_mounted_ && VFS_STATFS(&mnt_, &sv, vfs_context::kernel()) == 0 && (sv.f_flag & ST_RDONLY);
}

nlohmann::json fs_daemon::status_json() {
  std::lock_guard g(state_mu_);
  return {{"pid", ::getpid()},
          {"image", o_.image},
          {"mountpoint", o_.mountpoint},
          {"dev", dev_},
          {"partition", o_.partition},
          {"state", serving_ ? "mounted" : "flushing"},
          {"ro", fs_rdonly()},
          {"fstype", o_.subtype ? "fuse.vnopfs" : "fuse"},
          {"fsname", o_.fsname.empty() ? o_.image : o_.fsname},
          {"table", o_.table},
          {"layers", layers_names()},
          {"device_stack", device_names()},
          {"mirror", mirror_json()}};
}

nlohmann::json fs_daemon::mirror_json() const {
  auto* m = devices_ ? dynamic_cast<dev::mirror_device*>(devices_->backend()) : nullptr;
  if (!m) return nullptr;
  nlohmann::json v = nlohmann::json::array();
  size_t live = 0;
  size_t members = 0;
  for (const dev::mirror_member_status& s : m->status()) {
    live += s.in_service;
    members += !s.removed;
    uint64_t size = devices_->backend()->size();
    std::string state = s.removed ? "removed"
                        : s.syncing ? "resyncing in the background (" +
                                          std::to_string(size ? s.sync_bytes * 100 / size : 100) + "%)"
                        : s.in_service ? (!s.resynced ? "in sync"
                                          : s.sync_bytes ? "in sync (copied while mounted)"
                                                         : "in sync (resynced at mount)")
                        : s.error == ESTALE ? "stale (left out of service: read-only mount)"
                                            : std::string("failed (") + dev::io_op_name(s.failed_op) + ": " + errstr(s.error) + ")";
    v.push_back({{"path", s.label}, {"device", s.device}, {"in_service", s.in_service}, {"state", state},
                 {"syncing", s.syncing}, {"sync_bytes", s.sync_bytes}, {"removed", s.removed},
                 {"events", s.events}, {"reads", s.reads}, {"writes", s.stats.writes}, {"errors", s.stats.errors}});
  }
  return {{"events", m->events()}, {"in_service", live}, {"degraded", live < members}, {"members", v}};
}

nlohmann::json fs_daemon::layers_names() const {
  nlohmann::json v = nlohmann::json::array();  // bottom first, the table's own not included
  if (layers_)
    for (auto& l : layers_->layers()) v.push_back(l->name());
  return v;
}

nlohmann::json fs_daemon::device_names() const {
  std::lock_guard dg(dev_mu_);
  nlohmann::json v = nlohmann::json::array();  // bottom first
  if (devices_)
    for (dev::device* d : devices_->members()) v.push_back(d->name());
  return v;
}

std::string fs_daemon::remount(bool ro) {
  std::lock_guard g(state_mu_);
  if (!serving_) return "the daemon is unmounting";
  if (ro == fs_rdonly()) return {};
  if (!ro && o_.rdonly) return "'" + o_.image + "' was mounted read-only (the image is open read-only): unmount and mount it rw";
  mount_args a;
  a.update = true;
  a.rdonly = ro;
  std::unique_lock<std::mutex> no_sync;  // a lazy sync must not copy inodes into buffers after the last flush
  if (syncer_) no_sync = syncer_->hold();
  if (int e = VFS_MOUNT(&mnt_, a, vfs_context::kernel()))
    return std::string("remount ") + (ro ? "ro" : "rw") + " of '" + o_.image + "': " + errstr(e);
  VLOG_INFO("%s remounted %s", o_.image.c_str(), ro ? "read-only (flushed, marked clean)" : "read-write");
  return {};
}

std::string fs_daemon::set_layers(const std::string& spec_in) {
  std::lock_guard g(state_mu_);
  if (!serving_) return "the daemon is unmounting";
  std::string spec;
  if (std::string e = normalize_layers(spec_in == "none" ? std::string() : spec_in, &spec, false); !e.empty())
    return e;
  const fs_table* t = vnops_lookup_table(o_.table);
  auto fresh = std::make_unique<layer_stack>(t->vnops);
  std::string err;
  if (!spec.empty() && !fresh->push_list(spec, &err)) return err;
  stats_layer* st = nullptr;
  if (!o_.stats_path.empty()) {
    if (!fresh->push("stats", &err)) return err;
    st = static_cast<stats_layer*>(fresh->find("stats"));
  }
  auto t0 = std::chrono::steady_clock::now();
  if (!mnt_.mnt_requests.close(std::chrono::milliseconds(kSwapDrainMs)))
    return "requests in progress did not finish within " + std::to_string(kSwapDrainMs / 1000) +
           " s (one may be waiting for another); nothing changed";
  // No request runs now. The flusher may: its ops finish on the stack they started on, kept below.
  size_t n = vfs_set_vnops(&mnt_, fresh->top());
  if (st) {
    if (stats_layer* old = stats_.load(std::memory_order_acquire)) st->absorb(*old);  // one series for scrapers
    stats_.store(st, std::memory_order_release);
  }
  retired_layers_.push_back(std::move(layers_));
  layers_ = std::move(fresh);
  mnt_.mnt_requests.open();
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::string was;
  {
    std::lock_guard dg(dev_mu_);
    was = layers_now_;
    layers_now_ = spec;
  }
  VLOG_INFO("layers: '%s' -> '%s' (%zu vnodes, requests held %.1f ms)", was.c_str(), spec.c_str(), n, ms);
  return {};
}

std::string fs_daemon::set_dev_layers(const std::string& spec_in) {
  std::lock_guard g(state_mu_);
  if (!serving_) return "the daemon is unmounting";
  std::string spec = spec_in == "none" ? std::string() : spec_in;
  for (auto& c : spec) if (c == '+') c = ',';
  std::vector<dev::dev_layer_spec> specs;
  if (std::string e = dev::parse_dev_layers(spec, &specs); !e.empty()) return e;
  for (auto& x : specs)
    if (x.name == "partition")
      return "device layer 'partition' changes the device the filesystem lives on: only at mount";
  if (o_.rdonly)
    for (auto& x : specs)
      if (x.name == "record") return "device layer 'record' on a read-only mount: nothing would be recorded";
  // Built first, beside the old layers, while requests go on: a bad argument or a log that cannot be made
  // changes nothing.
  std::vector<std::unique_ptr<dev::device>> built, old;
  if (std::string e = devices_->build_over(dev_fixed_, specs, &built); !e.empty()) return e;
  auto t0 = std::chrono::steady_clock::now();
  if (!dev_switch_->suspend(std::chrono::milliseconds(kSwapDrainMs))) {
    while (!built.empty()) built.pop_back();
    return "device requests in flight did not complete within " + std::to_string(kSwapDrainMs / 1000) +
           " s; nothing changed";
  }
  {
    std::lock_guard dg(dev_mu_);
    devices_->replace(dev_fixed_, std::move(built), &old);
    std::swap(dev_layers_now_, spec);
  }
  dev_switch_->resume(devices_->top());
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  while (!old.empty()) old.pop_back();  // top first; nothing is in flight in them
  VLOG_INFO("device layers: '%s' -> '%s' (device requests held %.1f ms)", spec.c_str(), dev_layers_now_.c_str(), ms);
  return {};
}

std::string fs_daemon::serving_mirror(dev::mirror_device** m) const {
  if (!serving_) return "the daemon is unmounting";
  *m = devices_ ? dynamic_cast<dev::mirror_device*>(devices_->backend()) : nullptr;
  return *m ? std::string() : "'" + o_.image + "' is not mounted as a mirror (-o mirror=)";
}

std::string fs_daemon::mirror_add(const std::string& path_in) {
  std::lock_guard g(state_mu_);
  dev::mirror_device* m = nullptr;
  if (std::string e = serving_mirror(&m); !e.empty()) return e;
  std::string path = path_in;
  char abs[PATH_MAX];
  if (::realpath(path.c_str(), abs)) path = abs;
  for (const dev::mirror_member_status& s : m->status())
    if (s.label == path && !s.removed) return "'" + path + "' is already a member of this mirror";
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    return "mirror member '" + path + "' is not a regular file (block device members are not supported)";
  int fd = -1;  // the member is checked and locked like IMAGE (not mounted, not served, not another's)
  if (std::string e = fuse::preflight_image(&path, o_.rdonly, &fd, 0, nullptr, {}); !e.empty()) return e;
  int err = 0;
  dev::mirror_member_spec spec;
  auto b = open_backend(path, &err);
  if (!b) {
    ::close(fd);
    return "mirror member '" + path + "': cannot open the " + std::string(cfg::backend_name(o_.dev_backend)) +
           " device: " + errstr(err ? err : EIO);
  }
  spec.stack = std::make_unique<dev::dev_stack>(std::move(b));
  spec.label = path;
  spec.state_path = path + ".mirror";
  // add_member wants nothing in flight in the mirror: the switch above holds new requests meanwhile.
  if (!dev_switch_->suspend(std::chrono::milliseconds(kSwapDrainMs))) {
    ::close(fd);
    return "device requests in flight did not complete within " + std::to_string(kSwapDrainMs / 1000) + " s";
  }
  std::string e;
  {
    std::lock_guard dg(dev_mu_);
    e = m->add_member(std::move(spec));
  }
  dev_switch_->resume(dev_switch_->target());
  if (!e.empty()) {
    ::close(fd);
    return e;
  }
  member_locks_.fds.push_back(fd);
  return {};
}

std::string fs_daemon::mirror_remove(const std::string& path_in) {
  std::lock_guard g(state_mu_);
  dev::mirror_device* m = nullptr;
  if (std::string e = serving_mirror(&m); !e.empty()) return e;
  char abs[PATH_MAX];
  std::string path = ::realpath(path_in.c_str(), abs) ? std::string(abs) : path_in;
  return m->remove_member(path);
}

std::string fs_daemon::serve(const std::function<void()>& on_unmounting) {
  fuse_loop_config* lc = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(lc, static_cast<unsigned>(o_.threads));
  fuse_loop_cfg_set_clone_fd(lc, 0);
  (void)fuse_session_loop_mt(session_.get(), lc);
  fuse_loop_cfg_destroy(lc);

  // Unmounted by the kernel (umount, fusermount3 -u) or asked to stop (SIGTERM, SIGINT, SIGHUP): detach the
  // mount if still there, then flush everything and mark the filesystem clean. The stats file gets the
  // figures before and after the last flush.
  {
    std::lock_guard g(state_mu_);
    serving_ = false;
  }
  if (on_unmounting) on_unmounting();
  fuse_remove_signal_handlers(session_.get());
  fuse_hold_.signals = false;
  inval_.stop();  // the workers are gone; an invalidation blocked in the kernel ends with the connection
  fuse_session_unmount(session_.get());
  fuse_hold_.se = nullptr;
  inval_.join();
  if (stats_writer_) {
    stats_writer_->stop();
    (void)stats_writer_->write_now();
  }
  std::string err = unmount_fs();
  if (stats_writer_) (void)stats_writer_->write_now();
  control::forget_utab(o_.image, o_.mountpoint);
  VLOG_INFO("%s unmounted%s", o_.image.c_str(), err.empty() ? " cleanly" : " with errors");
  syslog(err.empty() ? LOG_INFO : LOG_ERR, "%s unmounted%s", o_.image.c_str(), err.empty() ? " cleanly" : " with errors");
  return err;
}

}  // namespace vnopfs::daemon

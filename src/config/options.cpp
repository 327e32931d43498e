// options.cpp: command line, -o options and the JSON config file of the vnopfs daemon.
#include "src/config/options.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#ifndef VNOPFS_VERSION
#define VNOPFS_VERSION "0.0"
#endif

namespace vnopfs::config {

namespace {

// mount(8)'s generic options that mean something to the kernel: handed to libfuse as mount flags.
const std::set<std::string> kKernelFlags = {
    "dev", "nodev", "suid", "nosuid", "exec", "noexec", "relatime", "norelatime", "strictatime",
    "nostrictatime", "nodiratime", "diratime", "atime", "dirsync", "lazytime", "nolazytime", "async"};
// mount(8)'s generic options that mean nothing to a FUSE daemon (fstab and mount.fuse3 pass them).
const std::set<std::string> kIgnored = {"auto", "noauto", "user", "nouser", "users", "_netdev", "defaults",
                                        "nofail", "owner", "group", "silent", "loud"};

bool parse_bool_word(const std::string& v, bool* out) {
  if (v == "1" || v == "true" || v == "yes" || v == "on") { *out = true; return true; }
  if (v == "0" || v == "false" || v == "no" || v == "off") { *out = false; return true; }
  return false;
}

bool parse_int(const std::string& s, long lo, long hi, long* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (errno || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool parse_seconds(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (*end || !std::isfinite(v) || v < 0 || v > 86400) return false;
  *out = v;
  return true;
}

std::string bad_value(const std::string& key, const std::string& v) {
  return "bad value for option '" + key + "': '" + v + "'";
}

// Applies key (with value, has_value says whether "=" was given). The same code serves -o and JSON.
std::string apply_kv(options* o, const std::string& key, const std::string& v, bool has_value) {
  auto flag = [&](bool* dst, bool set) -> std::string {
    if (!has_value) { *dst = set; return {}; }
    bool b;
    if (!parse_bool_word(v, &b)) return bad_value(key, v);
    *dst = set ? b : !b;
    return {};
  };
  auto need_value = [&]() -> std::string {
    return has_value && !v.empty() ? std::string() : "option '" + key + "' needs a value";
  };
  if (key == "ro") return flag(&o->rdonly, true);
  if (key == "rw") return flag(&o->rdonly, false);
  if (key == "sync") return flag(&o->sync, true);
  if (key == "killpriv_v2") return flag(&o->killpriv_v2, true);
  if (key == "acl") return flag(&o->acl, true);
  if (key == "noacl") return flag(&o->acl, false);
  if (key == "direct") return flag(&o->direct, true);
  if (key == "allow_other") return flag(&o->allow_other, true);
  if (key == "default_permissions") return flag(&o->default_permissions, true);
  if (key == "no_default_permissions") return flag(&o->default_permissions, false);
  if (key == "noatime") {
    std::string e = flag(&o->noatime, true);
    if (e.empty() && o->noatime) o->kernel_opts.push_back("noatime");
    return e;
  }
  if (key == "kcache") {
    if (auto e = need_value(); !e.empty()) return e;
    if (v == "none") o->kcache_mode = kcache::none;
    else if (v == "writethrough") o->kcache_mode = kcache::writethrough;
    else if (v == "writeback") o->kcache_mode = kcache::writeback;
    else return bad_value(key, v) + " (none, writethrough or writeback)";
    return {};
  }
  if (key == "backend") {
    if (auto e = need_value(); !e.empty()) return e;
    if (v == "file") o->dev_backend = backend::file;
    else if (v == "uring") o->dev_backend = backend::uring;
    else if (v == "nbd") o->dev_backend = backend::nbd;
    else return bad_value(key, v) + " (file, uring or nbd)";
    return {};
  }
  if (key == "table") {
    if (auto e = need_value(); !e.empty()) return e;
    o->table = v;  // checked against the registry of tables (vnops/registry.h) by the daemon
    return {};
  }
  if (key == "dev_queue") {
    if (auto e = need_value(); !e.empty()) return e;
    if (v == "merge") o->dev_queue_merge = true;
    else if (v == "nomerge") o->dev_queue_merge = false;
    else return bad_value(key, v) + " (merge or nomerge)";
    return {};
  }
  if (key == "cache_size") {
    if (auto e = need_value(); !e.empty()) return e;
    size_t n;
    if (!parse_size(v, &n) || n < (1u << 20)) return bad_value(key, v) + " (a size of at least 1M)";
    o->cache_bytes = n;
    return {};
  }
  if (key == "direct_min") {
    if (auto e = need_value(); !e.empty()) return e;
    size_t n;
    if (!parse_size(v, &n) || n > (1u << 30)) return bad_value(key, v) + " (a size up to 1G, or 0 for never)";
    o->direct_min = n;
    return {};
  }
  if (key == "dirty_expire") {
    if (auto e = need_value(); !e.empty()) return e;
    long n;
    if (!parse_int(v, 1, 3600, &n)) return bad_value(key, v) + " (seconds, 1 to 3600)";
    o->dirty_expire_s = static_cast<uint32_t>(n);
    return {};
  }
  if (key == "threads") {
    if (auto e = need_value(); !e.empty()) return e;
    long n;
    if (!parse_int(v, 1, 256, &n)) return bad_value(key, v) + " (1 to 256)";
    o->threads = static_cast<int>(n);
    return {};
  }
  if (key == "attr_timeout") {
    if (auto e = need_value(); !e.empty()) return e;
    if (!parse_seconds(v, &o->attr_timeout)) return bad_value(key, v) + " (seconds)";
    return {};
  }
  if (key == "stats_interval") {
    if (auto e = need_value(); !e.empty()) return e;
    if (!parse_seconds(v, &o->stats_interval) || o->stats_interval < 0.05) return bad_value(key, v) + " (seconds >= 0.05)";
    return {};
  }
  if (key == "stats_format") {
    if (auto e = need_value(); !e.empty()) return e;
    if (v == "json") o->stats_prometheus = false;
    else if (v == "prometheus") o->stats_prometheus = true;
    else return bad_value(key, v) + " (json or prometheus)";
    return {};
  }
  if (key == "stats") {
    if (auto e = need_value(); !e.empty()) return e;
    o->stats_path = v;
    return {};
  }
  if (key == "layers") {
    // "+" separates layers on -o (a comma would end the option; ':' starts a layer's arguments, e.g.
    // faults:op=write:errno=EIO); stored comma-separated for layer_stack.
    std::string l = v;
    for (auto& c : l) if (c == '+') c = ',';
    o->layers = l;  // names are checked against the layer registry by the daemon
    return {};
  }
  if (key == "partition") {
    if (auto e = need_value(); !e.empty()) return e;
    char* end = nullptr;
    errno = 0;
    unsigned long n = std::strtoul(v.c_str(), &end, 10);
    if (v.empty() || *end || errno || n < 1 || n > 4096 || v[0] == '-' || v[0] == '+')
      return bad_value(key, v) + " (a partition number, 1..4096)";
    o->partition = static_cast<unsigned>(n);
    return {};
  }
  if (key == "dev_layers") {
    // The same form as layers= ('+' between layers, ':' before each argument); stored comma-separated.
    // Names and arguments are checked by the daemon's prepare (src/dev/stack.h).
    std::string l = v;
    for (auto& c : l) if (c == '+') c = ',';
    o->dev_layers = l;
    return {};
  }
  if (key == "mirror") {
    if (auto e = need_value(); !e.empty()) return e;
    o->mirror.clear();
    std::string l = v + "+";
    for (size_t q = 0, c; (c = l.find('+', q)) != std::string::npos; q = c + 1)
      if (c > q) o->mirror.push_back(l.substr(q, c - q));
    if (o->mirror.empty()) return bad_value(key, v) + " (FILE+FILE...)";
    return {};
  }
  if (key == "mirror_resync") {
    if (auto e = need_value(); !e.empty()) return e;
    if (v == "yes") o->mirror_resync = true;
    else if (v == "no") o->mirror_resync = false;
    else return bad_value(key, v) + " (yes: copy a current member over a stale one; no: refuse the mount)";
    return {};
  }
  if (key == "mirror_layers") {
    // N@LAYERS, once per member: LAYERS as for dev_layers ('+' between layers), checked by the daemon.
    if (auto e = need_value(); !e.empty()) return e;
    size_t at = v.find('@');
    char* end = nullptr;
    unsigned long n = at == std::string::npos ? 0 : std::strtoul(v.substr(0, at).c_str(), &end, 10);
    if (n < 1 || n > 32 || !end || *end) return bad_value(key, v) + " (MEMBER@LAYERS, MEMBER 1 for IMAGE, 2.. for mirror=)";
    std::string l = v.substr(at + 1);
    for (auto& c : l) if (c == '+') c = ',';
    o->mirror_layers.emplace_back(static_cast<unsigned>(n), l);
    return {};
  }
  if (key == "fsname") {
    if (auto e = need_value(); !e.empty()) return e;
    o->fsname = v;
    return {};
  }
  if (key == "fstype") {
    if (auto e = need_value(); !e.empty()) return e;
    if (v == "fuse") o->subtype = false;
    else if (v == "fuse.vnopfs") o->subtype = true;
    else return bad_value(key, v) + " (fuse or fuse.vnopfs)";
    return {};
  }
  if (key == "nosubtype") {
    if (has_value) return bad_value(key, v) + " (takes no value)";
    o->subtype = false;
    return {};
  }
  if (key == "log") {
    if (auto e = need_value(); !e.empty()) return e;
    o->log_path = v;
    return {};
  }
  if (kKernelFlags.count(key) && !has_value) {
    // The atime rules are ours to keep (FUSE inodes are S_NOATIME: the kernel updates no atime), combined as
    // do_new_mount does. libfuse 3.14 refuses all of them but atime/noatime, so only those go on.
    if (key == "atime") o->noatime = false;
    if (key == "strictatime" || key == "norelatime") o->noatime = false, o->strictatime = true;
    if (key == "relatime" || key == "nostrictatime") o->strictatime = false;
    if (key == "nodiratime" || key == "diratime") o->nodiratime = key == "nodiratime";
    if (key == "lazytime" || key == "nolazytime") o->lazytime = key == "lazytime";
    if (key == "dirsync") o->dirsync = true;  // ours to keep (vnops/ext2/dirsync.cpp); the kernel shows it
    if (key.find("time") != std::string::npos && key != "atime") return {};
    o->kernel_opts.push_back(key);
    return {};
  }
  if (kIgnored.count(key) && !has_value) return {};
  if (key == "remount")
    return "option 'remount' is not supported: unmount and mount again (the image is locked by the running daemon)";
  return "unknown option '" + key + (has_value ? "=" + v : std::string()) + "'";
}

// Splits "a,b=c,d" honouring backslash escapes ("\," is a comma inside a value).
std::vector<std::string> split_opts(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 1 < s.size()) { cur += s[++i]; continue; }
    if (s[i] == ',') { out.push_back(cur); cur.clear(); continue; }
    cur += s[i];
  }
  out.push_back(cur);
  return out;
}

}  // namespace

bool parse_size(const std::string& s, size_t* out) {
  if (s.empty() || !std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (errno) return false;
  std::string unit(end);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() >= 2 && unit.substr(unit.size() - 2) == "IB") unit.resize(unit.size() - 2);
  else if (unit.size() == 2 && unit[1] == 'B') unit.resize(1);
  else if (unit == "B") unit.clear();
  unsigned shift = 0;
  if (unit.empty()) shift = 0;
  else if (unit == "K") shift = 10;
  else if (unit == "M") shift = 20;
  else if (unit == "G") shift = 30;
  else if (unit == "T") shift = 40;
  else return false;
  if (shift && v > (~0ull >> shift)) return false;
  *out = static_cast<size_t>(v << shift);
  return true;
}

const char* kcache_name(kcache k) {
  switch (k) {
    case kcache::none: return "none";
    case kcache::writethrough: return "writethrough";
    case kcache::writeback: return "writeback";
  }
  return "?";
}
const char* backend_name(backend b) { return b == backend::file ? "file" : b == backend::uring ? "uring" : "nbd"; }

std::string apply_option(options* o, const std::string& opt) {
  if (opt.empty()) return {};
  auto eq = opt.find('=');
  if (eq == std::string::npos) return apply_kv(o, opt, {}, false);
  return apply_kv(o, opt.substr(0, eq), opt.substr(eq + 1), true);
}

std::string apply_config_file(options* o, const std::string& path) {
  std::ifstream in(path);
  if (!in) return "config '" + path + "': " + std::strerror(errno);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    return "config '" + path + "': not valid JSON: " + e.what();
  }
  if (!j.is_object()) return "config '" + path + "': the top level must be an object of options";
  o->config_path = path;
  for (auto& [key, val] : j.items()) {
    if (key == "config") return "config '" + path + "': key 'config' cannot nest";
    std::string v;
    bool has_value = true;
    if (val.is_boolean()) {
      v = val.get<bool>() ? "true" : "false";
    } else if (val.is_number_integer()) {
      v = std::to_string(val.get<long long>());
    } else if (val.is_number()) {
      std::ostringstream ss;
      ss << val.get<double>();
      v = ss.str();
    } else if (val.is_string()) {
      v = val.get<std::string>();
    } else {
      return "config '" + path + "': bad value for key '" + key + "': " + val.dump();
    }
    // Kernel flags and ignored words take no value on -o; in JSON they are booleans: true applies them.
    if ((kKernelFlags.count(key) || kIgnored.count(key) || key == "ro" || key == "rw") && val.is_boolean()) {
      if (!val.get<bool>()) continue;
      has_value = false;
    }
    std::string err = apply_kv(o, key, v, has_value);
    if (!err.empty()) {
      if (err.rfind("unknown option", 0) == 0) return "config '" + path + "': unknown key '" + key + "'";
      return "config '" + path + "': " + err;
    }
  }
  return {};
}

std::string usage() {
  return
      "usage: vnopfs IMAGE MOUNTPOINT [-o opt[,opt...]] [-f] [-d] [--help] [--version]\n"
      "\n"
      "Serves the ext2 image IMAGE at MOUNTPOINT through FUSE, with the VNOP table -o table= names.\n"
      "\n"
      "  -f                     stay in the foreground\n"
      "  -d                     print every FUSE request (implies -f)\n"
      "  -o ro | rw             read-only or read-write (rw)\n"
      "  -o kcache=MODE         kernel caching: none | writethrough (default) | writeback\n"
      "  -o table=NAME          the filesystem's VNOP table, i.e. its write path: ext2 (default: cluster layer),\n"
      "                         ext2-buf (per-block buffers), ext2-direct (file data uncached), ext2-sync\n"
      "                         (data and metadata on the device before each call returns)\n"
      "  -o dev_queue=merge|nomerge  the device queue folds adjacent writes into one (merge, default) or not\n"
      "  -o cache_size=SIZE     buffer cache size, with K/M/G (256M)\n"
      "  -o direct_min=SIZE     writes of at least SIZE whole blocks skip the cache (128K; 0: never)\n"
      "  -o backend=file|uring|nbd  device backend (file; nbd: IMAGE is an NBD URI, nbd://HOST/EXPORT or\n"
      "                         nbd+unix:///EXPORT?socket=PATH, which also selects it; docs/dev.md)\n"
      "  -o direct              O_DIRECT on the image file\n"
      "  -o sync                every write is synchronous (IO_SYNC), and every directory change (dirsync)\n"
      "  -o dirsync             directory changes (create, unlink, rename, ...) are stable before they return\n"
      "  -o dirty_expire=SECS   data and metadata changed longer ago than this are written without fsync (30)\n"
      "  -o allow_other         let other users in (needs user_allow_other for non-root)\n"
      "  -o default_permissions kernel permission checks (on by default; no_default_permissions turns off)\n"
      "  -o acl | noacl         POSIX ACLs (acl; off on an image without the ext_attr feature)\n"
      "  -o killpriv_v2=on|off  the daemon removes suid/sgid/capabilities and the kernel stops asking for\n"
      "                         security.capability before every write (on)\n"
      "  -o threads=N           FUSE worker threads (10)\n"
      "  -o attr_timeout=SECS   kernel attribute and entry cache time (1)\n"
      "  -o stats=PATH          live statistics as JSON, written every stats_interval seconds (1) and at exit;\n"
      "                         read them with vnopfs-stat MOUNTPOINT\n"
      "  -o stats_format=F      json (default) or prometheus: the stats file in the Prometheus text format\n"
      "  -o layers=L1+L2        VNOP layers over the table, bottom first: trace, sync, nocache, stats, readonly,\n"
      "                         faults:op=OP:errno=E[:every=N:ino=N:path=P:prob=P:seed=S], delay:op=OP:us=N[:dist=exp]\n"
      "                         or /path/mylayer.so[:KEY=VALUE...]: a layer module (docs/experiments.md)\n"
      "  -o partition=N         serve partition N of the image's MBR or GPT label (docs/dev.md)\n"
      "  -o dev_layers=D1+D2    device layers over the image, bottom first: faults[:op=OP:errno=E:...],\n"
      "                         partition:start=BYTES[:length=BYTES], record:log=PATH (docs/dev.md)\n"
      "  -o mirror=A+B          RAID-1 of IMAGE and the files A, B... (IMAGE may be listed again): writes to\n"
      "                         all, reads balanced, a failing member degraded (docs/dev.md)\n"
      "  -o mirror_resync=yes|no  a member that missed writes is copied over at mount (yes) or refused (no)\n"
      "  -o mirror_layers=N@D1+D2  device layers under member N (1 = IMAGE), e.g. 2@faults:op=write:every=50\n"
      "  -o fsname=NAME         the source shown by df and /proc/mounts (the image path)\n"
      "  -o fstype=fuse         mount type plain fuse, for harnesses that check it (default fuse.vnopfs);\n"
      "                         nosubtype is the same\n"
      "  -o log=PATH            the daemon's log once in the background (/dev/null)\n"
      "  -o config=FILE.json    the same keys as a JSON object; -o options win\n"
      "  mount(8)'s generic options are accepted: noatime, relatime, strictatime, nodiratime, atime, lazytime,\n"
      "  dev, nodev, suid, nosuid, exec, noexec, auto, noauto, user, nouser, _netdev, defaults\n"
      "\n"
      "Unmount with: umount MOUNTPOINT (as root, with /sbin/umount.fuse.vnopfs: returns when the image is\n"
      "flushed and released), or fusermount3 -u MOUNTPOINT and then vnopfs-ctl MOUNTPOINT wait.\n";
}

std::string version() { return std::string("vnopfs ") + VNOPFS_VERSION + "\n"; }

std::string parse_command_line(int argc, char** argv, options* o) {
  std::vector<std::string> positional;
  std::vector<std::string> opts;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") { o->act = options::action::help; return {}; }
    if (a == "--version" || a == "-V") { o->act = options::action::version; return {}; }
    if (a == "-f") { o->foreground = true; continue; }
    if (a == "-d" || a == "--debug") { o->debug = true; o->foreground = true; continue; }
    if (a == "-s") continue;  // single-threaded in libfuse's helpers; we always run multi-threaded
    if (a == "-o") {
      if (i + 1 >= argc) return "-o needs an argument";
      for (auto& s : split_opts(argv[++i])) opts.push_back(s);
      continue;
    }
    if (a.rfind("-o", 0) == 0 && a.size() > 2) {
      for (auto& s : split_opts(a.substr(2))) opts.push_back(s);
      continue;
    }
    if (a.size() > 1 && a[0] == '-') return "unknown argument '" + a + "' (see vnopfs --help)";
    positional.push_back(a);
  }
  if (positional.size() != 2) return "expected IMAGE and MOUNTPOINT (see vnopfs --help)";
  o->image = positional[0];
  o->mountpoint = positional[1];
  // config= first, so every other -o option wins over the file.
  for (auto& s : opts) {
    if (s.rfind("config=", 0) != 0) continue;
    std::string path = s.substr(7);
    if (path.empty()) return "option 'config' needs a value";
    if (std::string err = apply_config_file(o, path); !err.empty()) return err;
  }
  for (auto& s : opts) {
    if (s.rfind("config=", 0) == 0) continue;
    if (std::string err = apply_option(o, s); !err.empty()) return err;
  }
  return {};
}

}  // namespace vnopfs::config

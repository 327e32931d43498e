// options.h: the vnopfs daemon's configuration: command line, -o options and the JSON config file.
//
// One struct, filled in this order: defaults, then config=FILE.json (if named), then every -o option in
// command-line order (so -o wins over the file). Every unknown option or key and every bad value is an
// error whose message names it; nothing is touched before parsing has fully succeeded.
// No FUSE header here: the frontend turns `kernel_opts` into libfuse's mount options itself.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace vnopfs::config {

// How much the kernel caches (see docs/fuse.md):
//   none          direct_io on every open: every read and write reaches the VNOPs; no shared mmap (ENODEV)
//   writethrough  the page cache serves reads and mmap; every write() reaches VNOP_WRITE before it returns
//   writeback     FUSE writeback cache: the kernel buffers writes, owns O_APPEND and mtime/ctime
enum class kcache { none, writethrough, writeback };
enum class backend { file, uring, nbd };  // nbd: IMAGE is an NBD URI (src/dev/nbd.cpp)

struct options {
  // What the command line asks for: mount (the default), or print the usage or the version and exit.
  enum class action { mount, help, version } act = action::mount;
  std::string image;        // absolute (realpath) once validated
  std::string mountpoint;   // absolute (realpath) once validated
  bool foreground = false;  // -f
  bool debug = false;       // -d (libfuse's request trace; implies -f)

  bool rdonly = false;
  std::string table = "ext2";   // the filesystem table by name (vnops/registry.h), checked by the daemon
  bool dev_queue_merge = true;  // the file backend's queue folds adjacent writes (dev_queue=nomerge: off)
  kcache kcache_mode = kcache::writethrough;
  size_t cache_bytes = 256u << 20;
  size_t direct_min = 128u << 10;  // large aligned writes go straight to the device (mount_args::direct_min)
  uint32_t dirty_expire_s = 30;  // changes older than this are written without fsync (the syncer + flusher)
  backend dev_backend = backend::file;
  bool direct = false;          // O_DIRECT on the backing file
  bool sync = false;            // every write IO_SYNC, and directory changes synchronous (dirsync)
  bool dirsync = false;         // directory changes (create, unlink, rename, ...) synchronous (MNT_DIRSYNC)
  bool allow_other = false;
  bool default_permissions = true;
  bool acl = true;              // POSIX ACLs (the image needs ext_attr)
  bool killpriv_v2 = true;      // negotiate FUSE_HANDLE_KILLPRIV_V2 (off: the kernel's GETXATTR per write)
  bool noatime = false;         // noatime; else relatime rules unless strictatime (see vnops/ext2/read.cpp)
  bool strictatime = false;
  bool nodiratime = false;
  bool lazytime = false;
  int threads = 10;             // FUSE worker threads (max_threads)
  double attr_timeout = 1.0;    // seconds the kernel may cache attributes and entries
  std::string stats_path;       // live stats JSON (empty: none)
  std::string layers;           // VNOP layers over the filesystem's table, bottom first ("trace,sync")
  unsigned partition = 0;       // serve partition N of the image's MBR/GPT label (0: the whole image; src/dev/label.h)
  std::string dev_layers;       // device layers over the backend, bottom first ("record:log=/tmp/l"; src/dev/stack.h)
  // -o mirror=A+B: a RAID-1 of IMAGE and these files (src/dev/mirror.h; IMAGE is the first member, and may
  // be listed again); mirror_resync=no refuses a stale member instead of copying over it; mirror_layers=N@L
  // puts device layers L under member N (1 = IMAGE), e.g. a faults layer for tests.
  std::vector<std::string> mirror;
  bool mirror_resync = true;
  std::vector<std::pair<unsigned, std::string>> mirror_layers;
  bool stats_prometheus = false;  // stats_format=prometheus: the stats file in the Prometheus text format
  double stats_interval = 1.0;  // seconds between stats dumps
  std::string fsname;           // df's source column; default: the image path
  bool subtype = true;          // mount type fuse.vnopfs (default) or plain fuse (-o fstype=fuse, nosubtype)
  std::string log_path;         // where the daemon's log goes once it is in the background
  std::string config_path;      // the JSON file read (for messages)
  // Mount flags handed to the kernel through libfuse (nosuid, nodev, noexec, relatime, ...).
  std::vector<std::string> kernel_opts;
};

// Parses argv into *o. Returns "" or the error message (printed by the caller as "vnopfs: MESSAGE"; the
// start-up convention of src/daemon/daemon.h). --help/--version set o->act and stop parsing. Does not
// look at the image or mountpoint.
std::string parse_command_line(int argc, char** argv, options* o);

// Applies one "key" or "key=value" option (from -o). Returns an empty string or the error message.
std::string apply_option(options* o, const std::string& opt);

// Reads FILE.json (an object of the same keys as -o) into *o. Returns an empty string or the error.
std::string apply_config_file(options* o, const std::string& path);

// "64M" -> 67108864; K/M/G/T (powers of 1024), optional trailing "B"/"iB". false on a bad value.
bool parse_size(const std::string& s, size_t* out);

const char* kcache_name(kcache k);
const char* backend_name(backend b);

// The usage text of --help, and the version line of --version.
std::string usage();
std::string version();

}  // namespace vnopfs::config

// ext2_fixture.h: test support for the ext2 VNOP table (tests/unit/ext2): images made by mke2fs in a temp
// directory, mounted over the file device through VFS_MOUNT, VNOP calls holding the locks vnop.def asks
// for, and the e2fsprogs checks (e2fsck -fn, debugfs, dumpe2fs) run after unmount.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/dev/faults.h"
#include "vnopfs/device.h"
#include "vnopfs/mount.h"
#include "vnopfs/vnops.h"

namespace ext2test {

using namespace vnopfs;

// One mke2fs configuration of the GENERATE matrix.
struct image_config {
  uint32_t block_size = 4096;
  uint32_t inode_size = 256;
  bool resize_inode = true;
  bool dir_index = true;
  std::string label() const;
};
// The matrix: block sizes 1024/4096 x inode sizes 128/256, with and without resize_inode/dir_index.
std::vector<image_config> all_configs();

// A temporary directory, removed with everything in it at destruction.
struct tmpdir {
  tmpdir();
  ~tmpdir();
  tmpdir(const tmpdir&) = delete;
  tmpdir& operator=(const tmpdir&) = delete;
  std::string path;
};

// Runs cmd with /bin/sh; returns stdout (stderr merged). *rc gets the exit status; the caller judges it
// (a non-zero exit is not a failure here: use sh_ok for a command that must succeed).
std::string sh(const std::string& cmd, int* rc = nullptr);
// sh for a command that must succeed: a non-zero exit fails the test (with the command and its output).
std::string sh_ok(const std::string& cmd);
std::string quote(const std::string& s);
// The whitespace-separated words of s.
std::vector<std::string> words(const std::string& s);

// mke2fs -q -F -t ext2 with the config; size in KiB; populate_dir (optional) is passed as -d.
void make_image(const std::string& img, const image_config& c, uint64_t size_kib, const std::string& populate_dir = "",
                const std::string& extra = "");
// e2fsck -fn: true when clean (exit 0); *out gets its output.
bool fsck_clean(const std::string& img, std::string* out = nullptr);
// e2fsck -fn must find the image clean: REQUIREs it, with e2fsck's output on failure.
void require_fsck_clean(const std::string& img);
std::string debugfs(const std::string& img, const std::string& req);
void debugfs_w(const std::string& img, const std::string& req);
// debugfs cat of a path (binary safe).
std::string debugfs_cat(const std::string& img, const std::string& path);
// One block of the image file, read or written directly (block size bs = b.size() for writes).
std::vector<uint8_t> read_block(const std::string& img, uint64_t blk, uint32_t bs);
void write_block(const std::string& img, uint64_t blk, const std::vector<uint8_t>& b);
// Field "Name:" of dumpe2fs -h as a number.
uint64_t dumpe2fs_field(const std::string& img, const std::string& name);
// Field "Name:" of dumpe2fs -h as its whole text, spaces around it trimmed ("clean", "not clean").
std::string dumpe2fs_value(const std::string& img, const std::string& name);
// The inode number of a path (debugfs stat).
uint32_t ino_of(const std::string& img, const std::string& path);
// A value from debugfs stat: "Links", "Size", "Blockcount", "Mode" (octal), "User", "Group".
uint64_t stat_field(const std::string& img, const std::string& path, const std::string& field);

// Captures what is written to stderr (the vfs log) between construction and text().
class stderr_capture {
 public:
  stderr_capture();
  ~stderr_capture();
  std::string text();  // stops capturing
 private:
  int saved_ = -1;
  std::string path_;
  bool done_ = false;
};

// mount_args::direct_min of every mount made while it is set (0, the default: every write cached). Set it
// with direct_min_scope.
extern size_t g_direct_min;
struct direct_min_scope {
  size_t saved;
  explicit direct_min_scope(size_t n) : saved(g_direct_min) { g_direct_min = n; }
  ~direct_min_scope() { g_direct_min = saved; }
};

// A mounted image. Destruction unmounts if still mounted (tests call unmount() to check its result).
class mounted {
 public:
  // with_faults: a faults layer (src/dev/faults.h) sits between the file device and the mount.
  // table: the registry's table to mount it as (vnops/registry.h): ext2, ext2-buf, ext2-direct, ext2-sync.
  explicit mounted(const std::string& img, bool rdonly = false, size_t cache_bytes = 32u << 20,
                   bool with_faults = false, const std::string& table = "ext2");
  ~mounted();
  int mount_error() const { return mount_err_; }
  mount* mp() { return mp_.get(); }
  int unmount();
  vnode* vget(uint32_t ino);  // +iocount; REQUIREs success
  vnode* root();
  dev::faults_device* faults() { return faults_.get(); }
  dev::device* device() { return dev_.get(); }  // the file device at the bottom (its stats)
 private:
  std::unique_ptr<dev::device> dev_;
  std::unique_ptr<dev::faults_device> faults_;
  std::unique_ptr<mount> mp_;
  int mount_err_ = 0;
  bool mounted_ = false;
};

// Credentials.
vfs_context user_ctx(uid_t uid, gid_t gid, std::vector<gid_t> groups = {});
inline vfs_context* kctx() { return const_cast<vfs_context*>(&vfs_context::kernel()); }

// VNOP calls with the locks vnop.def asks for.
int vwrite(vnode* vp, off_t off, const std::string& data, int ioflag = IO_UNIT, vfs_context* ctx = kctx(),
           size_t* written = nullptr, bool shared = false);
int vread(vnode* vp, off_t off, size_t len, std::string* out, int ioflag = 0);
int vgetattr(vnode* vp, vnode_attr* va);
int vsetattr(vnode* vp, vnode_attr& va, vfs_context* ctx = kctx());
int vtruncate(vnode* vp, off_t size, vfs_context* ctx = kctx());
int vfsync(vnode* vp, int waitfor = MNT_WAIT);
int vallocate(vnode* vp, int mode, off_t off, off_t len, vfs_context* ctx = kctx());
int vseek(vnode* vp, bool data, off_t* off);
uint64_t vsize(vnode* vp);

// Deterministic pseudo-random bytes.
std::string pattern(size_t len, uint32_t seed);
// The seed of a randomized test: VNOPFS_SEED or random_device; the caller prints it.
uint32_t test_seed();

}  // namespace ext2test

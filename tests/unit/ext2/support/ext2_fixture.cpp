// ext2_fixture.cpp: see ext2_fixture.h.
#include "ext2_fixture.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include <catch2/catch.hpp>

#include "vnopfs/uio.h"
#include "vnops/registry.h"

namespace ext2test {

std::string image_config::label() const {
  return "bs=" + std::to_string(block_size) + " isize=" + std::to_string(inode_size) +
         (resize_inode ? " resize_inode" : " ^resize_inode") + (dir_index ? " dir_index" : " ^dir_index");
}

std::vector<image_config> all_configs() {
  std::vector<image_config> v;
  for (uint32_t bs : {1024u, 4096u})
    for (uint32_t is : {128u, 256u})
      for (bool feat : {true, false}) v.push_back({bs, is, feat, feat});
  return v;
}

tmpdir::tmpdir() {
  char tmpl[] = "/tmp/vnopfs-ext2-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  path = tmpl;
}

tmpdir::~tmpdir() {
  if (!path.empty()) (void)std::system(("rm -rf " + quote(path)).c_str());
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string sh(const std::string& cmd, int* rc) {
  std::string out;
  FILE* f = popen(("(" + cmd + ") 2>&1").c_str(), "r");
  REQUIRE(f != nullptr);
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int st = pclose(f);
  if (rc) *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

std::string sh_ok(const std::string& cmd) {
  int rc = 0;
  std::string out = sh(cmd, &rc);
  if (rc != 0) FAIL("command failed (exit " << rc << "): " << cmd << "\n" << out);
  return out;
}

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> v;
  for (std::string w; in >> w;) v.push_back(w);
  return v;
}

void make_image(const std::string& img, const image_config& c, uint64_t size_kib, const std::string& populate_dir,
                const std::string& extra) {
  std::string feats = std::string(c.resize_inode ? "" : "^resize_inode,") + (c.dir_index ? "dir_index" : "^dir_index");
  std::string cmd = "mke2fs -q -F -t ext2 -b " + std::to_string(c.block_size) + " -I " + std::to_string(c.inode_size) +
                    " -O " + feats + " " + extra + (populate_dir.empty() ? "" : " -d " + quote(populate_dir)) + " " +
                    quote(img) + " " + std::to_string(size_kib) + "k";
  int rc = 0;
  std::string out = sh(cmd, &rc);
  INFO(cmd << "\n" << out);
  REQUIRE(rc == 0);
}

bool fsck_clean(const std::string& img, std::string* out) {
  int rc = 0;
  std::string o = sh("e2fsck -fn " + quote(img), &rc);
  if (out) *out = o;
  return rc == 0;
}

void require_fsck_clean(const std::string& img) {
  std::string out;
  bool clean = fsck_clean(img, &out);
  INFO("e2fsck -fn " << img << ":\n" << out);
  REQUIRE(clean);
}

std::vector<uint8_t> read_block(const std::string& img, uint64_t blk, uint32_t bs) {
  std::vector<uint8_t> b(bs);
  int fd = open(img.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  ssize_t n = pread(fd, b.data(), bs, off_t(blk * bs));
  close(fd);
  REQUIRE(n == ssize_t(bs));
  return b;
}

void write_block(const std::string& img, uint64_t blk, const std::vector<uint8_t>& b) {
  int fd = open(img.c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  ssize_t n = pwrite(fd, b.data(), b.size(), off_t(blk * b.size()));
  close(fd);
  REQUIRE(n == ssize_t(b.size()));
}

std::string debugfs(const std::string& img, const std::string& req) {
  int rc = 0;
  std::string out = sh("debugfs -R " + quote(req) + " " + quote(img) + " 2>/dev/null", &rc);
  return out;
}

void debugfs_w(const std::string& img, const std::string& req) {
  int rc = 0;
  std::string out = sh("debugfs -w -R " + quote(req) + " " + quote(img), &rc);
  INFO("debugfs -w -R '" << req << "': " << out);
  REQUIRE(rc == 0);
  REQUIRE(out.find("invalid") == std::string::npos);
  REQUIRE(out.find("Usage") == std::string::npos);
}

std::string debugfs_cat(const std::string& img, const std::string& path) {
  std::string out;
  FILE* f = popen(("debugfs -R " + quote("cat " + path) + " " + quote(img) + " 2>/dev/null").c_str(), "r");
  REQUIRE(f != nullptr);
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

uint64_t dumpe2fs_field(const std::string& img, const std::string& name) {
  std::string out = sh("dumpe2fs -h " + quote(img) + " 2>/dev/null");
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + ":", 0) == 0) return std::stoull(line.substr(name.size() + 1));
  }
  FAIL("dumpe2fs has no field " << name << "\n" << out);
  return 0;
}

std::string dumpe2fs_value(const std::string& img, const std::string& name) {
  std::string out = sh("dumpe2fs -h " + quote(img) + " 2>/dev/null");
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + ":", 0) != 0) continue;
    std::string v = line.substr(name.size() + 1);
    size_t b = v.find_first_not_of(" \t"), e = v.find_last_not_of(" \t");
    return b == std::string::npos ? std::string() : v.substr(b, e - b + 1);
  }
  FAIL("dumpe2fs has no field " << name << "\n" << out);
  return {};
}

uint32_t ino_of(const std::string& img, const std::string& path) {
  std::string out = debugfs(img, "stat " + path);
  auto p = out.find("Inode: ");
  INFO("debugfs stat " << path << ": " << out);
  REQUIRE(p != std::string::npos);
  return static_cast<uint32_t>(std::stoul(out.substr(p + 7)));
}

uint64_t stat_field(const std::string& img, const std::string& path, const std::string& field) {
  std::string out = debugfs(img, "stat " + path);
  auto p = out.find(field + ": ");
  INFO("debugfs stat " << path << ": " << out);
  REQUIRE(p != std::string::npos);
  std::string v = out.substr(p + field.size() + 2);
  if (field == "Mode") return std::stoull(v, nullptr, 8);
  return std::stoull(v);
}

stderr_capture::stderr_capture() {
  char tmpl[] = "/tmp/vnopfs-log-XXXXXX";
  int fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  path_ = tmpl;
  fflush(stderr);
  saved_ = dup(2);
  dup2(fd, 2);
  close(fd);
}

std::string stderr_capture::text() {
  if (!done_) {
    fflush(stderr);
    dup2(saved_, 2);
    close(saved_);
    done_ = true;
  }
  std::ifstream in(path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

stderr_capture::~stderr_capture() {
  (void)text();
  unlink(path_.c_str());
}

size_t g_direct_min = 0;

mounted::mounted(const std::string& img, bool rdonly, size_t cache_bytes, bool with_faults, const std::string& table)
    : mp_(std::make_unique<mount>()) {
  vnops_register_filesystems();
  int err = 0;
  dev::file_options fo;
  dev_ = dev::make_file_device(img, fo, &err);
  REQUIRE(dev_ != nullptr);
  mp_->mnt_op = vfs_lookup_fs(table);
  REQUIRE(mp_->mnt_op != nullptr);
  mp_->mnt_from = img;
  if (with_faults) faults_ = std::make_unique<dev::faults_device>(dev_.get());
  mp_->mnt_device = faults_ ? static_cast<dev::device*>(faults_.get()) : dev_.get();
  mount_args args;
  args.rdonly = rdonly;
  args.cache_bytes = cache_bytes;
  args.direct_min = g_direct_min;
  mount_err_ = VFS_MOUNT(mp_.get(), args, vfs_context::kernel());
  mounted_ = mount_err_ == 0;
}

int mounted::unmount() {
  if (!mounted_) return 0;
  int err = VFS_UNMOUNT(mp_.get(), false, vfs_context::kernel());
  if (err != EBUSY) mounted_ = false;
  return err;
}

mounted::~mounted() {
  if (mounted_) (void)VFS_UNMOUNT(mp_.get(), true, vfs_context::kernel());
  faults_.reset();  // before the device below it
}

vnode* mounted::vget(uint32_t ino) {
  vnode* vp = nullptr;
  int err = VFS_VGET(mp_.get(), ino, &vp, vfs_context::kernel());
  INFO("vget " << ino);
  REQUIRE(err == 0);
  return vp;
}

vnode* mounted::root() {
  vnode* vp = nullptr;
  REQUIRE(VFS_ROOT(mp_.get(), &vp, vfs_context::kernel()) == 0);
  return vp;
}

vfs_context user_ctx(uid_t uid, gid_t gid, std::vector<gid_t> groups) {
  vfs_context c;
  c.uid = uid;
  c.gid = gid;
  c.groups = std::move(groups);
  return c;
}

int vwrite(vnode* vp, off_t off, const std::string& data, int ioflag, vfs_context* ctx, size_t* written, bool shared) {
  uio u(const_cast<char*>(data.data()), data.size(), off, UIO_WRITE, UIO_USERSPACE);
  int err;
  if (shared) {
    vn_shared l(vp);
    err = VNOP_WRITE(vp, &u, ioflag, ctx);
  } else {
    vn_exclusive l(vp);
    err = VNOP_WRITE(vp, &u, ioflag, ctx);
  }
  if (err == ERESTART && shared) return vwrite(vp, off, data, ioflag, ctx, written, false);
  if (written) *written = data.size() - u.resid();
  return err;
}

int vread(vnode* vp, off_t off, size_t len, std::string* out, int ioflag) {
  out->assign(len, '\xEE');
  uio u(out->data(), len, off, UIO_READ, UIO_USERSPACE);
  int err;
  {
    vn_shared l(vp);
    err = VNOP_READ(vp, &u, ioflag, kctx());
  }
  out->resize(len - u.resid());
  return err;
}

int vgetattr(vnode* vp, vnode_attr* va) { return VNOP_GETATTR(vp, va, kctx()); }

int vsetattr(vnode* vp, vnode_attr& va, vfs_context* ctx) {
  vn_exclusive l(vp);
  return VNOP_SETATTR(vp, &va, ctx);
}

int vtruncate(vnode* vp, off_t size, vfs_context* ctx) {
  vnode_attr va;
  va.va_active = VA_SIZE;
  va.va_size = size;
  return vsetattr(vp, va, ctx);
}

int vfsync(vnode* vp, int waitfor) { return VNOP_FSYNC(vp, waitfor, kctx()); }

int vallocate(vnode* vp, int mode, off_t off, off_t len, vfs_context* ctx) {
  vn_exclusive l(vp);
  return VNOP_ALLOCATE(vp, mode, off, len, ctx);
}

int vseek(vnode* vp, bool data, off_t* off) {
  vn_shared l(vp);
  return VNOP_IOCTL(vp, data ? FIOSEEKDATA : FIOSEEKHOLE, static_cast<void*>(off), 0, kctx());
}

uint64_t vsize(vnode* vp) {
  vnode_attr va;
  REQUIRE(vgetattr(vp, &va) == 0);
  return static_cast<uint64_t>(va.va_size);
}

std::string pattern(size_t len, uint32_t seed) {
  std::string s(len, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>('a' + x % 26);
  }
  return s;
}

uint32_t test_seed() {
  if (const char* e = std::getenv("VNOPFS_SEED")) return static_cast<uint32_t>(std::strtoul(e, nullptr, 0));
  return std::random_device{}();
}

}  // namespace ext2test

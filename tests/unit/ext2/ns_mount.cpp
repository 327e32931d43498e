#include "ext2/ns_mount.h"

#include <catch2/catch.hpp>

#include <sstream>

#include "vnops/registry.h"

using namespace vnopfs;

std::vector<std::string> ns_components(const std::string& path) {
  std::vector<std::string> v;
  std::string cur;
  for (char c : path) {
    if (c == '/') {
      if (!cur.empty()) v.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) v.push_back(cur);
  return v;
}

namespace {

componentname cn(const std::string& s) { return {s.data(), s.size()}; }

struct vref {  // an iocount held by the test
  vnode* vp = nullptr;
  ~vref() { if (vp) vnode_put(vp); }
};

int collect(void* fctx, const dirent_entry& e) {
  static_cast<std::vector<ns_dirent>*>(fctx)->push_back({std::string(e.name), e.ino, e.d_type, e.next_cookie});
  return 0;
}

}  // namespace

vfs_context ns_fs::user(uid_t uid, gid_t gid, std::vector<gid_t> groups) {
  vfs_context c;
  c.uid = uid;
  c.gid = gid;
  c.groups = std::move(groups);
  c.umask = 0;
  return c;
}

ns_fs::ns_fs(const std::string& mkfs_opts, const std::string& size) {
  img_ = tmp_.path + "/img";
  ns_sh("mke2fs -q -F -t ext2 " + mkfs_opts + " " + img_ + " " + size + " 2>&1");
  REQUIRE(mount_image() == 0);
}

std::unique_ptr<ns_fs> ns_fs::adopt(const std::string& image, int* mount_err) {
  std::unique_ptr<ns_fs> f(new ns_fs(adopt_tag{}));
  f->img_ = image;
  *mount_err = f->mount_image();
  return f;
}

ns_fs::~ns_fs() {
  if (mp_) (void)unmount();
}

int ns_fs::mount_image() {
  vnops_register_filesystems();
  int err = 0;
  dev::file_options o;
  o.threads = 2;
  dev_ = dev::make_file_device(img_, o, &err);
  if (!dev_) return err;
  mp_ = std::make_unique<mount>();
  mp_->mnt_op = vfs_lookup_fs("ext2");
  mp_->mnt_from = img_;
  mp_->mnt_device = dev_.get();
  mount_args args;
  args.cache_bytes = 8u << 20;
  err = VFS_MOUNT(mp_.get(), args, root());
  if (err) {
    mp_.reset();
    dev_.reset();
  }
  return err;
}

int ns_fs::unmount() {
  if (!mp_) return 0;
  int err = VFS_UNMOUNT(mp_.get(), false, root());
  mp_.reset();
  dev_.reset();
  return err;
}

int ns_fs::remount() {
  int err = unmount();
  return err ? err : mount_image();
}

int ns_fs::lookup(const std::string& path, vnode** vpp, const vfs_context& c) {
  vnode* vp;
  TRY(VFS_ROOT(mp_.get(), &vp, c));
  for (const std::string& comp : ns_components(path)) {
    componentname n = cn(comp);
    vnode* next = nullptr;
    int err;
    {
      vn_shared l(vp);
      err = VNOP_LOOKUP(vp, &n, &next, const_cast<vfs_context*>(&c));
    }
    vnode_put(vp);
    if (err) return err;
    vp = next;
  }
  *vpp = vp;
  return 0;
}

int ns_fs::parent(const std::string& path, vnode** dvpp, std::string* name, const vfs_context& c) {
  auto comps = ns_components(path);
  if (comps.empty()) return EINVAL;
  *name = comps.back();
  comps.pop_back();
  std::string dir;
  for (auto& s : comps) dir += s + "/";
  return lookup(dir, dvpp, c);
}

namespace {
vfs_context* C(const vfs_context& c) { return const_cast<vfs_context*>(&c); }
}  // namespace

int ns_fs::create(const std::string& path, mode_t mode, const vfs_context& c) {
  vref d;
  std::string name;
  TRY(parent(path, &d.vp, &name, c));
  componentname n = cn(name);
  vnode_attr va;
  va.va_mode = S_IFREG | mode;
  va.va_active = VA_MODE;
  vnode* vp = nullptr;
  vn_exclusive l(d.vp);
  TRY(VNOP_CREATE(d.vp, &n, &va, &vp, C(c)));
  vnode_put(vp);
  return 0;
}

int ns_fs::mknod(const std::string& path, mode_t mode, dev_t rdev, const vfs_context& c) {
  vref d;
  std::string name;
  TRY(parent(path, &d.vp, &name, c));
  componentname n = cn(name);
  vnode_attr va;
  va.va_mode = mode;
  va.va_rdev = rdev;
  va.va_active = VA_MODE | VA_RDEV;
  vnode* vp = nullptr;
  vn_exclusive l(d.vp);
  TRY(VNOP_MKNOD(d.vp, &n, &va, &vp, C(c)));
  vnode_put(vp);
  return 0;
}

int ns_fs::mkdir(const std::string& path, mode_t mode, const vfs_context& c) {
  vref d;
  std::string name;
  TRY(parent(path, &d.vp, &name, c));
  componentname n = cn(name);
  vnode_attr va;
  va.va_mode = S_IFDIR | mode;
  va.va_active = VA_MODE;
  vnode* vp = nullptr;
  vn_exclusive l(d.vp);
  TRY(VNOP_MKDIR(d.vp, &n, &va, &vp, C(c)));
  vnode_put(vp);
  return 0;
}

int ns_fs::symlink(const std::string& path, const std::string& target, const vfs_context& c) {
  vref d;
  std::string name;
  TRY(parent(path, &d.vp, &name, c));
  componentname n = cn(name);
  vnode_attr va;
  va.va_mode = S_IFLNK | 0777;
  vnode* vp = nullptr;
  vn_exclusive l(d.vp);
  TRY(VNOP_SYMLINK(d.vp, &n, &va, target.c_str(), &vp, C(c)));
  vnode_put(vp);
  return 0;
}

int ns_fs::readlink(const std::string& path, std::string* out, const vfs_context& c) {
  vref v;
  TRY(lookup(path, &v.vp, c));
  std::string buf(70000, '\0');
  uio u(buf.data(), buf.size(), 0, UIO_READ);
  vn_shared l(v.vp);
  TRY(VNOP_READLINK(v.vp, &u, C(c)));
  buf.resize(buf.size() - u.resid());
  *out = buf;
  return 0;
}

int ns_fs::link(const std::string& from, const std::string& to, const vfs_context& c) {
  vref v, d;
  TRY(lookup(from, &v.vp, c));
  std::string name;
  TRY(parent(to, &d.vp, &name, c));
  componentname n = cn(name);
  if (v.vp == d.vp) {
    vn_exclusive l(v.vp);
    return VNOP_LINK(v.vp, d.vp, &n, C(c));
  }
  vn_lock_pair(v.vp, d.vp);
  int err = VNOP_LINK(v.vp, d.vp, &n, C(c));
  vn_unlock_pair(v.vp, d.vp);
  return err;
}

int ns_fs::unlink(const std::string& path, const vfs_context& c) {
  vref d, v;
  std::string name;
  TRY(parent(path, &d.vp, &name, c));
  TRY(lookup(path, &v.vp, c));
  componentname n = cn(name);
  if (v.vp == d.vp) return EINVAL;
  vn_lock_pair(d.vp, v.vp);
  int err = VNOP_REMOVE(d.vp, v.vp, &n, 0, C(c));
  vn_unlock_pair(d.vp, v.vp);
  return err;
}

int ns_fs::rmdir(const std::string& path, const vfs_context& c) {
  vref d, v;
  std::string name;
  TRY(parent(path, &d.vp, &name, c));
  TRY(lookup(path, &v.vp, c));
  componentname n = cn(name);
  if (v.vp == d.vp) {
    vn_exclusive l(d.vp);
    return VNOP_RMDIR(d.vp, v.vp, &n, C(c));
  }
  vn_lock_pair(d.vp, v.vp);
  int err = VNOP_RMDIR(d.vp, v.vp, &n, C(c));
  vn_unlock_pair(d.vp, v.vp);
  return err;
}

int ns_fs::rename(const std::string& from, const std::string& to, uint32_t flags, const vfs_context& c) {
  vref fd, fv, td, tv;
  std::string fname, tname;
  TRY(parent(from, &fd.vp, &fname, c));
  TRY(lookup(from, &fv.vp, c));
  TRY(parent(to, &td.vp, &tname, c));
  int err = lookup(to, &tv.vp, c);
  if (err && err != ENOENT) return err;
  componentname fn = cn(fname), tn = cn(tname);
  return VNOP_RENAME(fd.vp, fv.vp, &fn, td.vp, tv.vp, &tn, flags, C(c));
}

int ns_fs::write(const std::string& path, off_t off, const std::string& data, const vfs_context& c) {
  vref v;
  TRY(lookup(path, &v.vp, c));
  std::string copy = data;
  uio u(copy.data(), copy.size(), off, UIO_WRITE);
  vn_exclusive l(v.vp);
  TRY(VNOP_WRITE(v.vp, &u, 0, C(c)));
  return u.resid() == 0 ? 0 : EIO;
}

int ns_fs::read(const std::string& path, std::string* out, const vfs_context& c) {
  vref v;
  TRY(lookup(path, &v.vp, c));
  out->clear();
  std::string buf(1 << 16, '\0');
  for (off_t off = 0;;) {
    uio u(buf.data(), buf.size(), off, UIO_READ);
    {
      vn_shared l(v.vp);
      TRY(VNOP_READ(v.vp, &u, 0, C(c)));
    }
    size_t n = buf.size() - u.resid();
    if (n == 0) return 0;
    out->append(buf.data(), n);
    off += off_t(n);
  }
}

int ns_fs::truncate(const std::string& path, off_t size, const vfs_context& c) {
  vref v;
  TRY(lookup(path, &v.vp, c));
  vnode_attr va;
  va.va_active = VA_SIZE;
  va.va_size = size;
  vn_exclusive l(v.vp);
  return VNOP_SETATTR(v.vp, &va, C(c));
}

int ns_fs::chmod(const std::string& path, mode_t mode, const vfs_context& c) {
  vref v;
  TRY(lookup(path, &v.vp, c));
  vnode_attr va;
  va.va_active = VA_MODE;
  va.va_mode = mode;
  vn_exclusive l(v.vp);
  return VNOP_SETATTR(v.vp, &va, C(c));
}

int ns_fs::getattr(const std::string& path, vnode_attr* va, const vfs_context& c) {
  vref v;
  TRY(lookup(path, &v.vp, c));
  return VNOP_GETATTR(v.vp, va, C(c));
}

int ns_fs::readdir(const std::string& path, std::vector<ns_dirent>* out, const vfs_context& c) {
  vref v;
  TRY(lookup(path, &v.vp, c));
  out->clear();
  int eof = 0;
  vn_shared l(v.vp);
  return VNOP_READDIR(v.vp, uint64_t(0), &collect, static_cast<void*>(out), &eof, C(c));
}

int ns_fs::setxattr(const std::string& path, const std::string& name, const std::string& value, int options,
                    const vfs_context& c) {
  vref v;
  TRY(lookup(path, &v.vp, c));
  std::string copy = value;
  uio u(copy.data(), copy.size(), 0, UIO_WRITE);
  vn_exclusive l(v.vp);
  return VNOP_SETXATTR(v.vp, name.c_str(), &u, options, C(c));
}

int ns_fs::getxattr(const std::string& path, const std::string& name, std::string* value, size_t bufsize,
                    const vfs_context& c) {
  vref v;
  TRY(lookup(path, &v.vp, c));
  std::string buf(bufsize, '\0');
  uio u(buf.data(), buf.size(), 0, UIO_READ);
  size_t size = 0;
  vn_shared l(v.vp);
  TRY(VNOP_GETXATTR(v.vp, name.c_str(), bufsize ? &u : nullptr, &size, 0, C(c)));
  *value = bufsize ? buf.substr(0, size) : std::string(size, '?');
  return 0;
}

int ns_fs::listxattr(const std::string& path, std::vector<std::string>* names, const vfs_context& c) {
  vref v;
  TRY(lookup(path, &v.vp, c));
  size_t size = 0;
  vn_shared l(v.vp);
  TRY(VNOP_LISTXATTR(v.vp, static_cast<uio*>(nullptr), &size, 0, C(c)));
  std::string buf(size, '\0');
  uio u(buf.data(), buf.size(), 0, UIO_READ);
  TRY(VNOP_LISTXATTR(v.vp, &u, &size, 0, C(c)));
  names->clear();
  std::string cur;
  for (char ch : buf.substr(0, size)) {
    if (ch == '\0') {
      names->push_back(cur);
      cur.clear();
    } else {
      cur.push_back(ch);
    }
  }
  return 0;
}

int ns_fs::removexattr(const std::string& path, const std::string& name, const vfs_context& c) {
  vref v;
  TRY(lookup(path, &v.vp, c));
  vn_exclusive l(v.vp);
  return VNOP_REMOVEXATTR(v.vp, name.c_str(), 0, C(c));
}

int ns_fs::fsync(const std::string& path) {
  vref v;
  TRY(lookup(path, &v.vp, root()));
  return VNOP_FSYNC(v.vp, MNT_WAIT, C(root()));
}

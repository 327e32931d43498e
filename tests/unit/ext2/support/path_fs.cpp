// path_fs.cpp: see path_fs.h.
#include "ext2/support/path_fs.h"

#include "vnopfs/result.h"

#include <catch2/catch.hpp>

#include <sstream>

namespace ext2test {

std::vector<std::string> path_components(const std::string& path) {
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

int collect(void* fctx, const dirent_entry& e) {
  static_cast<std::vector<dir_entry>*>(fctx)->push_back({std::string(e.name), e.ino, e.d_type, e.next_cookie});
  return 0;
}

}  // namespace

path_fs::path_fs(const std::string& mkfs_opts, const std::string& size, const std::string& table) {
  img_ = tmp_.path + "/img";
  table_ = table;
  sh_ok("mke2fs -q -F -t ext2 " + mkfs_opts + " " + quote(img_) + " " + size);
  REQUIRE(mount_image() == 0);
}

std::unique_ptr<path_fs> path_fs::adopt(const std::string& image, int* mount_err, bool with_faults) {
  std::unique_ptr<path_fs> f(new path_fs(adopt_tag{}));
  f->img_ = image;
  f->with_faults_ = with_faults;
  *mount_err = f->mount_image();
  return f;
}

path_fs::~path_fs() { (void)unmount(); }

int path_fs::mount_image() {
  m_ = std::make_unique<mounted>(img_, false, 8u << 20, with_faults_, table_);
  int err = m_->mount_error();
  if (err) m_.reset();
  return err;
}

int path_fs::unmount() {
  if (!m_) return 0;
  int err = m_->unmount();
  m_.reset();  // a vnode still referenced (EBUSY): the destructor forces the unmount
  return err;
}

int path_fs::remount() {
  int err = unmount();
  return err ? err : mount_image();
}

int path_fs::lookup(const std::string& path, vnode** vpp, const vfs_context& c) {
  vnode* vp;
  TRY(VFS_ROOT(mp(), &vp, c));
  for (const std::string& comp : path_components(path)) {
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

int path_fs::parent(const std::string& path, vnode** dvpp, std::string* name, const vfs_context& c) {
  auto comps = path_components(path);
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

int path_fs::create(const std::string& path, mode_t mode, const vfs_context& c) {
  iocount_ref d;
  std::string name;
  TRY(parent(path, d.out(), &name, c));
  componentname n = cn(name);
  vnode_attr va;
  va.va_mode = S_IFREG | mode;
  va.va_active = VA_MODE;
  vnode* vp = nullptr;
  vn_exclusive l(d.get());
  TRY(VNOP_CREATE(d.get(), &n, &va, &vp, C(c)));
  vnode_put(vp);
  return 0;
}

int path_fs::mknod(const std::string& path, mode_t mode, dev_t rdev, const vfs_context& c) {
  iocount_ref d;
  std::string name;
  TRY(parent(path, d.out(), &name, c));
  componentname n = cn(name);
  vnode_attr va;
  va.va_mode = mode;
  va.va_rdev = rdev;
  va.va_active = VA_MODE | VA_RDEV;
  vnode* vp = nullptr;
  vn_exclusive l(d.get());
  TRY(VNOP_MKNOD(d.get(), &n, &va, &vp, C(c)));
  vnode_put(vp);
  return 0;
}

int path_fs::mkdir(const std::string& path, mode_t mode, const vfs_context& c) {
  iocount_ref d;
  std::string name;
  TRY(parent(path, d.out(), &name, c));
  componentname n = cn(name);
  vnode_attr va;
  va.va_mode = S_IFDIR | mode;
  va.va_active = VA_MODE;
  vnode* vp = nullptr;
  vn_exclusive l(d.get());
  TRY(VNOP_MKDIR(d.get(), &n, &va, &vp, C(c)));
  vnode_put(vp);
  return 0;
}

int path_fs::symlink(const std::string& path, const std::string& target, const vfs_context& c) {
  iocount_ref d;
  std::string name;
  TRY(parent(path, d.out(), &name, c));
  componentname n = cn(name);
  vnode_attr va;
  va.va_mode = S_IFLNK | 0777;
  vnode* vp = nullptr;
  vn_exclusive l(d.get());
  TRY(VNOP_SYMLINK(d.get(), &n, &va, target.c_str(), &vp, C(c)));
  vnode_put(vp);
  return 0;
}

int path_fs::readlink(const std::string& path, std::string* out, const vfs_context& c) {
  iocount_ref v;
  TRY(lookup(path, v.out(), c));
  std::string buf(70000, '\0');
  uio u(buf.data(), buf.size(), 0, UIO_READ);
  vn_shared l(v.get());
  TRY(VNOP_READLINK(v.get(), &u, C(c)));
  buf.resize(buf.size() - u.resid());
  *out = buf;
  return 0;
}

int path_fs::link(const std::string& from, const std::string& to, const vfs_context& c) {
  iocount_ref v, d;
  TRY(lookup(from, v.out(), c));
  std::string name;
  TRY(parent(to, d.out(), &name, c));
  componentname n = cn(name);
  if (v.get() == d.get()) {
    vn_exclusive l(v.get());
    return VNOP_LINK(v.get(), d.get(), &n, C(c));
  }
  vn_lock_pair(v.get(), d.get());
  int err = VNOP_LINK(v.get(), d.get(), &n, C(c));
  vn_unlock_pair(v.get(), d.get());
  return err;
}

int path_fs::unlink(const std::string& path, const vfs_context& c) {
  iocount_ref d, v;
  std::string name;
  TRY(parent(path, d.out(), &name, c));
  TRY(lookup(path, v.out(), c));
  componentname n = cn(name);
  if (v.get() == d.get()) return EINVAL;
  vn_lock_pair(d.get(), v.get());
  int err = VNOP_REMOVE(d.get(), v.get(), &n, 0, C(c));
  vn_unlock_pair(d.get(), v.get());
  return err;
}

int path_fs::rmdir(const std::string& path, const vfs_context& c) {
  iocount_ref d, v;
  std::string name;
  TRY(parent(path, d.out(), &name, c));
  TRY(lookup(path, v.out(), c));
  componentname n = cn(name);
  if (v.get() == d.get()) {
    vn_exclusive l(d.get());
    return VNOP_RMDIR(d.get(), v.get(), &n, C(c));
  }
  vn_lock_pair(d.get(), v.get());
  int err = VNOP_RMDIR(d.get(), v.get(), &n, C(c));
  vn_unlock_pair(d.get(), v.get());
  return err;
}

int path_fs::rename(const std::string& from, const std::string& to, uint32_t flags, const vfs_context& c) {
  iocount_ref fd, fv, td, tv;
  std::string fname, tname;
  TRY(parent(from, fd.out(), &fname, c));
  TRY(lookup(from, fv.out(), c));
  TRY(parent(to, td.out(), &tname, c));
  int err = lookup(to, tv.out(), c);
  if (err && err != ENOENT) return err;
  componentname fn = cn(fname), tn = cn(tname);
  return VNOP_RENAME(fd.get(), fv.get(), &fn, td.get(), tv.get(), &tn, flags, C(c));
}

int path_fs::write(const std::string& path, off_t off, const std::string& data, const vfs_context& c) {
  iocount_ref v;
  TRY(lookup(path, v.out(), c));
  std::string copy = data;
  uio u(copy.data(), copy.size(), off, UIO_WRITE);
  vn_exclusive l(v.get());
  TRY(VNOP_WRITE(v.get(), &u, 0, C(c)));
  return u.resid() == 0 ? 0 : EIO;
}

int path_fs::read(const std::string& path, std::string* out, const vfs_context& c) {
  iocount_ref v;
  TRY(lookup(path, v.out(), c));
  out->clear();
  std::string buf(1 << 16, '\0');
  for (off_t off = 0;;) {
    uio u(buf.data(), buf.size(), off, UIO_READ);
    {
      vn_shared l(v.get());
      TRY(VNOP_READ(v.get(), &u, 0, C(c)));
    }
    size_t n = buf.size() - u.resid();
    if (n == 0) return 0;
    out->append(buf.data(), n);
    off += off_t(n);
  }
}

int path_fs::truncate(const std::string& path, off_t size, const vfs_context& c) {
  iocount_ref v;
  TRY(lookup(path, v.out(), c));
  vnode_attr va;
  va.va_active = VA_SIZE;
  va.va_size = size;
  vn_exclusive l(v.get());
  return VNOP_SETATTR(v.get(), &va, C(c));
}

int path_fs::chmod(const std::string& path, mode_t mode, const vfs_context& c) {
  iocount_ref v;
  TRY(lookup(path, v.out(), c));
  vnode_attr va;
  va.va_active = VA_MODE;
  va.va_mode = mode;
  vn_exclusive l(v.get());
  return VNOP_SETATTR(v.get(), &va, C(c));
}

int path_fs::chgrp(const std::string& path, gid_t gid, const vfs_context& c) {
  iocount_ref v;
  TRY(lookup(path, v.out(), c));
  vnode_attr va;
  va.va_active = VA_GID;
  va.va_gid = gid;
  vn_exclusive l(v.get());
  return VNOP_SETATTR(v.get(), &va, C(c));
}

int path_fs::getattr(const std::string& path, vnode_attr* va, const vfs_context& c) {
  iocount_ref v;
  TRY(lookup(path, v.out(), c));
  return VNOP_GETATTR(v.get(), va, C(c));
}

int path_fs::readdir(const std::string& path, std::vector<dir_entry>* out, const vfs_context& c) {
  iocount_ref v;
  TRY(lookup(path, v.out(), c));
  out->clear();
  int eof = 0;
  vn_shared l(v.get());
  return VNOP_READDIR(v.get(), uint64_t(0), &collect, static_cast<void*>(out), &eof, C(c));
}

int path_fs::setxattr(const std::string& path, const std::string& name, const std::string& value, int options,
                    const vfs_context& c) {
  iocount_ref v;
  TRY(lookup(path, v.out(), c));
  std::string copy = value;
  uio u(copy.data(), copy.size(), 0, UIO_WRITE);
  vn_exclusive l(v.get());
  return VNOP_SETXATTR(v.get(), name.c_str(), &u, options, C(c));
}

int path_fs::getxattr(const std::string& path, const std::string& name, std::string* value, size_t bufsize,
                    const vfs_context& c) {
  iocount_ref v;
  TRY(lookup(path, v.out(), c));
  std::string buf(bufsize, '\0');
  uio u(buf.data(), buf.size(), 0, UIO_READ);
  size_t size = 0;
  vn_shared l(v.get());
  TRY(VNOP_GETXATTR(v.get(), name.c_str(), bufsize ? &u : nullptr, &size, 0, C(c)));
  *value = bufsize ? buf.substr(0, size) : std::string(size, '?');
  return 0;
}

int path_fs::listxattr(const std::string& path, std::vector<std::string>* names, const vfs_context& c) {
  iocount_ref v;
  TRY(lookup(path, v.out(), c));
  size_t size = 0;
  vn_shared l(v.get());
  TRY(VNOP_LISTXATTR(v.get(), static_cast<uio*>(nullptr), &size, 0, C(c)));
  std::string buf(size, '\0');
  uio u(buf.data(), buf.size(), 0, UIO_READ);
  TRY(VNOP_LISTXATTR(v.get(), &u, &size, 0, C(c)));
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

int path_fs::removexattr(const std::string& path, const std::string& name, const vfs_context& c) {
  iocount_ref v;
  TRY(lookup(path, v.out(), c));
  vn_exclusive l(v.get());
  return VNOP_REMOVEXATTR(v.get(), name.c_str(), 0, C(c));
}

int path_fs::fsync(const std::string& path) {
  iocount_ref v;
  TRY(lookup(path, v.out(), root()));
  return VNOP_FSYNC(v.get(), MNT_WAIT, C(root()));
}

}  // namespace ext2test

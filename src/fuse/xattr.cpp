// xattr.cpp: extended attributes. getxattr/listxattr with size 0 ask for the size only (a_uio nullptr,
// *a_size gets it); otherwise the value is read into a buffer of the size the caller offered and ERANGE
// comes back from the filesystem if it is too small. Locks: get/list shared, set/remove exclusive.
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cstring>
#include <memory>

#include "src/fuse/frontend.h"

namespace vnopfs::fuse {

namespace {

// Without POSIX ACLs (noacl, or an image without ext_attr: no FUSE_CAP_POSIX_ACL, so the kernel would not
// enforce a stored ACL while the kernel's ext2 reading the image back would), the ACL names are refused as
// on a filesystem mounted noacl: set/remove EOPNOTSUPP, get ENODATA; cp -a falls back to the mode bits.
bool refused_acl_name(const frontend& f, const char* name) {
  return !(f.mp->mnt_flag & MNT_POSIXACL) && std::strncmp(name, "system.posix_acl_", 17) == 0;
}

int do_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  frontend& f = fe(req);
  if (std::strlen(name) > 255) return ERANGE;
  if (refused_acl_name(f, name)) return EOPNOTSUPP;
  vfs_context ctx = make_context(req, true);
  iocount_ref vp;
  TRY(f.inodes->get(ino, vp.out()));
  if (std::strcmp(name, "system.posix_acl_access") == 0) {
    // Setting an access ACL drops S_ISGID for a caller outside the file's group without CAP_FSETID
    // (libfuse 3.14 cannot negotiate SETXATTR_EXT, which would carry the kernel's verdict).
    vnode_attr va;
    if (VNOP_GETATTR(vp.get(), &va, &ctx) == 0 && (va.va_mode & S_ISGID)) ctx.fsetid = caller_fsetid(req);
  }
  int opts = 0;
  if (flags & XATTR_CREATE) opts |= XATTR_OPT_CREATE;
  if (flags & XATTR_REPLACE) opts |= XATTR_OPT_REPLACE;
  uio u(const_cast<char*>(value), size, 0, UIO_WRITE, UIO_USERSPACE);
  {
    vn_exclusive l(vp.get());
    TRY(VNOP_SETXATTR(vp.get(), name, &u, opts, &ctx));
  }
  fuse_reply_err(req, 0);
  return 0;
}

template <class Get>
int get_value(fuse_req_t req, size_t size, Get get) {
  if (size == 0) {
    size_t need = 0;
    TRY(get(nullptr, &need));
    fuse_reply_xattr(req, need);
    return 0;
  }
  std::unique_ptr<char[]> buf(new char[size]);
  uio u(buf.get(), size, 0, UIO_READ, UIO_USERSPACE);
  size_t got = 0;
  TRY(get(&u, &got));
  fuse_reply_buf(req, buf.get(), size - u.resid());
  return 0;
}

// The kernel asks for security.capability before every write(2) (file_remove_privs: FUSE never gets
// S_NOSEC without HANDLE_KILLPRIV_V2). A file the filesystem knows has no security.* attribute gets ENODATA
// at once: no credentials, no vnode lock, no VNOP (so the stats layer does not count these). Only
// well-formed names, whose answer cannot be EINVAL/ERANGE, and only security.*, whose reads need no
// permission (Linux's xattr_permission).
bool known_absent(frontend& f, fuse_ino_t ino, const char* name) {
  constexpr size_t kPrefix = sizeof("security.") - 1;
  if (std::strncmp(name, "security.", kPrefix) != 0) return false;
  size_t n = std::strlen(name);
  if (n == kPrefix || n > 255) return false;
  return (f.inodes->facts(ino) & VX_NOSECXATTR) != 0;
}

int do_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  frontend& f = fe(req);
  if (refused_acl_name(f, name)) return ENODATA;
  if (known_absent(f, ino, name)) return ENODATA;
  vfs_context ctx = make_context(req, true);
  iocount_ref vp;
  TRY(f.inodes->get(ino, vp.out()));
  return get_value(req, size, [&](uio* u, size_t* sz) {
    vn_shared l(vp.get());
    return VNOP_GETXATTR(vp.get(), name, u, sz, 0, &ctx);
  });
}

int do_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  frontend& f = fe(req);
  vfs_context ctx = make_context(req, true);
  iocount_ref vp;
  TRY(f.inodes->get(ino, vp.out()));
  return get_value(req, size, [&](uio* u, size_t* sz) {
    vn_shared l(vp.get());
    return VNOP_LISTXATTR(vp.get(), u, sz, 0, &ctx);
  });
}

int do_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  frontend& f = fe(req);
  if (refused_acl_name(f, name)) return EOPNOTSUPP;
  // The kernel removes a file's capability itself when a write, truncate or chown by anyone finds one
  // (security_inode_killpriv, no permission check), and the REMOVEXATTR comes with that caller's
  // credentials; a removexattr(2) of it has already passed cap_inode_removexattr (CAP_SETFCAP). Either way
  // the kernel has decided: the VNOP runs with the kernel's credentials.
  vfs_context ctx = std::strcmp(name, "security.capability") == 0 ? vfs_context::kernel() : make_context(req, true);
  iocount_ref vp;
  TRY(f.inodes->get(ino, vp.out()));
  {
    vn_exclusive l(vp.get());
    TRY(VNOP_REMOVEXATTR(vp.get(), name, 0, &ctx));
  }
  fuse_reply_err(req, 0);
  return 0;
}

}  // namespace

void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  run(req, [&] { return do_setxattr(req, ino, name, value, size, flags); });
}
void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  run(req, [&] { return do_getxattr(req, ino, name, size); });
}
void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  run(req, [&] { return do_listxattr(req, ino, size); });
}
void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  run(req, [&] { return do_removexattr(req, ino, name); });
}

}  // namespace vnopfs::fuse

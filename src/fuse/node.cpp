// node.cpp: names and attributes: lookup, forget, getattr, setattr, readlink, mknod, mkdir, symlink, link,
// unlink, rmdir, rename, statfs, access.
//
// Locks (vnop.def): lookup and readlink hold the directory/link shared; create-like ops hold the directory
// exclusive; remove/rmdir/link hold both vnodes exclusive through vn_lock_pair (address order), which means
// the child is looked up first and checked again once both are locked; rename holds none (the filesystem
// takes its rename lock and vn_lock_pair itself). Getattr is called with no lock held.
#include <sys/stat.h>

#include <cstring>
#include <ctime>
#include <vector>

#include "src/fuse/frontend.h"

namespace vnopfs::fuse {

namespace {

componentname cn_of(const char* name) { return componentname{name, std::strlen(name)}; }

int lookup_locked(vnode* dvp, const char* name, vnode** vpp, vfs_context& ctx) {
  componentname cn = cn_of(name);
  return VNOP_LOOKUP(dvp, &cn, vpp, &ctx);
}

int do_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  frontend& f = fe(req);
  int err = 0;
  if (!name_ok(f, name, &err)) return err;
  vfs_context ctx = make_context(req, true);
  iocount_ref dvp;
  TRY(f.inodes->get(parent, dvp.out()));
  iocount_ref vp;
  if (std::strcmp(name, ".") == 0) {
    vnode_get(dvp.get());
    *vp.out() = dvp.get();
  } else {
    vn_shared l(dvp.get());
    err = lookup_locked(dvp.get(), name, vp.out(), ctx);
  }
  if (err == ENOENT && std::strcmp(name, "..") != 0) {
    // A negative entry the kernel may cache for entry_timeout: creates through this mount invalidate it.
    fuse_entry_param e{};
    e.ino = 0;
    e.entry_timeout = f.entry_timeout;
    fuse_reply_entry(req, &e);
    return 0;
  }
  if (err) return err;
  fuse_entry_param e;
  TRY(make_entry(req, vp.get(), ctx, &e));
  reply_entry(req, e);
  return 0;
}

int do_getattr(fuse_req_t req, fuse_ino_t ino) {
  frontend& f = fe(req);
  vfs_context ctx = make_context(req, false);
  iocount_ref vp;
  TRY(f.inodes->get(ino, vp.out()));
  struct stat st;
  TRY(vn_stat(vp.get(), ctx, &st));
  fuse_reply_attr(req, &st, f.attr_timeout);
  return 0;
}

int do_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set) {
  frontend& f = fe(req);
  vfs_context ctx = make_context(req, true);
  iocount_ref vp;
  TRY(f.inodes->get(ino, vp.out()));
  vnode_attr va;
  if (to_set & FUSE_SET_ATTR_MODE) {
    // Without FUSE_CAP_HANDLE_KILLPRIV the kernel clears suid/sgid after a write, truncate or chown by
    // sending a mode SETATTR with the *writer's* credentials. A mode change that only drops those bits is
    // a kill-priv request: VA_KILL_SUIDGID, which needs no ownership (a real chmod by a non-owner was
    // already refused by the kernel with default_permissions).
    vnode_attr cur;
    TRY(VNOP_GETATTR(vp.get(), &cur, &ctx));
    mode_t want = attr->st_mode & 07777;
    mode_t have = cur.va_mode & 07777;
    if (want != have && (want & ~(S_ISUID | S_ISGID)) == (have & ~(S_ISUID | S_ISGID)) &&
        (want & ~have) == 0 && ctx.uid != cur.va_uid && ctx.uid != 0) {
      va.va_active |= VA_KILL_SUIDGID;
    } else {
      va.va_active |= VA_MODE;
      va.va_mode = attr->st_mode & 07777;
    }
  }
  if (to_set & FUSE_SET_ATTR_UID) { va.va_active |= VA_UID; va.va_uid = attr->st_uid; }
  if (to_set & FUSE_SET_ATTR_GID) { va.va_active |= VA_GID; va.va_gid = attr->st_gid; }
  if (to_set & FUSE_SET_ATTR_SIZE) { va.va_active |= VA_SIZE; va.va_size = attr->st_size; }
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
    va.va_active |= VA_ATIME | VA_ATIME_NOW;
    va.va_atime = now;
  } else if (to_set & FUSE_SET_ATTR_ATIME) {
    va.va_active |= VA_ATIME;
    va.va_atime = attr->st_atim;
  }
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
    va.va_active |= VA_MTIME | VA_MTIME_NOW;
    va.va_mtime = now;
  } else if (to_set & FUSE_SET_ATTR_MTIME) {
    va.va_active |= VA_MTIME;
    va.va_mtime = attr->st_mtim;
  }
  if (to_set & FUSE_SET_ATTR_CTIME) { va.va_active |= VA_CTIME; va.va_ctime = attr->st_ctim; }
  // FATTR_KILL_SUIDGID (libfuse's FUSE_SET_ATTR_KILL_SUID bit) under killpriv v2: with a size, "the caller
  // lacks CAP_FSETID" (its absence: it has it); with an owner, always sent, and ext2 applies chown's own rule
  // (which needs CAP_FSETID only for a set-group-ID file without group-exec: asked then).
  const bool kill = to_set & (FUSE_SET_ATTR_KILL_SUID | FUSE_SET_ATTR_KILL_SGID | FUSE_SET_ATTR_KILL_PRIV);
  if (to_set & FUSE_SET_ATTR_SIZE) {
    set_fsetid_from_kernel(f, kill, &ctx);
  } else if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    vnode_attr cur;
    TRY(VNOP_GETATTR(vp.get(), &cur, &ctx));
    if ((cur.va_mode & (S_ISGID | S_IXGRP)) == S_ISGID) ctx.fsetid = caller_fsetid(req);
  } else if (kill) {
    va.va_active |= VA_KILL_SUIDGID;
  }
  if (va.va_active) {
    vn_exclusive l(vp.get());
    TRY(VNOP_SETATTR(vp.get(), &va, &ctx));
  }
  struct stat st;
  TRY(vn_stat(vp.get(), ctx, &st));
  fuse_reply_attr(req, &st, f.attr_timeout);
  return 0;
}

int do_readlink(fuse_req_t req, fuse_ino_t ino) {
  frontend& f = fe(req);
  vfs_context ctx = make_context(req, false);
  iocount_ref vp;
  TRY(f.inodes->get(ino, vp.out()));
  std::vector<char> buf(65536 + 1);
  uio u(buf.data(), 65536, 0, UIO_READ, UIO_USERSPACE);
  {
    vn_shared l(vp.get());
    TRY(VNOP_READLINK(vp.get(), &u, &ctx));
  }
  buf[65536 - u.resid()] = '\0';
  fuse_reply_readlink(req, buf.data());
  return 0;
}

// mknod, mkdir, symlink: one shape: E on the directory, the VNOP, an entry for the new vnode.
template <class Op>
int do_make(fuse_req_t req, fuse_ino_t parent, const char* name, Op op) {
  frontend& f = fe(req);
  int err = 0;
  if (!name_ok(f, name, &err)) return err;
  vfs_context ctx = make_context(req, true);
  iocount_ref dvp;
  TRY(f.inodes->get(parent, dvp.out()));
  if (dvp.get()->v_type != vtype::VDIR) return ENOTDIR;
  componentname cn = cn_of(name);
  iocount_ref vp;
  {
    vn_exclusive l(dvp.get());
    TRY(op(dvp.get(), &cn, vp.out(), &ctx));
  }
  fuse_entry_param e;
  TRY(make_entry(req, vp.get(), ctx, &e));
  reply_entry(req, e);
  return 0;
}

int do_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  return do_make(req, parent, name, [&](vnode* dvp, componentname* cn, vnode** vpp, vfs_context* ctx) {
    vnode_attr va;
    va.va_active = VA_MODE | VA_RDEV;
    va.va_mode = mode;
    va.va_type = vtype_from_mode(mode);
    va.va_rdev = rdev;
    if (va.va_type == vtype::VREG) return VNOP_CREATE(dvp, cn, &va, vpp, ctx);
    return VNOP_MKNOD(dvp, cn, &va, vpp, ctx);
  });
}

int do_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  return do_make(req, parent, name, [&](vnode* dvp, componentname* cn, vnode** vpp, vfs_context* ctx) {
    vnode_attr va;
    va.va_active = VA_MODE;
    va.va_mode = (mode & 07777) | S_IFDIR;
    va.va_type = vtype::VDIR;
    return VNOP_MKDIR(dvp, cn, &va, vpp, ctx);
  });
}

int do_symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  return do_make(req, parent, name, [&](vnode* dvp, componentname* cn, vnode** vpp, vfs_context* ctx) {
    vnode_attr va;
    va.va_active = VA_MODE;
    va.va_mode = S_IFLNK | 0777;
    va.va_type = vtype::VLNK;
    return VNOP_SYMLINK(dvp, cn, &va, target, vpp, ctx);
  });
}

// unlink and rmdir: look the child up under the directory's shared lock, lock both with vn_lock_pair, check
// the name still names the same vnode (else someone renamed it meanwhile: start again), then the VNOP.
template <class Op>
int do_remove(fuse_req_t req, fuse_ino_t parent, const char* name, Op op) {
  frontend& f = fe(req);
  int err = 0;
  if (!name_ok(f, name, &err)) return err;
  if (!std::strcmp(name, ".")) return EINVAL;
  if (!std::strcmp(name, "..")) return ENOTEMPTY;
  vfs_context ctx = make_context(req, true);
  iocount_ref dvp;
  TRY(f.inodes->get(parent, dvp.out()));
  componentname cn = cn_of(name);
  for (int attempt = 0; attempt < 100; attempt++) {
    iocount_ref vp;
    {
      vn_shared l(dvp.get());
      TRY(lookup_locked(dvp.get(), name, vp.out(), ctx));
    }
    vn_lock_pair(dvp.get(), vp.get());
    iocount_ref again;
    err = lookup_locked(dvp.get(), name, again.out(), ctx);
    if (err == 0 && again.get() == vp.get()) err = op(dvp.get(), vp.get(), &cn, &ctx);
    else if (err == 0) err = EAGAIN;
    vn_unlock_pair(dvp.get(), vp.get());
    if (err == EAGAIN) continue;
    if (err) return err;
    fuse_reply_err(req, 0);
    return 0;
  }
  return EBUSY;
}

int do_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  frontend& f = fe(req);
  int err = 0;
  if (!name_ok(f, newname, &err)) return err;
  vfs_context ctx = make_context(req, true);
  iocount_ref vp, tdvp;
  TRY(f.inodes->get(ino, vp.out()));
  TRY(f.inodes->get(newparent, tdvp.out()));
  componentname cn = cn_of(newname);
  vn_lock_pair(vp.get(), tdvp.get());
  err = VNOP_LINK(vp.get(), tdvp.get(), &cn, &ctx);
  vn_unlock_pair(vp.get(), tdvp.get());
  if (err) return err;
  fuse_entry_param e;
  TRY(make_entry(req, vp.get(), ctx, &e));
  reply_entry(req, e);
  return 0;
}

int do_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
              unsigned int flags) {
  frontend& f = fe(req);
  int err = 0;
  if (!name_ok(f, name, &err) || !name_ok(f, newname, &err)) return err;
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) return EINVAL;
  if ((flags & RENAME_EXCHANGE) && (flags & (RENAME_NOREPLACE | RENAME_WHITEOUT))) return EINVAL;
  vfs_context ctx = make_context(req, true);
  iocount_ref fdvp, tdvp;
  TRY(f.inodes->get(parent, fdvp.out()));
  TRY(f.inodes->get(newparent, tdvp.out()));
  componentname fcn = cn_of(name), tcn = cn_of(newname);
  uint32_t vflags = ((flags & RENAME_NOREPLACE) ? uint32_t{VNOP_RENAME_NOREPLACE} : 0u) |
                    ((flags & RENAME_EXCHANGE) ? uint32_t{VNOP_RENAME_EXCHANGE} : 0u) |
                    ((flags & RENAME_WHITEOUT) ? uint32_t{VNOP_RENAME_WHITEOUT} : 0u);
  // The filesystem checks under its locks that the names still name what we looked up: ESTALE (target
  // changed) or ENOENT (source changed) while the source still exists means "look up again".
  for (int attempt = 0; attempt < 100; attempt++) {
    iocount_ref fvp, tvp;
    {
      vn_shared l(fdvp.get());
      TRY(lookup_locked(fdvp.get(), name, fvp.out(), ctx));
    }
    {
      vn_shared l(tdvp.get());
      err = lookup_locked(tdvp.get(), newname, tvp.out(), ctx);
    }
    if (err && err != ENOENT) return err;
    if (err == ENOENT && (flags & RENAME_EXCHANGE)) return ENOENT;
    if (err == 0 && (flags & RENAME_NOREPLACE)) return EEXIST;
    err = VNOP_RENAME(fdvp.get(), fvp.get(), &fcn, tdvp.get(), tvp.get(), &tcn, vflags, &ctx);
    if (err == ESTALE || err == ENOENT) {
      iocount_ref again;
      int lerr;
      {
        vn_shared l(fdvp.get());
        lerr = lookup_locked(fdvp.get(), name, again.out(), ctx);
      }
      if (lerr == 0 && (err == ESTALE || again.get() != fvp.get())) continue;
      return err == ESTALE ? ENOENT : err;
    }
    if (err) return err;
    fuse_reply_err(req, 0);
    return 0;
  }
  return EBUSY;
}

int do_statfs(fuse_req_t req) {
  frontend& f = fe(req);
  struct statvfs st{};
  TRY(VFS_STATFS(f.mp, &st, make_context(req, false)));
  fuse_reply_statfs(req, &st);
  return 0;
}

int do_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  frontend& f = fe(req);
  vfs_context ctx = make_context(req, true);
  iocount_ref vp;
  TRY(f.inodes->get(ino, vp.out()));
  TRY(VNOP_ACCESS(vp.get(), mask, &ctx));
  fuse_reply_err(req, 0);
  return 0;
}

}  // namespace

void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  run(req, [&] { return do_lookup(req, parent, name); });
}
void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  run_noreply(req, [&] { fe(req).inodes->forget(ino, nlookup); });
}
void ll_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  run_noreply(req, [&] {
    for (size_t i = 0; i < count; i++) fe(req).inodes->forget(forgets[i].ino, forgets[i].nlookup);
  });
}
void ll_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  run(req, [&] { return do_getattr(req, ino); });
}
void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  run(req, [&] { return do_setattr(req, ino, attr, to_set); });
}
void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  run(req, [&] { return do_readlink(req, ino); });
}
void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  run(req, [&] { return do_mknod(req, parent, name, mode, rdev); });
}
void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  run(req, [&] { return do_mkdir(req, parent, name, mode); });
}
void ll_symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  run(req, [&] { return do_symlink(req, link, parent, name); });
}
void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  run(req, [&] {
    return do_remove(req, parent, name, [](vnode* dvp, vnode* vp, componentname* cn, vfs_context* ctx) {
      return VNOP_REMOVE(dvp, vp, cn, 0, ctx);
    });
  });
}
void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  run(req, [&] {
    return do_remove(req, parent, name, [](vnode* dvp, vnode* vp, componentname* cn, vfs_context* ctx) {
      return VNOP_RMDIR(dvp, vp, cn, ctx);
    });
  });
}
void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  run(req, [&] { return do_link(req, ino, newparent, newname); });
}
void ll_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
               unsigned int flags) {
  run(req, [&] { return do_rename(req, parent, name, newparent, newname, flags); });
}
void ll_statfs(fuse_req_t req, fuse_ino_t) {
  run(req, [&] { return do_statfs(req); });
}
void ll_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  run(req, [&] { return do_access(req, ino, mask); });
}

}  // namespace vnopfs::fuse

// attr.cpp: getattr, setattr (mode, owner, size, times) and access, with the kernel's permission rules
// (setattr_prepare, chown_ok/chgrp_ok, the utimensat rule) and its suid/sgid clearing.
#include <sys/stat.h>

#include <new>

#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

const vfs_context& ctx_of(vfs_context* c) { return c ? *c : vfs_context::kernel(); }

// May ctx do what va asks? Checks only; changes nothing. [i_lock]
int setattr_allowed(ext2_inode_info* ip, vnode* vp, const vnode_attr& va, const vfs_context& ctx) {
  const uint64_t act = va.va_active;
  const bool owner = ext2_owner_or_root(ip, ctx);
  if (ip->i_di.base.i_flags & EXT2_IMMUTABLE_FL) return EPERM;
  uint64_t set_times = act & (VA_ATIME | VA_MTIME);
  if (act & VA_ATIME_NOW) set_times &= ~static_cast<uint64_t>(VA_ATIME);
  if (act & VA_MTIME_NOW) set_times &= ~static_cast<uint64_t>(VA_MTIME);
  // notify_change: an append-only inode keeps its mode, owners and explicit times.
  if ((ip->i_di.base.i_flags & EXT2_APPEND_FL) && ((act & (VA_MODE | VA_UID | VA_GID)) || set_times)) return EPERM;
  if ((act & VA_MODE) && !owner) return EPERM;
  if ((act & VA_UID) && !ctx.is_superuser() && va.va_uid != ext2_i_uid(ip)) return EPERM;
  if ((act & VA_GID) && !ctx.is_superuser() &&
      !(ctx.uid == ext2_i_uid(ip) && (va.va_gid == ext2_i_gid(ip) || ctx.groupmember(va.va_gid))))
    return EPERM;
  uint64_t explicit_times = act & (VA_ATIME | VA_MTIME | VA_CTIME);
  if (act & VA_ATIME_NOW) explicit_times &= ~static_cast<uint64_t>(VA_ATIME);
  if (act & VA_MTIME_NOW) explicit_times &= ~static_cast<uint64_t>(VA_MTIME);
  if (explicit_times && !owner) return EPERM;  // explicit times: owner or root only
  if ((act & (VA_ATIME_NOW | VA_MTIME_NOW)) && !owner && ext2_access_check(ip, EXT2_VWRITE, ctx) != 0)
    return EACCES;  // "now": also anyone who may write
  if (act & VA_SIZE) {
    if (vp->v_type == vtype::VDIR) return EISDIR;
    if (vp->v_type != vtype::VREG) return EINVAL;
    if (va.va_size < 0) return EINVAL;
    if (static_cast<uint64_t>(va.va_size) > ip->i_mnt->m_max_file_size) return EFBIG;
    if (ip->i_di.base.i_flags & EXT2_APPEND_FL) return EPERM;
  }
  return 0;
}

// Applies mode, owner and times. [i_lock]
void setattr_apply(ext2_inode_info* ip, const vnode_attr& va, const vfs_context& ctx) {
  const uint64_t act = va.va_active;
  mode_t mode = ext2_i_mode(ip);
  // chown (chown_common): set-user-ID always, even for root; set-group-ID as setattr_should_drop_sgid
  // decides against the group the file has before the change.
  const mode_t chown_kill = S_ISUID | ext2_should_drop_sgid(ip, ctx);
  if (act & VA_UID) ext2_i_set_uid(ip, va.va_uid);
  if (act & VA_GID) ext2_i_set_gid(ip, va.va_gid);
  if (act & VA_MODE) {
    mode = (mode & S_IFMT) | (va.va_mode & 07777);
    if (!ctx.is_superuser() && !ctx.groupmember(ext2_i_gid(ip))) mode &= ~S_ISGID;
  }
  if ((act & (VA_UID | VA_GID)) && !S_ISDIR(mode)) mode &= ~chown_kill;
  if ((act & VA_KILL_SUIDGID) && S_ISREG(mode)) {
    mode &= ~S_ISUID;
    if (mode & S_IXGRP) mode &= ~S_ISGID;
  }
  ip->i_di.base.i_mode = static_cast<uint16_t>(mode);
  struct timespec now = ext2_now();
  if (act & VA_ATIME_NOW) ext2_set_time(ip, EXT2_IACC, now);
  else if (act & VA_ATIME) ext2_set_time(ip, EXT2_IACC, va.va_atime);
  if (act & VA_MTIME_NOW) ext2_set_time(ip, EXT2_IUPD, now);
  else if (act & VA_MTIME) ext2_set_time(ip, EXT2_IUPD, va.va_mtime);
  ext2_set_time(ip, EXT2_ICHG, (act & VA_CTIME) ? va.va_ctime : now);
  ip->i_dirty = true;
}

int setattr_impl(vnode* vp, const vnode_attr& va, const vfs_context& ctx) {
  ext2_inode_info* ip = VTOI(vp);
  if (va.va_active == 0) return 0;
  TRY(ext2_check_writable(ip->i_mnt));
  {
    std::lock_guard g(ip->i_lock);
    TRY(setattr_allowed(ip, vp, va, ctx));
  }
  // A truncate or a chown of a non-directory takes the file's capability with it (ATTR_KILL_PRIV).
  if ((va.va_active & VA_SIZE) || ((va.va_active & (VA_UID | VA_GID)) && vp->v_type != vtype::VDIR))
    TRY(ext2_xattr_kill_caps(vp, ctx));
  if (va.va_active & VA_SIZE) {
    TRY(ext2_truncate(vp, static_cast<uint64_t>(va.va_size), ctx));
    std::lock_guard g(ip->i_lock);
    (void)ext2_kill_suid(ip, ctx);  // a truncate by a caller without CAP_FSETID (setattr_should_drop_suidgid)
  }
  {
    std::lock_guard g(ip->i_lock);
    setattr_apply(ip, va, ctx);
  }
  if (va.va_active & VA_MODE) TRY(ext2_acl_chmod(ip, ctx));  // posix_acl_chmod
  return 0;
}

}  // namespace

int ext2_vnop_getattr(vnop_getattr_args* ap) {
  ext2_inode_info* ip = VTOI(ap->a_vp);
  vnode_attr* va = ap->a_vap;
  std::lock_guard g(ip->i_lock);
  const ext2_inode& d = ip->i_di.base;
  va->va_type = vtype_from_mode(d.i_mode);
  va->va_mode = d.i_mode;
  va->va_uid = ext2_i_uid(ip);
  va->va_gid = ext2_i_gid(ip);
  va->va_size = static_cast<off_t>(ext2_i_size(ip));
  va->va_nlink = d.i_links_count;
  va->va_rdev = (S_ISCHR(d.i_mode) || S_ISBLK(d.i_mode)) ? ext2_decode_dev(&d) : 0;
  va->va_fileid = ip->i_ino;
  va->va_blocks = d.i_blocks;
  va->va_blksize = ip->i_mnt->m_block_size;
  va->va_gen = d.i_generation;
  va->va_flags = d.i_flags;
  va->va_atime = ext2_get_time(ip, EXT2_IACC);
  va->va_mtime = ext2_get_time(ip, EXT2_IUPD);
  va->va_ctime = ext2_get_time(ip, EXT2_ICHG);
  return 0;
}

int ext2_vnop_setattr(vnop_setattr_args* ap) {
  try {
    return setattr_impl(ap->a_vp, *ap->a_vap, ctx_of(ap->a_context));
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
}

int ext2_vnop_access(vnop_access_args* ap) {
  ext2_inode_info* ip = VTOI(ap->a_vp);
  const int want = ap->a_mode & (EXT2_VREAD | EXT2_VWRITE | EXT2_VEXEC);
  std::lock_guard g(ip->i_lock);
  if (want & EXT2_VWRITE) {
    mode_t mode = ext2_i_mode(ip);
    if (ip->i_mnt->m_rdonly && (S_ISREG(mode) || S_ISDIR(mode) || S_ISLNK(mode))) return EROFS;
    if (ip->i_di.base.i_flags & EXT2_IMMUTABLE_FL) return EPERM;
  }
  return ext2_access_check(ip, want, ctx_of(ap->a_context));
}

}  // namespace vnopfs::ext2

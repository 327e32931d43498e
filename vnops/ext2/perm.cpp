// perm.cpp: permission decisions from a vfs_context, the kernel's rules (generic_permission,
// inode_owner_or_capable, the sticky-directory check, inode_init_owner + mode_strip_sgid,
// setattr_should_drop_sgid/suidgid). Root (uid 0) stands for every capability vnopfs knows:
// CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_CHOWN; CAP_FSETID is the context's (has_fsetid: what the kernel said,
// else uid 0).
#include <sys/stat.h>

#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

int ext2_access_check(const ext2_inode_info* ip, int want, const vfs_context& ctx) {
  const mode_t mode = ext2_i_mode(ip);
  want &= EXT2_VREAD | EXT2_VWRITE | EXT2_VEXEC;
  if (ctx.is_superuser()) {
    // Read and write always; execute only if someone may execute it (or it is a directory to search).
    if (!(want & EXT2_VEXEC) || S_ISDIR(mode) || (mode & (S_IXUSR | S_IXGRP | S_IXOTH))) return 0;
    return EACCES;
  }
  int bits;
  if (ctx.uid == ext2_i_uid(ip)) bits = (mode >> 6) & 7;  // the owner class decides alone
  else if (!ip->i_acl.empty() && (mode & S_IRWXG))  // acl_permission_check: the ACL decides the rest
    return acl_permission(ip->i_acl, ext2_i_uid(ip), ext2_i_gid(ip), want, ctx);
  else if (ctx.groupmember(ext2_i_gid(ip))) bits = (mode >> 3) & 7;
  else bits = mode & 7;
  return (want & ~bits) ? EACCES : 0;
}

bool ext2_owner_or_root(const ext2_inode_info* ip, const vfs_context& ctx) {
  return ctx.is_superuser() || ctx.uid == ext2_i_uid(ip);
}

int ext2_sticky_check(const ext2_inode_info* dir, const ext2_inode_info* ip, const vfs_context& ctx) {
  if (!(ext2_i_mode(dir) & S_ISVTX)) return 0;
  if (ctx.is_superuser() || ctx.uid == ext2_i_uid(ip) || ctx.uid == ext2_i_uid(dir)) return 0;
  return EPERM;
}

mode_t ext2_inherit_owner(const ext2_inode_info* dir, mode_t mode, const vfs_context& ctx, uid_t* uid, gid_t* gid) {
  *uid = ctx.uid;
  if (dir && (ext2_i_mode(dir) & S_ISGID)) {
    *gid = ext2_i_gid(dir);
    if (S_ISDIR(mode)) {
      mode |= S_ISGID;
    } else if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP) && !ctx.is_superuser() && !ctx.groupmember(*gid)) {
      mode &= ~S_ISGID;  // mode_strip_sgid
    }
  } else {
    *gid = ctx.gid;
  }
  return mode;
}

mode_t ext2_should_drop_sgid(const ext2_inode_info* ip, const vfs_context& ctx) {
  const mode_t mode = ext2_i_mode(ip);
  if (!(mode & S_ISGID)) return 0;
  if (mode & S_IXGRP) return S_ISGID;  // "setgid" in the traditional sense: always
  if (ctx.groupmember(ext2_i_gid(ip)) || ctx.has_fsetid()) return 0;
  return S_ISGID;  // group-locking bit, but the caller could not have set it (setattr_prepare's rule)
}

mode_t ext2_should_drop_suidgid(const ext2_inode_info* ip, const vfs_context& ctx) {
  const mode_t mode = ext2_i_mode(ip);
  mode_t kill = (mode & S_ISUID) | ext2_should_drop_sgid(ip, ctx);
  if (!kill || !S_ISREG(mode) || ctx.has_fsetid()) return 0;
  return kill;
}

bool ext2_kill_suid(ext2_inode_info* ip, const vfs_context& ctx) {
  mode_t kill = ext2_should_drop_suidgid(ip, ctx);
  if (!kill) return false;
  ip->i_di.base.i_mode = static_cast<uint16_t>(ext2_i_mode(ip) & ~kill);
  ext2_itimes(ip, EXT2_ICHG);
  ctx.setid_cleared = true;
  return true;
}

}  // namespace vnopfs::ext2

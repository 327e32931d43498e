// flags.cpp: the inode flags of chattr(1) (FIOGETFLAGS/FIOSETFLAGS) and what they forbid, with Linux's
// rules: the kernel's VFS enforces S_IMMUTABLE and S_APPEND for a kernel filesystem, but FUSE's kernel side
// never learns our flags, so every check the VFS would make (may_open, may_delete, may_linkat,
// notify_change, inode_permission's MAY_WRITE on an immutable directory) is made here.
#include <fcntl.h>

#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

// Linux's FS_FL_USER_VISIBLE / FS_FL_USER_MODIFIABLE: what lsattr shows and what chattr may change.
constexpr uint32_t kUserVisible = 0x0003DFFF;
constexpr uint32_t kUserModifiable = 0x000380FF;
constexpr uint32_t kNoChange = EXT2_IMMUTABLE_FL | EXT2_APPEND_FL;

uint32_t flags_of(ext2_inode_info* ip) {
  std::lock_guard g(ip->i_lock);
  return ip->i_di.base.i_flags;
}

}  // namespace

int ext2_flags_may_create(ext2_inode_info* dp) {
  return (flags_of(dp) & EXT2_IMMUTABLE_FL) ? EPERM : 0;
}

int ext2_flags_may_delete(ext2_inode_info* dp, ext2_inode_info* ip) {
  if (flags_of(dp) & kNoChange) return EPERM;  // an append-only directory keeps its names
  return (flags_of(ip) & kNoChange) ? EPERM : 0;
}

int ext2_flags_may_link(ext2_inode_info* ip) { return (flags_of(ip) & kNoChange) ? EPERM : 0; }

int ext2_vnop_open(vnop_open_args* ap) {
  const int mode = ap->a_mode;
  const bool writes = (mode & O_ACCMODE) != O_RDONLY || (mode & O_TRUNC);
  if (!writes) return 0;
  const uint32_t fl = flags_of(VTOI(ap->a_vp));
  if (fl & EXT2_IMMUTABLE_FL) return EPERM;
  if ((fl & EXT2_APPEND_FL) && (!(mode & O_APPEND) || (mode & O_TRUNC))) return EPERM;
  return 0;
}

uint32_t ext2_inherited_flags(ext2_inode_info* dir, mode_t mode) {
  const uint32_t fl = flags_of(dir) & EXT2_FL_INHERITED;
  if (S_ISDIR(mode)) return fl;
  return fl & (S_ISREG(mode) ? EXT2_REG_FLMASK : EXT2_OTHER_FLMASK);
}

int ext2_getflags(ext2_inode_info* ip, uint32_t* flagsp) {
  *flagsp = flags_of(ip) & kUserVisible;
  return 0;
}

int ext2_setflags(ext2_inode_info* ip, uint32_t flags, const vfs_context& ctx) {
  TRY(ext2_check_writable(ip->i_mnt));
  std::lock_guard g(ip->i_lock);
  if (!ext2_owner_or_root(ip, ctx)) return EPERM;
  const uint32_t old = ip->i_di.base.i_flags;
  const uint32_t want = (flags & kUserModifiable) | (old & ~kUserModifiable);
  // CAP_LINUX_IMMUTABLE: only root sets or clears immutable and append-only.
  if (((old ^ want) & kNoChange) && !ctx.is_superuser()) return EPERM;
  ip->i_di.base.i_flags = want;
  ext2_itimes(ip, EXT2_ICHG);
  ip->i_dirty = true;
  return 0;
}

}  // namespace vnopfs::ext2

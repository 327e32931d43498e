// namei.cpp: the name VNOPs (lookup, create, mknod, mkdir, symlink, readlink, link, remove, rmdir,
// readdir) over dir.h. Errors and their precedence follow Linux's ext2 (the reference: ENAMETOOLONG first,
// then search permission, then EEXIST/ENOENT, then write permission, then EROFS).
//
// Write order (docs/design.md, "Durability without a journal"): a new inode, with its link count, is written synchronously before the
// entry that names it; a directory's first block before the directory's inode covers it; a link count is
// raised (and written) before an entry is added and lowered after one is removed; the removed entry itself
// is written synchronously (dir.cpp), so a freed inode is never reused while an old name for it is on disk.
#include <sys/stat.h>

#include <cstring>
#include <mutex>
#include <new>

#include "vnops/ext2/dir.h"
#include "vnops/ext2/namei.h"

namespace vnopfs::ext2 {

namespace {

constexpr uint32_t kFastSymlinkMax = sizeof(ext2_inode::i_block);  // targets shorter than this live in i_block

bool is_dot(std::string_view n) { return n == "."; }
bool is_dotdot(std::string_view n) { return n == ".."; }

// Permission on a directory, [i_lock] taken here. A removed directory (links 0) has no names: ENOENT.
int dir_access(ext2_inode_info* dp, int want, const vfs_context& ctx) {
  std::lock_guard g(dp->i_lock);
  if (!S_ISDIR(ext2_i_mode(dp))) return ENOTDIR;
  if (ext2_i_nlink(dp) == 0) return ENOENT;
  return ext2_access_check(dp, want, ctx);
}

// The common front of every op that creates a name: length, search, existence, write, read-only.
int may_create(ext2_inode_info* dp, const componentname* cnp, const vfs_context& ctx) {
  TRY(ext2_check_name(cnp));
  TRY(dir_access(dp, EXT2_VEXEC, ctx));
  if (is_dot(cnp->name()) || is_dotdot(cnp->name())) return EEXIST;
  uint32_t ino;
  int err = ext2_dir_lookup(dp, cnp->name(), &ino);
  if (err == 0) return EEXIST;
  if (err != ENOENT) return err;
  TRY(dir_access(dp, EXT2_VWRITE | EXT2_VEXEC, ctx));
  TRY(ext2_flags_may_create(dp));
  return ext2_check_writable(dp->i_mnt);
}

// Sets the link count of a new or changed inode and writes it synchronously (it is about to be named).
int set_links_sync(ext2_inode_info* ip, uint32_t links) {
  std::lock_guard g(ip->i_lock);
  ip->i_di.base.i_links_count = uint16_t(links);
  ext2_itimes(ip, EXT2_ICHG);
  return ext2_iupdate(ip, true);
}

int add_links(ext2_inode_info* ip, int delta, bool wait) {
  std::lock_guard g(ip->i_lock);
  uint32_t n = ext2_i_nlink(ip);
  if (delta < 0 && n < uint32_t(-delta))
    return ext2_corrupt(ip->i_mnt, ip->i_ino, 0, "i_links_count", "link count %u below the names found", n);
  ip->i_di.base.i_links_count = uint16_t(n + delta);
  ext2_itimes(ip, EXT2_ICHG);
  return ext2_iupdate(ip, wait);
}

// Writes a symlink target: in i_block when short, else in one block of its own (written first).
int write_symlink_target(ext2_inode_info* ip, std::string_view target, const vfs_context& ctx) {
  ext2_mount* m = ip->i_mnt;
  if (target.size() < kFastSymlinkMax) {
    std::lock_guard g(ip->i_lock);
    std::memcpy(ip->i_di.base.i_block, target.data(), target.size());
    ext2_i_set_size(ip, target.size());
    return 0;
  }
  uint32_t pbn;
  bool isnew;
  int flags = EXT2_BMAP_ALLOC | (ext2_may_use_reserve(m, ctx) ? EXT2_BMAP_RESERVE : 0);
  TRY(ext2_bmap(ip, 0, flags, &pbn, &isnew));
  BufRef bp = buf_getblk(m->m_devvp, pbn, BLK_META);
  std::memset(bp.data(), 0, m->m_block_size);
  std::memcpy(bp.data(), target.data(), target.size());
  TRY(buf_bwrite(std::move(bp)));
  std::lock_guard g(ip->i_lock);
  ext2_i_set_size(ip, target.size());
  return 0;
}

struct new_node {
  mode_t mode;              // type and permission bits; the umask is applied by the caller, or here on ACL mounts
  dev_t rdev = 0;           // devices
  std::string_view target;  // symlinks
};

// Gives a freshly allocated inode its type-specific contents and link count, written synchronously.
int init_node(ext2_inode_info* dp, ext2_inode_info* ip, const new_node& n, const vfs_context& ctx) {
  if (S_ISCHR(n.mode) || S_ISBLK(n.mode)) {
    std::lock_guard g(ip->i_lock);
    ext2_encode_dev(&ip->i_di.base, n.rdev);
  } else if (S_ISLNK(n.mode)) {
    TRY(write_symlink_target(ip, n.target, ctx));
  } else if (S_ISDIR(n.mode)) {
    TRY(ext2_dir_make(ip, dp->i_ino, ctx));
  }
  return set_links_sync(ip, S_ISDIR(n.mode) ? 2 : 1);
}

// Creates the inode and its name: the shared body of create, mknod, mkdir and symlink. dvp is locked
// exclusive by the caller. *vpp comes back with an iocount.
int make_node(vnode* dvp, const componentname* cnp, const new_node& n, const vfs_context& ctx, vnode** vpp) {
  ext2_inode_info* dp = VTOI(dvp);
  ext2_mount* m = dp->i_mnt;
  TRY(may_create(dp, cnp, ctx));
  const bool isdir = S_ISDIR(n.mode);
  uid_t uid;
  gid_t gid;
  mode_t mode;
  {
    std::lock_guard g(dp->i_lock);
    if (isdir && ext2_i_nlink(dp) >= EXT2_LINK_MAX) return EMLINK;
    mode = ext2_inherit_owner(dp, n.mode, ctx, &uid, &gid);
  }
  // posix_acl_create: the parent's default ACL, cut by the mode asked for, becomes the new inode's access
  // ACL (and a new directory's default ACL); without one, the caller's umask applies (FUSE hands it to us
  // unapplied when ACLs are on).
  posix_acl access, dflt;
  if (m->m_posix_acl && !S_ISLNK(mode)) {
    TRY(ext2_acl_get_default(dp, &dflt));
    if (dflt.empty()) {
      mode &= ~(ctx.umask & 0777);
    } else {
      access = dflt;
      if (acl_create_masq(&access, &mode) == 0) access.clear();
      if (!isdir) dflt.clear();
    }
  }
  vnode* vp;
  TRY(ext2_ialloc(m, dp, mode, uid, gid, &vp));
  ext2_inode_info* ip = VTOI(vp);
  int err = init_node(dp, ip, n, ctx);
  if (!err) err = ext2_acl_init(ip, access, dflt, ctx);
  if (!err && isdir) err = add_links(dp, +1, true);  // ".." of the child counts before the child is named
  if (!err) {
    err = ext2_dir_add(dp, cnp->name(), ip->i_ino, mode, ctx);
    if (err && isdir) (void)add_links(dp, -1, false);
  }
  if (err) {
    ext2_discard_unnamed(vp);
    return err;
  }
  ext2_note_new_name(ip, dp);
  *vpp = vp;
  return 0;
}

int bad_alloc_boundary() { return ENOMEM; }

}  // namespace

void ext2_discard_unnamed(vnode* vp) {
  ext2_inode_info* ip = VTOI(vp);
  {
    // Never named: links 0 lets inactive free the inode and whatever blocks it got.
    std::lock_guard g(ip->i_lock);
    ip->i_di.base.i_links_count = 0;
    ip->i_dirty = true;
  }
  vnode_put(vp);
}

int ext2_make_whiteout(ext2_inode_info* dp, const vfs_context& ctx, vnode** vpp) {
  uid_t uid;
  gid_t gid;
  mode_t mode;
  {
    std::lock_guard g(dp->i_lock);
    mode = ext2_inherit_owner(dp, S_IFCHR, ctx, &uid, &gid);  // Linux's WHITEOUT_MODE: no permission bits
  }
  vnode* vp;
  TRY(ext2_ialloc(dp->i_mnt, dp, mode, uid, gid, &vp));
  new_node n{mode, 0, {}};  // WHITEOUT_DEV: device 0:0
  if (int err = init_node(dp, VTOI(vp), n, ctx)) {
    ext2_discard_unnamed(vp);
    return err;
  }
  *vpp = vp;
  return 0;
}

int ext2_check_name(const componentname* cnp) {
  if (cnp->cn_namelen > EXT2_NAME_LEN) return ENAMETOOLONG;
  if (cnp->cn_namelen == 0) return ENOENT;
  if (std::memchr(cnp->cn_nameptr, '/', cnp->cn_namelen) || std::memchr(cnp->cn_nameptr, '\0', cnp->cn_namelen))
    return EINVAL;
  return 0;
}

int ext2_iget_entry(ext2_inode_info* dp, uint32_t ino, uint8_t expect_ft, vnode** vpp) {
  ext2_mount* m = dp->i_mnt;
  vnode* vp;
  int err = ext2_iget(m, ino, &vp);
  if (err == EINVAL || err == ESTALE)
    return ext2_corrupt(m, dp->i_ino, 0, "inode", "entry names %s inode %u", err == ESTALE ? "unused" : "invalid",
                        ino);
  TRY(err);
  if (m->m_filetype && expect_ft != EXT2_FT_UNKNOWN) {
    uint16_t mode;
    {
      std::lock_guard g(VTOI(vp)->i_lock);
      mode = uint16_t(ext2_i_mode(VTOI(vp)));
    }
    if (ft_from_mode(mode) != expect_ft) {
      vnode_put(vp);
      return ext2_corrupt(m, dp->i_ino, 0, "file_type", "entry for inode %u says type %u, the inode mode is 0%o",
                          ino, expect_ft, mode);
    }
  }
  *vpp = vp;
  return 0;
}

int ext2_vnop_lookup(vnop_lookup_args* ap) try {
  vnode* dvp = ap->a_dvp;
  ext2_inode_info* dp = VTOI(dvp);
  const componentname* cnp = ap->a_cnp;
  TRY(ext2_check_name(cnp));
  TRY(dir_access(dp, EXT2_VEXEC, *ap->a_context));
  std::string_view name = cnp->name();
  if (is_dot(name) || (is_dotdot(name) && dp->i_ino == EXT2_ROOT_INO)) {
    vnode_get(dvp);
    *ap->a_vpp = dvp;
    return 0;
  }
  uint32_t ino;
  dir_pos pos;
  TRY(ext2_dir_lookup(dp, name, &ino, &pos));
  return ext2_iget_entry(dp, ino, pos.slot.ent.file_type, ap->a_vpp);
} catch (const std::bad_alloc&) {
  return bad_alloc_boundary();
}

int ext2_vnop_create(vnop_create_args* ap) try {
  new_node n{S_IFREG | (ap->a_vap->va_mode & 07777), 0, {}};
  return make_node(ap->a_dvp, ap->a_cnp, n, *ap->a_context, ap->a_vpp);
} catch (const std::bad_alloc&) {
  return bad_alloc_boundary();
}

int ext2_vnop_mknod(vnop_mknod_args* ap) try {
  const vnode_attr* vap = ap->a_vap;
  mode_t type = vap->va_mode & S_IFMT;
  if (type == 0) type = S_IFREG;
  if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK && type != S_IFCHR && type != S_IFBLK) return EINVAL;
  new_node n{type | (vap->va_mode & 07777), 0, {}};
  n.rdev = vap->va_rdev;
  return make_node(ap->a_dvp, ap->a_cnp, n, *ap->a_context, ap->a_vpp);
} catch (const std::bad_alloc&) {
  return bad_alloc_boundary();
}

int ext2_vnop_mkdir(vnop_mkdir_args* ap) try {
  new_node n{S_IFDIR | (ap->a_vap->va_mode & 07777), 0, {}};
  return make_node(ap->a_dvp, ap->a_cnp, n, *ap->a_context, ap->a_vpp);
} catch (const std::bad_alloc&) {
  return bad_alloc_boundary();
}

int ext2_vnop_symlink(vnop_symlink_args* ap) try {
  std::string_view target = ap->a_target ? std::string_view(ap->a_target) : std::string_view();
  if (target.empty()) return ENOENT;
  TRY(ext2_check_name(ap->a_cnp));
  // Linux: the target and its NUL must fit one block.
  if (target.size() + 1 > VTOI(ap->a_dvp)->i_mnt->m_block_size) return ENAMETOOLONG;
  new_node n{S_IFLNK | 0777, 0, {}};
  n.target = target;
  return make_node(ap->a_dvp, ap->a_cnp, n, *ap->a_context, ap->a_vpp);
} catch (const std::bad_alloc&) {
  return bad_alloc_boundary();
}

int ext2_vnop_readlink(vnop_readlink_args* ap) try {
  ext2_inode_info* ip = VTOI(ap->a_vp);
  ext2_mount* m = ip->i_mnt;
  uint64_t size;
  bool slow;
  char fast[kFastSymlinkMax];
  {
    std::lock_guard g(ip->i_lock);
    if (!S_ISLNK(ext2_i_mode(ip))) return EINVAL;
    size = ext2_i_size(ip);
    slow = ext2_has_blockmap(ip);
    std::memcpy(fast, ip->i_di.base.i_block, sizeof fast);
  }
  if (size == 0 || size >= (slow ? m->m_block_size : kFastSymlinkMax))
    return ext2_corrupt(m, ip->i_ino, 0, "i_size", "symlink size %llu", static_cast<unsigned long long>(size));
  if (!slow) return uiomove(fast, size_t(size), ap->a_uio);
  uint32_t pbn;
  TRY(ext2_bmap(ip, 0, 0, &pbn, nullptr));
  if (pbn == 0) return ext2_corrupt(m, ip->i_ino, 0, "i_block[0]", "slow symlink without a block");
  BufRef bp;
  TRY(buf_meta_bread(m->m_devvp, pbn, &bp));
  return uiomove(bp.data(), size_t(size), ap->a_uio);
} catch (const std::bad_alloc&) {
  return bad_alloc_boundary();
}

int ext2_vnop_link(vnop_link_args* ap) try {
  ext2_inode_info* ip = VTOI(ap->a_vp);
  ext2_inode_info* dp = VTOI(ap->a_tdvp);
  const vfs_context& ctx = *ap->a_context;
  TRY(may_create(dp, ap->a_cnp, ctx));
  mode_t mode;
  {
    std::lock_guard g(ip->i_lock);
    mode = ext2_i_mode(ip);
    if (S_ISDIR(mode)) return EPERM;
    if (ext2_i_nlink(ip) == 0) return ENOENT;
    if (ext2_i_nlink(ip) >= EXT2_LINK_MAX) return EMLINK;
  }
  TRY(ext2_flags_may_link(ip));
  TRY(add_links(ip, +1, true));
  int err = ext2_dir_add(dp, ap->a_cnp->name(), ip->i_ino, mode, ctx);
  if (err) (void)add_links(ip, -1, false);
  else ext2_note_new_name(ip, dp);
  return err;
} catch (const std::bad_alloc&) {
  return bad_alloc_boundary();
}

int ext2_may_delete(ext2_inode_info* dp, ext2_inode_info* ip, const vfs_context& ctx) {
  TRY(dir_access(dp, EXT2_VWRITE | EXT2_VEXEC, ctx));
  // Mode and owners cannot change under us: setattr needs the vnode locks our caller holds.
  TRY(ext2_sticky_check(dp, ip, ctx));
  return ext2_flags_may_delete(dp, ip);
}

int ext2_unlink_name(ext2_inode_info* dp, ext2_inode_info* ip, std::string_view name, dir_pos* pos) {
  uint32_t ino;
  TRY(ext2_dir_lookup(dp, name, &ino, pos));
  if (ino != ip->i_ino) return ENOENT;  // the name moved on since the caller looked it up
  return ext2_check_writable(dp->i_mnt);
}

int ext2_vnop_remove(vnop_remove_args* ap) try {
  ext2_inode_info* dp = VTOI(ap->a_dvp);
  ext2_inode_info* ip = VTOI(ap->a_vp);
  TRY(ext2_check_name(ap->a_cnp));
  {
    std::lock_guard g(ip->i_lock);
    if (S_ISDIR(ext2_i_mode(ip))) return EISDIR;
  }
  TRY(ext2_may_delete(dp, ip, *ap->a_context));
  dir_pos pos;
  TRY(ext2_unlink_name(dp, ip, ap->a_cnp->name(), &pos));
  TRY(ext2_dir_remove(dp, pos));
  return add_links(ip, -1, false);  // at 0, inactive frees the inode when the last reference goes
} catch (const std::bad_alloc&) {
  return bad_alloc_boundary();
}

int ext2_vnop_rmdir(vnop_rmdir_args* ap) try {
  ext2_inode_info* dp = VTOI(ap->a_dvp);
  ext2_inode_info* ip = VTOI(ap->a_vp);
  TRY(ext2_check_name(ap->a_cnp));
  std::string_view name = ap->a_cnp->name();
  if (is_dot(name)) return EINVAL;
  if (is_dotdot(name)) return ENOTEMPTY;
  {
    std::lock_guard g(ip->i_lock);
    if (!S_ISDIR(ext2_i_mode(ip))) return ENOTDIR;
  }
  if (ip->i_ino == EXT2_ROOT_INO || ip == dp) return EBUSY;
  TRY(ext2_may_delete(dp, ip, *ap->a_context));
  dir_pos pos;
  TRY(ext2_unlink_name(dp, ip, name, &pos));
  bool empty;
  TRY(ext2_dir_is_empty(ip, &empty));
  if (!empty) return ENOTEMPTY;
  TRY(ext2_dir_remove(dp, pos));
  TRY(ext2_dir_orphan(ip));
  return add_links(dp, -1, false);  // the child's ".." no longer counts
} catch (const std::bad_alloc&) {
  return bad_alloc_boundary();
}

int ext2_dir_orphan(ext2_inode_info* ip) {
  std::lock_guard g(ip->i_lock);
  ip->i_di.base.i_links_count = 0;
  ext2_itimes(ip, EXT2_ICHG);
  return ext2_iupdate(ip, false);
}

int ext2_vnop_readdir(vnop_readdir_args* ap) try {
  ext2_inode_info* dp = VTOI(ap->a_vp);
  {
    std::lock_guard g(dp->i_lock);
    if (!S_ISDIR(ext2_i_mode(dp))) return ENOTDIR;
  }
  int eof = 0;
  int err = ext2_dir_readdir(dp, ap->a_cookie, ap->a_filler, ap->a_fctx, &eof);
  if (!err) ext2_touch_atime(dp);  // iterate_dir's file_accessed
  if (ap->a_eofflag) *ap->a_eofflag = eof;
  return err;
} catch (const std::bad_alloc&) {
  return bad_alloc_boundary();
}

}  // namespace vnopfs::ext2

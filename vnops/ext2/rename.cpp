// rename.cpp: VNOP_RENAME, plain, RENAME_NOREPLACE, RENAME_EXCHANGE and RENAME_WHITEOUT, with Linux's
// errors.
//
// Locking: the VNOP comes with no vnode lock held (vnop.def column X). Renames are serialized by the
// mount's rename lock, which also keeps every directory's ".." still while we walk up from the target
// directory to refuse a move into the source's own subtree. Then the (up to four) vnodes are locked in
// address order with vn_lock_pair, the order every other multi-vnode op uses.
//
// The caller passes what it looked up: tvp is the vnode the target name had (nullptr when absent). Under
// the locks both names are looked up again; if either no longer names what the caller saw, ENOENT (source
// gone) or ESTALE (target changed): the frontend looks up again and retries.
//
// Write order (docs/design.md, "Durability without a journal"): the new name is written (synchronously) before the old one is removed, so
// a crash leaves two names (e2fsck fixes the link count), never none; a directory's parent gains its link
// before the entry and loses it after. A whiteout inode is written (links 1) before anything else, and the
// old entry is pointed at it where a plain rename removes it: a crash before that leaves an unnamed inode,
// which e2fsck puts in lost+found.
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <new>

#include "vnops/ext2/namei.h"

namespace vnopfs::ext2 {

namespace {

class rename_locks {
 public:
  rename_locks(vnode* a, vnode* b, vnode* c, vnode* d) : v_{a, b, c, d} {
    std::sort(v_.begin(), v_.end());
    auto end = std::unique(v_.begin(), v_.end());
    std::fill(end, v_.end(), nullptr);
    std::sort(v_.begin(), v_.end(), [](vnode* x, vnode* y) {  // nullptrs last, the rest ascending
      return x && (!y || x < y);
    });
    vn_lock_pair(v_[0], v_[1]);
    vn_lock_pair(v_[2], v_[3]);
  }
  ~rename_locks() {
    vn_unlock_pair(v_[2], v_[3]);
    vn_unlock_pair(v_[0], v_[1]);
  }
  rename_locks(const rename_locks&) = delete;
  rename_locks& operator=(const rename_locks&) = delete;

 private:
  std::array<vnode*, 4> v_;
};

mode_t mode_of(ext2_inode_info* ip) {
  std::lock_guard g(ip->i_lock);
  return ext2_i_mode(ip);
}

int links_change(ext2_inode_info* ip, int delta, bool wait) {
  std::lock_guard g(ip->i_lock);
  uint32_t n = ext2_i_nlink(ip);
  if (delta < 0 && n < uint32_t(-delta))
    return ext2_corrupt(ip->i_mnt, ip->i_ino, 0, "i_links_count", "link count %u below the names found", n);
  if (delta > 0 && n + delta > EXT2_LINK_MAX) return EMLINK;
  ip->i_di.base.i_links_count = uint16_t(n + delta);
  ext2_itimes(ip, EXT2_ICHG);
  return ext2_iupdate(ip, wait);
}

int touch_ctime(ext2_inode_info* ip) {
  std::lock_guard g(ip->i_lock);
  ext2_itimes(ip, EXT2_ICHG);
  return ext2_iupdate(ip, false);
}

// EINVAL when directory `moving` is dir or one of dir's ancestors. Walks ".." up to the root under the
// rename lock; a walk longer than the inode count is a cycle: corruption.
int check_not_ancestor(ext2_inode_info* moving, ext2_inode_info* dir) {
  ext2_mount* m = dir->i_mnt;
  uint32_t cur = dir->i_ino;
  for (uint32_t steps = 0; cur != EXT2_ROOT_INO; steps++) {
    if (cur == moving->i_ino) return EINVAL;
    if (steps > m->m_inodes_count)
      return ext2_corrupt(m, dir->i_ino, 0, "..", "directory cycle above inode %u", dir->i_ino);
    vnode* vp;
    TRY(ext2_iget_entry(dir, cur, EXT2_FT_UNKNOWN, &vp));
    uint32_t parent = 0;
    int err = ext2_dir_lookup(VTOI(vp), "..", &parent);
    vnode_put(vp);
    if (err == ENOENT) return ext2_corrupt(m, cur, 0, "..", "directory without a \"..\" entry");
    TRY(err);
    cur = parent;
  }
  return moving->i_ino == EXT2_ROOT_INO ? EINVAL : 0;
}

// Re-points a moved directory's ".." to its new parent.
int set_dotdot(ext2_inode_info* ip, ext2_inode_info* newparent) {
  uint32_t old;
  dir_pos pos;
  int err = ext2_dir_lookup(ip, "..", &old, &pos);
  if (err == ENOENT) return ext2_corrupt(ip->i_mnt, ip->i_ino, 0, "..", "directory without a \"..\" entry");
  TRY(err);
  return ext2_dir_retarget(ip, pos, newparent->i_ino, S_IFDIR, false);
}

struct rename_ctx {
  ext2_inode_info *fdp, *fip, *tdp, *tip;  // tip nullptr when the target is absent
  std::string_view fname, tname;
  const vfs_context* ctx;
  ext2_inode_info* wip = nullptr;  // RENAME_WHITEOUT: the whiteout the old name is left naming
  bool* wnamed = nullptr;          // set once the old name names wip (it must no longer be discarded)
  bool cross() const { return fdp != tdp; }
};

// Checks of a plain rename (and NOREPLACE) before anything changes.
int check_plain(const rename_ctx& r, bool fdir) {
  if (r.tip) {
    bool tdir = S_ISDIR(mode_of(r.tip));
    if (fdir && !tdir) return ENOTDIR;
    if (!fdir && tdir) return EISDIR;
    if (tdir) {
      bool empty;
      TRY(ext2_dir_is_empty(r.tip, &empty));
      if (!empty) return ENOTEMPTY;
    }
  }
  if (fdir && r.cross() && !r.tip) {
    std::lock_guard g(r.tdp->i_lock);
    if (ext2_i_nlink(r.tdp) >= EXT2_LINK_MAX) return EMLINK;
  }
  return 0;
}

// A plain rename (with wip: the old name left naming the whiteout). The caller ran check_plain.
int do_plain(const rename_ctx& r) {
  mode_t fmode = mode_of(r.fip);
  const bool fdir = S_ISDIR(fmode);
  TRY(ext2_check_writable(r.fdp->i_mnt));
  const bool tdir = r.tip && S_ISDIR(mode_of(r.tip));
  // 1. The new name, written before anything is taken away.
  if (fdir && r.cross() && !tdir) TRY(links_change(r.tdp, +1, true));
  if (r.tip) {
    dir_pos tpos;
    uint32_t tino;
    TRY(ext2_dir_lookup(r.tdp, r.tname, &tino, &tpos));
    TRY(ext2_dir_retarget(r.tdp, tpos, r.fip->i_ino, fmode, true));
  } else if (int err = ext2_dir_add(r.tdp, r.tname, r.fip->i_ino, fmode, *r.ctx, true)) {
    if (fdir && r.cross()) (void)links_change(r.tdp, -1, false);  // ENOSPC growing tdp: nothing moved
    return err;
  }
  ext2_note_new_name(r.fip, r.tdp);
  // 2. The old name goes, or names the whiteout (looked up again: the add may have split the record
  // before it).
  dir_pos fpos;
  TRY(ext2_unlink_name(r.fdp, r.fip, r.fname, &fpos));
  if (r.wip) {
    TRY(ext2_dir_retarget(r.fdp, fpos, r.wip->i_ino, S_IFCHR, true));
    *r.wnamed = true;
  } else {
    TRY(ext2_dir_remove(r.fdp, fpos));
  }
  TRY(touch_ctime(r.fip));
  // 3. Parents and the replaced inode.
  if (fdir && r.cross()) {
    TRY(set_dotdot(r.fip, r.tdp));
    TRY(links_change(r.fdp, -1, false));
  }
  if (r.tip) {
    if (tdir) {
      TRY(ext2_dir_orphan(r.tip));
      if (!(fdir && r.cross())) TRY(links_change(r.tdp, -1, false));  // net zero when fip brought its ".."
    } else {
      TRY(links_change(r.tip, -1, false));
    }
  }
  return 0;
}

int do_exchange(const rename_ctx& r) {
  mode_t fmode = mode_of(r.fip), tmode = mode_of(r.tip);
  const bool fdir = S_ISDIR(fmode), tdir = S_ISDIR(tmode);
  // A parent gains a subdirectory when only one side is a directory.
  ext2_inode_info* gains = nullptr;
  ext2_inode_info* loses = nullptr;
  if (r.cross() && fdir != tdir) {
    gains = fdir ? r.tdp : r.fdp;
    loses = fdir ? r.fdp : r.tdp;
  }
  TRY(ext2_check_writable(r.fdp->i_mnt));
  if (gains) TRY(links_change(gains, +1, true));
  dir_pos tpos, fpos;
  uint32_t ino;
  TRY(ext2_dir_lookup(r.tdp, r.tname, &ino, &tpos));
  TRY(ext2_dir_retarget(r.tdp, tpos, r.fip->i_ino, fmode, true));
  TRY(ext2_dir_lookup(r.fdp, r.fname, &ino, &fpos));
  TRY(ext2_dir_retarget(r.fdp, fpos, r.tip->i_ino, tmode, false));
  ext2_note_new_name(r.fip, r.tdp);
  ext2_note_new_name(r.tip, r.fdp);
  TRY(touch_ctime(r.fip));
  TRY(touch_ctime(r.tip));
  if (r.cross()) {
    if (fdir) TRY(set_dotdot(r.fip, r.tdp));
    if (tdir) TRY(set_dotdot(r.tip, r.fdp));
  }
  if (loses) TRY(links_change(loses, -1, false));
  return 0;
}

// Permission checks, Linux's vfs_rename + may_delete/may_create order.
int check_access(const rename_ctx& r, bool exchange) {
  TRY(ext2_may_delete(r.fdp, r.fip, *r.ctx));
  if (r.tip) {
    TRY(ext2_may_delete(r.tdp, r.tip, *r.ctx));
  } else {
    std::lock_guard g(r.tdp->i_lock);
    if (ext2_i_nlink(r.tdp) == 0) return ENOENT;
    TRY(ext2_access_check(r.tdp, EXT2_VWRITE | EXT2_VEXEC, *r.ctx));
  }
  if (!r.tip) TRY(ext2_flags_may_create(r.tdp));
  if (r.cross()) {  // a moved directory's ".." changes: write permission on it
    for (ext2_inode_info* ip : {r.fip, exchange ? r.tip : nullptr}) {
      if (!ip) continue;
      std::lock_guard g(ip->i_lock);
      if (S_ISDIR(ext2_i_mode(ip))) TRY(ext2_access_check(ip, EXT2_VWRITE, *r.ctx));
    }
  }
  return 0;
}

// Linux's lock_rename "trap", checked before permissions and types: moving a directory under itself is
// EINVAL; a target that is an ancestor of the source directory is ENOTEMPTY (EINVAL for an exchange).
int check_trap(const rename_ctx& r, bool exchange) {
  if (!r.cross()) return 0;
  if (S_ISDIR(mode_of(r.fip))) TRY(check_not_ancestor(r.fip, r.tdp));
  if (r.tip && S_ISDIR(mode_of(r.tip))) {
    int err = check_not_ancestor(r.tip, r.fdp);
    if (err == EINVAL && !exchange) return ENOTEMPTY;
    TRY(err);
  }
  return 0;
}

// Under the locks: the names still name what the caller saw.
int revalidate(const rename_ctx& r) {
  uint32_t ino;
  TRY(ext2_dir_lookup(r.fdp, r.fname, &ino));
  if (ino != r.fip->i_ino) return ENOENT;
  int err = ext2_dir_lookup(r.tdp, r.tname, &ino);
  if (err && err != ENOENT) return err;
  bool present = err == 0;
  if (present != (r.tip != nullptr) || (present && ino != r.tip->i_ino)) return ESTALE;
  return 0;
}

int rename_locked(const rename_ctx& r, uint32_t flags) {
  TRY(revalidate(r));
  const bool exchange = flags & VNOP_RENAME_EXCHANGE;
  if (exchange && !r.tip) return ENOENT;
  if ((flags & VNOP_RENAME_NOREPLACE) && r.tip) return EEXIST;
  TRY(check_trap(r, exchange));
  if (r.fip == r.tip) return 0;  // two names of one inode: nothing to do (POSIX)
  TRY(check_access(r, exchange));
  if (exchange) return do_exchange(r);
  TRY(check_plain(r, S_ISDIR(mode_of(r.fip))));  // with a whiteout: before an inode is spent on it
  if (!(flags & VNOP_RENAME_WHITEOUT)) return do_plain(r);
  TRY(ext2_check_writable(r.fdp->i_mnt));
  vnode* wvp;
  TRY(ext2_make_whiteout(r.fdp, *r.ctx, &wvp));
  bool named = false;
  rename_ctx rw = r;
  rw.wip = VTOI(wvp);
  rw.wnamed = &named;
  int err = do_plain(rw);
  if (named) {
    vnode_put(wvp);
  } else {
    ext2_discard_unnamed(wvp);
  }
  return err;
}

}  // namespace

int ext2_vnop_rename(vnop_rename_args* ap) try {
  const uint32_t flags = ap->a_flags;
  if (flags & ~uint32_t(VNOP_RENAME_NOREPLACE | VNOP_RENAME_EXCHANGE | VNOP_RENAME_WHITEOUT)) return EINVAL;
  if ((flags & VNOP_RENAME_EXCHANGE) && (flags & (VNOP_RENAME_NOREPLACE | VNOP_RENAME_WHITEOUT))) return EINVAL;
  TRY(ext2_check_name(ap->a_fcnp));
  TRY(ext2_check_name(ap->a_tcnp));
  std::string_view fname = ap->a_fcnp->name(), tname = ap->a_tcnp->name();
  if (fname == "." || fname == "..") return EBUSY;
  if (tname == "." || tname == "..") return (flags & VNOP_RENAME_NOREPLACE) ? EEXIST : EBUSY;
  if (ap->a_fdvp->v_mount != ap->a_tdvp->v_mount) return EXDEV;
  ext2_mount* m = VTOI(ap->a_fdvp)->i_mnt;
  std::lock_guard rl(m->m_rename_lock);
  rename_locks locks(ap->a_fdvp, ap->a_fvp, ap->a_tdvp, ap->a_tvp);
  rename_ctx r{VTOI(ap->a_fdvp), VTOI(ap->a_fvp), VTOI(ap->a_tdvp), ap->a_tvp ? VTOI(ap->a_tvp) : nullptr,
               fname, tname, ap->a_context};
  if (!S_ISDIR(mode_of(r.fdp)) || !S_ISDIR(mode_of(r.tdp))) return ENOTDIR;
  return rename_locked(r, flags);
} catch (const std::bad_alloc&) {
  return ENOMEM;
}

}  // namespace vnopfs::ext2

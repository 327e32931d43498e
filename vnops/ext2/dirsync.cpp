// dirsync.cpp: synchronous directory changes, Linux's IS_DIRSYNC. On a mount with -o dirsync or -o sync,
// and in a directory with chattr +D or +S, a create, mknod, mkdir, symlink, link, remove, rmdir or rename
// returns only when its change is stable: the directory blocks it wrote (noted on each directory by
// ext2_note_meta_dirty), the directories' inodes, the inode it made with the names above it, and a device
// flush. The ops keep their own write order (namei.cpp, rename.cpp: an inode before the entry naming it,
// a new name before the old one goes); this adds the wait at the end, through the fsync path, so that
// nothing is written out of the order docs/durability.md keeps. Unlike the ext2-sync table, which writes
// everything an op touched, no file's data is written here: dirsync is about names.
//
// What it does not make synchronous, as in Linux's ext2: the link count of the inode a remove or rename
// took a name from (written later; a crash before leaves a count e2fsck lowers), and the bitmaps that
// free a removed inode and its blocks (deferred until a device flush anyway: rule 6).
#include <algorithm>
#include <new>

#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

bool dir_wants_sync(vnode* vp) {
  if (vp->v_type != vtype::VDIR || VTOI(vp) == nullptr) return false;
  uint32_t fl;
  (void)ext2_getflags(VTOI(vp), &fl);
  return fl & (EXT2_DIRSYNC_FL | EXT2_SYNC_FL);
}

bool linked(vnode* vp) {
  ext2_inode_info* ip = VTOI(vp);
  std::lock_guard g(ip->i_lock);
  return ext2_i_nlink(ip) != 0;
}

}  // namespace

int ext2_dirsync(vnode* const* vps, size_t n, vnode* made) {
  if (n == 0 || vps[0] == nullptr) return 0;
  const bool wanted = (vps[0]->v_mount->mnt_flag & (MNT_DIRSYNC | MNT_SYNCHRONOUS)) ||
                      std::any_of(vps, vps + n, [](vnode* vp) { return vp && dir_wants_sync(vp); });
  if (!wanted) return 0;
  try {
    // The inode made: its fsync writes it, then walks its new name up, writing the directory's block
    // with the entry and the directory's inode (fsync.cpp). One walk covers create, mknod, mkdir and
    // symlink.
    if (made) return ext2_fsync_vnode(made, MNT_WAIT, /*flush_device=*/true);
    // link, remove, rmdir, rename: each directory changed, once. A file named or unnamed keeps its data
    // for its own fsync; a directory removed (or replaced) has nothing left to keep.
    int err = 0;
    std::vector<vnode*> done;
    for (size_t i = 0; i < n; i++) {
      vnode* vp = vps[i];
      if (vp == nullptr || vp->v_type != vtype::VDIR || VTOI(vp) == nullptr || !linked(vp)) continue;
      if (std::find(done.begin(), done.end(), vp) != done.end()) continue;
      done.push_back(vp);
      if (int e = ext2_fsync_vnode(vp, MNT_WAIT, /*flush_device=*/true); e && !err) err = e;
    }
    return err;
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
}

}  // namespace vnopfs::ext2

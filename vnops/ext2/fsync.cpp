// fsync.cpp: VNOP_FSYNC: data, then the metadata that reaches it (indirect blocks, bitmaps, directory blocks
// noted by ext2_note_meta_dirty), then the inode, then a device flush. Data goes first so that no pointer
// written by this fsync can reach a block whose contents are not yet on disk.
#include <algorithm>
#include <new>

#include "vnopfs/cluster.h"
#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

// Writes the noted metadata buffers that are still dirty.
int flush_noted_meta(ext2_inode_info* ip, bool wait) {
  std::vector<uint32_t> blocks;
  {
    std::lock_guard g(ip->i_lock);
    blocks.swap(ip->i_meta_dirty);
  }
  std::sort(blocks.begin(), blocks.end());
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  vnode* devvp = ip->i_mnt->m_devvp;
  for (uint32_t blk : blocks) {
    BufRef bp = buf_getblk(devvp, blk, BLK_META | BLK_ONLYVALID);
    if (!bp || !(buf_flags(bp.get()) & B_DELWRI)) continue;
    if (wait) {
      TRY(buf_bwrite(std::move(bp)));
    } else {
      TRY(buf_bawrite(std::move(bp)));
    }
  }
  return 0;
}

}  // namespace

int ext2_fsync_vnode(vnode* vp, int waitfor, bool flush_device) {
  ext2_inode_info* ip = VTOI(vp);
  if (ip == nullptr) return 0;
  ext2_mount* m = ip->i_mnt;
  if (!m->m_mounted_rw) return 0;
  const bool wait = waitfor != MNT_NOWAIT;
  int err = 0;
  auto keep = [&err](int e) { if (e && !err) err = e; };
  if (vp->v_type == vtype::VREG) {
    keep(cluster_push(vp, wait ? IO_SYNC : 0));
    keep(buf_flushdirtyblks(vp, wait ? MNT_WAIT : MNT_NOWAIT));
  }
  if (m->m_rdonly) {  // remounted read-only after corruption: no metadata is written any more
    std::lock_guard g(ip->i_lock);
    return err ? err : (ip->i_dirty || !ip->i_meta_dirty.empty()) ? EIO : 0;
  }
  keep(flush_noted_meta(ip, wait));
  {
    std::lock_guard g(ip->i_lock);
    if (waitfor == MNT_WAIT) keep(ext2_iflush(ip));
    else if (waitfor == MNT_DWAIT && ip->i_data_dirty) keep(ext2_iupdate(ip, true));
    else if (waitfor == MNT_NOWAIT && ip->i_dirty) keep(ext2_iupdate(ip, false));
  }
  if (flush_device && wait) {
    if (waitfor == MNT_WAIT) keep(ext2_sbupdate(m, true));
    keep(ext2_dev_flush(m));
  }
  return err;
}

int ext2_vnop_fsync(vnop_fsync_args* ap) {
  try {
    return ext2_fsync_vnode(ap->a_vp, ap->a_waitfor, /*flush_device=*/true);
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
}

}  // namespace vnopfs::ext2

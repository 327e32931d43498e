// fsync.cpp: VNOP_FSYNC: data, then the metadata that reaches it (indirect blocks, bitmaps, directory blocks
// noted by ext2_note_meta_dirty), then the inode, then the new names above it, then a device flush. Data
// goes first so that no pointer written by this fsync can reach a block whose contents are not yet on disk.
//
// New names (docs/durability.md): kernel ext2 keeps a new file's name only after an fsync of its directory;
// ext4 keeps it after an fsync of the file, and programs count on that. Here each inode remembers the
// directory it last got a name in (i_new_parent); fsync walks up while that is set, writing at each step the
// directory's noted blocks (the block with the entry, the bitmaps of the directory's own new blocks) and its
// inode. The inode an entry names is always on disk before the entry can be: create, mkdir and link write
// the inode (and a new directory's first block) synchronously before they add the entry, and the walk
// starts after this inode's own write. One device flush at the end covers every step; one before the
// metadata keeps the data ahead of the pointers (ext2_fsync_vnode).
#include <algorithm>
#include <new>

#include "vnopfs/cluster.h"
#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

// Writes the noted metadata buffers that are still dirty, and waits.
int flush_noted_meta(ext2_inode_info* ip) {
  std::vector<uint32_t> blocks;
  {
    std::lock_guard g(ip->i_lock);
    blocks.swap(ip->i_meta_dirty);
    ip->i_meta_dirty_dedupe = kMetaDirtyDedupe;
  }
  std::sort(blocks.begin(), blocks.end());
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  vnode* devvp = ip->i_mnt->m_devvp;
  for (uint32_t blk : blocks) {
    BufRef bp = buf_getblk(devvp, blk, BLK_META | BLK_ONLYVALID);
    if (!bp || !(buf_flags(bp.get()) & B_DELWRI)) continue;
    TRY(buf_bwrite(std::move(bp)));
  }
  return 0;
}

// Writes the entries that name ip and each new directory above it (see the top of the file). An inode
// reclaimed meanwhile got its trail back from m_names_kept at iget; one whose trail was lost (the table
// full: m_names_lost) makes the whole mount be synced, which writes every entry, once for all the names
// lost before it started.
int sync_new_names(ext2_inode_info* ip) {
  ext2_mount* m = ip->i_mnt;
  // ip itself may be one whose trail was lost (reclaimed, then read again with i_new_parent 0).
  if (m->m_names_lost.load() != m->m_names_synced.load())
    return VFS_SYNC(m->m_mp, MNT_WAIT, vfs_context::kernel());
  {
    std::lock_guard g(ip->i_lock);
    if (ip->i_new_parent == 0) return 0;
    if (ext2_i_nlink(ip) == 0) {  // unlinked since: no name left to keep
      ip->i_new_parent = 0;
      return 0;
    }
  }
  ext2_inode_info* cur = ip;
  vnode* held = nullptr;  // iocount on cur when it is a directory above ip
  int err = 0;
  for (uint32_t steps = 0; !err; steps++) {
    uint32_t dino;
    {
      std::lock_guard g(cur->i_lock);
      dino = cur->i_new_parent;
    }
    // A trail can go stale (its directory removed and the inode number reused) and, in theory, loop: the
    // walk only writes what it meets, so it stops rather than reports anything.
    if (dino == 0 || steps > m->m_inodes_count) break;
    vnode* dvp = nullptr;
    int e = ext2_iget(m, dino, &dvp);
    if (e == ESTALE || e == EINVAL) {  // the directory is gone, and the name with it: nothing to keep
      std::lock_guard g(cur->i_lock);
      if (cur->i_new_parent == dino) cur->i_new_parent = 0;
      break;
    }
    if (e) {
      err = e;
      break;
    }
    ext2_inode_info* dp = VTOI(dvp);
    e = flush_noted_meta(dp);
    if (!e) {
      std::lock_guard g(dp->i_lock);
      e = ext2_iflush(dp);
    }
    if (!e) {  // a rename or link since we read it moved the name on: that one stays to be written
      std::lock_guard g(cur->i_lock);
      if (cur->i_new_parent == dino) cur->i_new_parent = 0;
    }
    if (held) vnode_put(held);
    held = dvp;
    cur = dp;
    err = e;
  }
  if (held) vnode_put(held);
  return err;
}

}  // namespace

void ext2_note_new_name(ext2_inode_info* ip, const ext2_inode_info* dp) {
  std::lock_guard g(ip->i_lock);
  ip->i_new_parent = dp->i_ino;
}

int ext2_fsync_vnode(vnode* vp, int waitfor, bool flush_device, bool data_stable) {
  ext2_inode_info* ip = VTOI(vp);
  if (ip == nullptr) return 0;
  ext2_mount* m = ip->i_mnt;
  if (!m->m_mounted_rw) return 0;
  const bool wait = waitfor != MNT_NOWAIT;
  int err = 0;
  auto keep = [&err](int e) { if (e && !err) err = e; };
  // Data dirty now was written after the caller's flush, if any: data_stable does not cover it.
  if (vp->v_type == vtype::VREG && buf_vnode_isdirty(vp)) data_stable = false;
  if (vp->v_type == vtype::VREG) {
    keep(cluster_push(vp, wait ? IO_SYNC : 0));
    keep(buf_flushdirtyblks(vp, wait ? MNT_WAIT : MNT_NOWAIT));
  }
  if (m->m_rdonly) {  // remounted read-only after corruption: no metadata is written any more
    std::lock_guard g(ip->i_lock);
    return err ? err : (ip->i_dirty || !ip->i_meta_dirty.empty()) ? EIO : 0;
  }
  // Ordered (docs/durability.md, rule 7): what follows may point at the data just written (or written
  // earlier by write-behind without a flush): the indirect blocks and bitmaps it noted, a size or block
  // map change in its inode, its new names. A device flush first makes that data stable, so a power loss
  // during this fsync cannot leave a pointer stable without the bytes it points at. An overwrite in place
  // (only timestamps change) needs none.
  if (wait && !data_stable && !err) {
    bool pointers;
    {
      std::lock_guard g(ip->i_lock);
      pointers = !ip->i_meta_dirty.empty() || ip->i_data_dirty || ip->i_new_parent != 0;
    }
    if (pointers) keep(ext2_dev_flush(m));
  }
  // MNT_NOWAIT: the noted metadata stays for the flusher, whose pass orders it after the data.
  if (wait) keep(flush_noted_meta(ip));
  {
    std::lock_guard g(ip->i_lock);
    if (waitfor == MNT_WAIT) keep(ext2_iflush(ip));
    else if (waitfor == MNT_DWAIT && ip->i_data_dirty) keep(ext2_iupdate(ip, true));
    else if (waitfor == MNT_NOWAIT && ip->i_dirty) keep(ext2_iupdate(ip, false));
  }
  if (flush_device && wait) {
    if (!err) keep(sync_new_names(ip));
    if (waitfor == MNT_WAIT) keep(ext2_sbupdate(m, true));
    keep(ext2_dev_flush(m));
    // Metadata (directory, indirect, inode-table blocks) lives on the device vnode, and the flusher may
    // have written it and failed before this fsync came: the block is dirty again (or dropped) but no
    // longer noted as this inode's, so only the device vnode's failure can say that the file's names or
    // block pointers may not be on the device. Conservative: every fsync says EIO from a failed metadata
    // write until a sync(2) (VFS_SYNC with wait) has reported it.
    if (!err && buf_vnode_write_failed(m->m_devvp)) keep(EIO);
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

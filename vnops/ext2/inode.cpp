// inode.cpp: in-core inodes: iget (read, validate, hash), ialloc, iupdate, field helpers, and the end of a
// vnode's life (inactive frees an unlinked inode, reclaim drops the in-core state).
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <new>

#include "vnopfs/cluster.h"
#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

struct inode_loc {
  uint32_t blk;
  uint32_t off;
};

inode_loc locate(const ext2_mount* m, uint32_t ino) {
  uint32_t g = ext2_group_of_ino(m, ino);
  uint64_t byte = static_cast<uint64_t>((ino - 1) % m->m_inodes_per_group) * m->m_inode_size;
  return {m->m_groups[g].g_desc.bg_inode_table + static_cast<uint32_t>(byte / m->m_block_size),
          static_cast<uint32_t>(byte % m->m_block_size)};
}

size_t base_bytes(const ext2_mount* m) { return std::min<size_t>(m->m_inode_size, sizeof(ext2_inode_large)); }

// Reads inode `ino` from its inode-table block.
int read_inode(ext2_mount* m, uint32_t ino, ext2_inode_large* di, std::vector<uint8_t>* tail) {
  inode_loc loc = locate(m, ino);
  BufRef bp;
  TRY(buf_meta_bread(m->m_devvp, loc.blk, &bp));
  std::memset(di, 0, sizeof *di);
  std::memcpy(di, bp.data() + loc.off, base_bytes(m));
  tail->clear();
  if (m->m_inode_size > sizeof(ext2_inode_large)) {
    const char* t = bp.data() + loc.off + sizeof(ext2_inode_large);
    tail->assign(t, t + (m->m_inode_size - sizeof(ext2_inode_large)));
  }
  return 0;
}

bool valid_type(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFCHR: case S_IFBLK: case S_IFIFO: case S_IFSOCK:
      return true;
    default:
      return false;
  }
}

// The checks an inode must pass before anything uses its fields. ESTALE: unused; EIO: corrupt.
int validate_inode(ext2_mount* m, uint32_t ino, const ext2_inode_large& di) {
  const ext2_inode& b = di.base;
  if (b.i_links_count == 0 && (b.i_mode == 0 || b.i_dtime != 0)) return ESTALE;
  if (!valid_type(b.i_mode)) return ext2_corrupt(m, ino, 0, "i_mode", "0%o is no file type", b.i_mode);
  if (b.i_flags & (EXT4_EXTENTS_FL | EXT4_INLINE_DATA_FL | EXT4_EA_INODE_FL))
    return ext2_corrupt(m, ino, 0, "i_flags", "0x%x: extents/inline data/ea_inode are not ext2", b.i_flags);
  if (m->m_inode_size > EXT2_GOOD_OLD_INODE_SIZE &&
      (di.i_extra_isize > m->m_inode_size - EXT2_GOOD_OLD_INODE_SIZE || di.i_extra_isize % 4 != 0))
    return ext2_corrupt(m, ino, 0, "i_extra_isize", "%u (inode size %u)", di.i_extra_isize, m->m_inode_size);
  if (b.i_file_acl != 0 && !ext2_data_block_ok(m, b.i_file_acl))
    return ext2_corrupt(m, ino, 0, "i_file_acl", "block %u outside the data area", b.i_file_acl);
  return 0;
}

// Creates the vnode for ip and puts it in the hash; if another thread got there first, ip is freed and
// that vnode returned instead.
int attach_vnode(ext2_mount* m, ext2_inode_info* ip, vnode** vpp) {
  vnode_param p{vtype_from_mode(ext2_i_mode(ip)), vfs_vnops(m->m_mp), ip, ip->i_ino,
                ip->i_ino == EXT2_ROOT_INO ? VROOT : 0u};
  vnode* vp = nullptr;
  if (int err = vnode_create(m->m_mp, p, &vp)) {
    delete ip;
    return err;
  }
  ip->i_vnode = vp;
  if (S_ISREG(ext2_i_mode(ip))) cluster_setsize(vp, static_cast<off_t>(ext2_i_size(ip)));
  vnode* existing = nullptr;
  vfs_hash_insert(vp, &existing);
  if (existing) {
    vp->v_data = nullptr;  // inactive/reclaim of the loser must not touch the inode
    delete ip;
    vnode_put(vp);
    *vpp = existing;
    return 0;
  }
  // The trail a reclaim kept (fsync.cpp). The previous vnode of this inode left the hash only after its
  // reclaim, so whatever it kept is there by now.
  uint32_t trail = 0;
  bool lost = false;
  {
    std::lock_guard g(m->m_names_lock);
    if (auto it = m->m_names_kept.find(ip->i_ino); it != m->m_names_kept.end()) {
      trail = it->second;
      m->m_names_kept.erase(it);
    }
    lost = m->m_lost_writes.count(ip->i_ino) != 0;
  }
  if (trail) {
    std::lock_guard g(ip->i_lock);
    ip->i_new_parent = trail;
  }
  // Kept in m_lost_writes until the mount ends: the loss is sticky for every later vnode, as for a write
  // dropped after its retries. Without memory for the cache's per-vnode state the loss goes unreported.
  if (lost && buf_vnode_set_lost(vp) != 0)
    VLOG_ERR("ext2 %s: inode %u: lost writes cannot be reported (no memory)", m->m_mp->mnt_from.c_str(), ip->i_ino);
  *vpp = vp;
  return 0;
}

}  // namespace

int ext2_iget(ext2_mount* m, uint32_t ino, vnode** vpp) {
  if (!ext2_ino_ok(m, ino)) return EINVAL;
  if (vfs_hash_get(m->m_mp, ino, vpp) == 0) return 0;
  auto* ip = new (std::nothrow) ext2_inode_info;
  if (ip == nullptr) return ENOMEM;
  ip->i_mnt = m;
  ip->i_ino = ino;
  int err = read_inode(m, ino, &ip->i_di, &ip->i_tail);
  if (!err) err = validate_inode(m, ino, ip->i_di);
  if (err) {
    delete ip;
    return err;
  }
  if (m->m_posix_acl) ext2_acl_load(ip);
  return attach_vnode(m, ip, vpp);
}

int ext2_ialloc(ext2_mount* m, ext2_inode_info* dir, mode_t mode, uid_t uid, gid_t gid, vnode** vpp) {
  TRY(ext2_check_writable(m));
  uint32_t ino = 0;
  const uint32_t parent_group = dir ? ext2_group_of_ino(m, dir->i_ino) : 0;
  int aerr = ext2_ialloc_bit(m, parent_group, S_ISDIR(mode), &ino);
  if (aerr == ENOSPC && ext2_pending_inodes(m) > 0) {  // freed ones are waiting: release them and retry
    TRY(ext2_release_deferred(m));
    aerr = ext2_ialloc_bit(m, parent_group, S_ISDIR(mode), &ino);
  }
  TRY(aerr);
  auto* ip = new (std::nothrow) ext2_inode_info;
  if (ip == nullptr) {
    (void)ext2_ifree_bit(m, ino, S_ISDIR(mode));
    return ENOMEM;
  }
  ip->i_mnt = m;
  ip->i_ino = ino;
  // The bitmap said free: the inode on disk must say so too, or one of them is corrupt. The bit stays
  // set either way (a leaked inode is a lossless e2fsck fix; a doubly used one is not).
  int err = read_inode(m, ino, &ip->i_di, &ip->i_tail);
  if (!err && ip->i_di.base.i_links_count != 0 && ip->i_di.base.i_mode != 0 && ip->i_di.base.i_dtime == 0)
    err = ext2_corrupt(m, ino, 0, "inode bitmap", "inode %u is marked free but in use (links %u)", ino,
                       ip->i_di.base.i_links_count);
  if (err) {
    delete ip;
    return err;
  }
  std::memset(&ip->i_di, 0, sizeof ip->i_di);
  std::fill(ip->i_tail.begin(), ip->i_tail.end(), 0);
  ip->i_di.base.i_mode = static_cast<uint16_t>(mode);
  if (dir) ip->i_di.base.i_flags = ext2_inherited_flags(dir, mode);  // chattr +S, +A, +d, +D pass down
  ext2_i_set_uid(ip, uid);
  ext2_i_set_gid(ip, gid);
  ip->i_di.base.i_generation = m->m_gen_seed.fetch_add(0x9E3779B9u);
  if (m->m_inode_size > EXT2_GOOD_OLD_INODE_SIZE) ip->i_di.i_extra_isize = EXT2_EXTRA_ISIZE_DEFAULT;
  ext2_itimes(ip, EXT2_ICHG | EXT2_IUPD | EXT2_IACC);
  if (ip->i_di.i_extra_isize >= EXT2_EXTRA_ISIZE_CRTIME) {
    ip->i_di.i_crtime = ip->i_di.base.i_ctime;
    ip->i_di.i_crtime_extra = ip->i_di.i_ctime_extra;
  }
  {
    std::lock_guard g(ip->i_lock);
    err = ext2_iupdate(ip, false);
    // The bitmap bit goes out with the inode's first fsync (and the walk over its new name's directories).
    ext2_note_meta_dirty(ip, m->m_groups[ext2_group_of_ino(m, ino)].g_desc.bg_inode_bitmap);
  }
  if (err) {
    delete ip;
    return err;  // the bit stays set: leaked, never doubly used
  }
  return attach_vnode(m, ip, vpp);
}

int ext2_iupdate(ext2_inode_info* ip, bool wait) {
  ext2_mount* m = ip->i_mnt;
  TRY(ext2_check_writable(m));
  inode_loc loc = locate(m, ip->i_ino);
  BufRef bp;
  TRY(buf_meta_bread(m->m_devvp, loc.blk, &bp));
  std::memcpy(bp.data() + loc.off, &ip->i_di, base_bytes(m));
  if (!ip->i_tail.empty())
    std::memcpy(bp.data() + loc.off + sizeof(ext2_inode_large), ip->i_tail.data(), ip->i_tail.size());
  ip->i_dirty = false;
  ip->i_time_dirty = false;
  if (!wait) {
    buf_bdwrite(std::move(bp));
    return 0;
  }
  TRY(buf_bwrite(std::move(bp)));
  ip->i_data_dirty = false;
  return 0;
}

int ext2_iflush(ext2_inode_info* ip) {
  if (ip->i_dirty || ip->i_time_dirty) return ext2_iupdate(ip, true);
  ext2_mount* m = ip->i_mnt;
  TRY(ext2_check_writable(m));
  BufRef bp = buf_getblk(m->m_devvp, locate(m, ip->i_ino).blk, BLK_META | BLK_ONLYVALID);
  if (bp && (buf_flags(bp.get()) & B_DELWRI)) TRY(buf_bwrite(std::move(bp)));
  ip->i_data_dirty = false;
  return 0;
}

// ---- fields

void ext2_i_set_size(ext2_inode_info* ip, uint64_t size) {
  ext2_inode& b = ip->i_di.base;
  b.i_size = static_cast<uint32_t>(size);
  if (S_ISREG(b.i_mode)) {
    b.i_size_high = static_cast<uint32_t>(size >> 32);
    ext2_mount* m = ip->i_mnt;
    if (size > 0x7fffffffull && m->m_rev > EXT2_GOOD_OLD_REV) {
      std::lock_guard g(m->m_sb_lock);
      if (!(m->m_sb.s_feature_ro_compat & EXT2_FEATURE_RO_COMPAT_LARGE_FILE)) {
        m->m_sb.s_feature_ro_compat |= EXT2_FEATURE_RO_COMPAT_LARGE_FILE;
        m->m_large_file = true;
      }
    }
  }
  ip->i_dirty = ip->i_data_dirty = true;
}

void ext2_i_set_uid(ext2_inode_info* ip, uid_t uid) {
  ip->i_di.base.i_uid = static_cast<uint16_t>(uid);
  ip->i_di.base.l_i_uid_high = static_cast<uint16_t>(uid >> 16);
  ip->i_dirty = true;
}

void ext2_i_set_gid(ext2_inode_info* ip, gid_t gid) {
  ip->i_di.base.i_gid = static_cast<uint16_t>(gid);
  ip->i_di.base.l_i_gid_high = static_cast<uint16_t>(gid >> 16);
  ip->i_dirty = true;
}

void ext2_i_blocks_add(ext2_inode_info* ip, int64_t nblocks) {
  int64_t sectors = nblocks * (ip->i_mnt->m_block_size / 512);
  ip->i_di.base.i_blocks = static_cast<uint32_t>(static_cast<int64_t>(ip->i_di.base.i_blocks) + sectors);
  ip->i_dirty = ip->i_data_dirty = true;
}

void ext2_note_meta_dirty(ext2_inode_info* ip, uint32_t blk) {
  auto& v = ip->i_meta_dirty;
  for (size_t i = v.size(), n = 0; i > 0 && n < 8; i--, n++)
    if (v[i - 1] == blk) return;
  v.push_back(blk);
  // Keep it bounded: sort out duplicates once it has doubled since the last time (at least 4096 entries),
  // so that an inode with many distinct noted blocks (rewritten for long without an fsync) pays an
  // amortised O(log n) a note, not a sort of the whole list each time.
  if (v.size() > ip->i_meta_dirty_dedupe) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    ip->i_meta_dirty_dedupe = std::max(kMetaDirtyDedupe, 2 * v.size());
  }
}

bool ext2_has_blockmap(const ext2_inode_info* ip) {
  mode_t mode = ext2_i_mode(ip);
  if (S_ISREG(mode) || S_ISDIR(mode)) return true;
  if (!S_ISLNK(mode)) return false;
  uint32_t ea = ip->i_di.base.i_file_acl ? ip->i_mnt->m_block_size / 512 : 0;
  return ip->i_di.base.i_blocks != ea;  // a fast symlink keeps its target in i_block
}

void ext2_encode_dev(ext2_inode* di, dev_t rdev) {
  uint32_t ma = major(rdev), mi = minor(rdev);
  if (ma < 256 && mi < 256) {
    di->i_block[0] = (ma << 8) | mi;
    di->i_block[1] = 0;
  } else {
    di->i_block[0] = 0;
    di->i_block[1] = (mi & 0xff) | (ma << 8) | ((mi & ~0xffu) << 12);
  }
  di->i_block[2] = 0;
}

dev_t ext2_decode_dev(const ext2_inode* di) {
  if (di->i_block[0]) return makedev((di->i_block[0] >> 8) & 0xff, di->i_block[0] & 0xff);
  uint32_t d = di->i_block[1];
  return makedev((d & 0xfff00) >> 8, (d & 0xff) | ((d >> 12) & 0xfff00));
}

// ---- times

struct timespec ext2_now() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts;
}

namespace {

struct time_field {
  uint32_t* sec;
  uint32_t* extra;  // nullptr when the inode has no room for it
};

time_field field_of(ext2_inode_info* ip, int which) {
  ext2_inode_large& d = ip->i_di;
  bool large = ip->i_mnt->m_inode_size > EXT2_GOOD_OLD_INODE_SIZE;
  switch (which) {
    case EXT2_ICHG: return {&d.base.i_ctime, large && d.i_extra_isize >= EXT2_EXTRA_ISIZE_CTIME ? &d.i_ctime_extra : nullptr};
    case EXT2_IUPD: return {&d.base.i_mtime, large && d.i_extra_isize >= EXT2_EXTRA_ISIZE_MTIME ? &d.i_mtime_extra : nullptr};
    default: return {&d.base.i_atime, large && d.i_extra_isize >= EXT2_EXTRA_ISIZE_ATIME ? &d.i_atime_extra : nullptr};
  }
}

}  // namespace

void ext2_set_time(ext2_inode_info* ip, int which, const struct timespec& ts) {
  time_field f = field_of(ip, which);
  int64_t sec = ts.tv_sec;
  *f.sec = static_cast<uint32_t>(sec);
  if (f.extra) {
    uint32_t epoch = static_cast<uint32_t>(((sec - static_cast<int32_t>(sec)) >> 32) & EXT2_EXTRA_EPOCH_MASK);
    *f.extra = (static_cast<uint32_t>(ts.tv_nsec) << EXT2_EXTRA_NSEC_SHIFT) | epoch;
  }
  ip->i_dirty = true;
}

struct timespec ext2_get_time(const ext2_inode_info* ip, int which) {
  time_field f = field_of(const_cast<ext2_inode_info*>(ip), which);
  struct timespec ts{};
  int64_t sec = static_cast<int32_t>(*f.sec);
  if (f.extra) {
    sec += static_cast<int64_t>(*f.extra & EXT2_EXTRA_EPOCH_MASK) << 32;
    ts.tv_nsec = *f.extra >> EXT2_EXTRA_NSEC_SHIFT;
    if (ts.tv_nsec > 999999999) ts.tv_nsec = 0;
  }
  ts.tv_sec = sec;
  return ts;
}

void ext2_itimes(ext2_inode_info* ip, int flags) {
  struct timespec now = ext2_now();
  for (int which : {EXT2_ICHG, EXT2_IUPD, EXT2_IACC})
    if (flags & which) ext2_set_time(ip, which, now);
}

void ext2_set_time_lazy(ext2_inode_info* ip, int which, const struct timespec& ts) {
  const bool was_dirty = ip->i_dirty;
  ext2_set_time(ip, which, ts);
  if (was_dirty || !(ip->i_mnt->m_mp->mnt_flag & MNT_LAZYTIME)) return;
  ip->i_dirty = false;
  if (!ip->i_time_dirty) {
    ip->i_time_dirty = true;
    ip->i_time_dirty_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                    std::chrono::steady_clock::now().time_since_epoch())
                                                    .count());
  }
}

void ext2_itimes_lazy(ext2_inode_info* ip, int flags) {
  struct timespec now = ext2_now();
  for (int which : {EXT2_ICHG, EXT2_IUPD, EXT2_IACC})
    if (flags & which) ext2_set_time_lazy(ip, which, now);
}

// ---- xattr block reference

int ext2_xattr_block_release(ext2_inode_info* ip) {
  ext2_mount* m = ip->i_mnt;
  uint32_t blk = ip->i_di.base.i_file_acl;
  if (blk == 0) return 0;
  if (!ext2_data_block_ok(m, blk))
    return ext2_corrupt(m, ip->i_ino, blk, "i_file_acl", "block %u outside the data area", blk);
  BufRef bp;
  TRY(buf_meta_bread(m->m_devvp, blk, &bp));
  auto* h = reinterpret_cast<ext2_xattr_header*>(bp.data());
  if (h->h_magic != EXT2_XATTR_MAGIC || h->h_blocks != 1 || h->h_refcount == 0)
    return ext2_corrupt(m, ip->i_ino, blk, "xattr block header", "magic 0x%x, blocks %u, refcount %u", h->h_magic,
                        h->h_blocks, h->h_refcount);
  bool last = h->h_refcount == 1;
  if (!last) {
    h->h_refcount--;
    buf_bdwrite(std::move(bp));
    ext2_note_meta_dirty(ip, blk);
  } else {
    bp = BufRef();  // released; bfree drops it from the cache after the inode stops pointing at it
  }
  ip->i_di.base.i_file_acl = 0;
  ext2_i_blocks_add(ip, -1);
  if (!last) return 0;
  TRY(ext2_iupdate(ip, true));  // the pointer is gone on disk before the block can be reused
  ext2_bfree_deferred(m, blk, 1);
  return 0;
}

// ---- end of life

namespace {

// Frees an unlinked inode at its last reference: data dropped, blocks freed after the cleared pointers are
// on disk, dtime set, then the bitmap bit once nothing on disk names the inode any more.
int free_unlinked(vnode* vp, ext2_inode_info* ip) {
  ext2_mount* m = ip->i_mnt;
  if (ext2_has_blockmap(ip) && S_ISREG(ext2_i_mode(ip))) {
    buf_invalidate_range(vp, 0, INT64_MAX);
    cluster_setsize(vp, 0);
  }
  int err = 0;
  mode_t mode;
  {
    std::lock_guard g(ip->i_lock);
    if (ext2_has_blockmap(ip)) err = ext2_free_range_locked(ip, 0, UINT64_MAX);
    if (!err) err = ext2_xattr_block_release(ip);
    if (!err) {
      ext2_i_set_size(ip, 0);
      ip->i_di.base.i_dtime = static_cast<uint32_t>(time(nullptr));
      err = ext2_iupdate(ip, true);
    }
    mode = ext2_i_mode(ip);
  }
  if (err) return err;  // the inode stays allocated: a leak e2fsck fixes without loss
  // Every entry that named the inode was removed by a synchronous write (dir.cpp); the bit is cleared
  // after a device flush has made those removals stable (ext2_release_deferred).
  ext2_defer_ifree(m, ip->i_ino, S_ISDIR(mode));
  return 0;
}

}  // namespace

int ext2_vnop_inactive(vnop_inactive_args* ap) {
  vnode* vp = ap->a_vp;
  ext2_inode_info* ip = VTOI(vp);
  if (ip == nullptr) return 0;
  ext2_mount* m = ip->i_mnt;
  try {
    bool unlinked;
    {
      std::lock_guard g(ip->i_lock);
      unlinked = ext2_i_nlink(ip) == 0 && ext2_i_mode(ip) != 0;
    }
    if (m->m_rdonly) return 0;
    if (unlinked) {  // the inode number may serve another file next: its lost writes are not that file's
      std::lock_guard g(m->m_names_lock);
      m->m_lost_writes.erase(ip->i_ino);
    }
    // An unlinked inode ends here (freed, or leaked for e2fsck when freeing fails): its vnode must be
    // reclaimed now, never kept idle in the hash under a number the next file may get (vnode.h).
    if (unlinked) vnode_recycle(vp);
    int err = unlinked ? free_unlinked(vp, ip) : ext2_fsync_vnode(vp, MNT_WAIT, /*flush_device=*/false);
    if (err)
      VLOG_ERR("ext2 %s: inode %u: %s at last reference failed: errno %d", m->m_mp->mnt_from.c_str(), ip->i_ino,
               unlinked ? "freeing" : "writing back", err);
  } catch (const std::bad_alloc&) {
    VLOG_ERR("ext2 %s: inode %u: out of memory at last reference", m->m_mp->mnt_from.c_str(), ip->i_ino);
  }
  return 0;
}

namespace {

// A reclaimed inode's unwritten new name (fsync.cpp): kept for the next iget, or counted as lost.
void keep_trail(ext2_inode_info* ip) {
  ext2_mount* m = ip->i_mnt;
  std::lock_guard g(m->m_names_lock);
  try {
    if (m->m_names_kept.size() < m->m_names_kept_max) {
      m->m_names_kept[ip->i_ino] = ip->i_new_parent;
      return;
    }
  } catch (const std::bad_alloc&) {
  }
  m->m_names_lost++;
}

// Written data of ip that its reclaim discarded because its writes failed: the next vnode reports it.
void keep_lost_writes(ext2_inode_info* ip) {
  ext2_mount* m = ip->i_mnt;
  VLOG_ERR("ext2 %s: inode %u: written data lost (its writes failed); later fsyncs of it return EIO",
           m->m_mp->mnt_from.c_str(), ip->i_ino);
  std::lock_guard g(m->m_names_lock);
  try {
    if (m->m_lost_writes.size() < m->m_names_kept_max) m->m_lost_writes.insert(ip->i_ino);
  } catch (const std::bad_alloc&) {
  }
}

}  // namespace

int ext2_vnop_reclaim(vnop_reclaim_args* ap) {
  vnode* vp = ap->a_vp;
  ext2_inode_info* ip = VTOI(vp);
  if (ip != nullptr) {
    std::lock_guard g(ip->i_lock);
    if ((ip->i_dirty || ip->i_time_dirty) && ext2_i_nlink(ip) != 0 && !ip->i_mnt->m_rdonly)
      (void)ext2_iupdate(ip, false);
    if (ip->i_new_parent != 0 && ext2_i_nlink(ip) != 0) keep_trail(ip);
  }
  if (buf_vnode_reclaim(vp) != 0 && ip != nullptr && ext2_i_nlink(ip) != 0) keep_lost_writes(ip);
  delete ip;
  vp->v_data = nullptr;
  return 0;
}

}  // namespace vnopfs::ext2

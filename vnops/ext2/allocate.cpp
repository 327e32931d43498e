// allocate.cpp: VNOP_ALLOCATE (fallocate) and VNOP_IOCTL (FIOSEEKDATA / FIOSEEKHOLE; the chattr flags are
// flags.cpp's).
//
// ext2 has no unwritten extents, so a preallocated block must hold zeros on disk: each new block is zeroed
// before its pointer is set (EXT2_BMAP_ZERO). Blocks past EOF cannot be kept on a block-mapped ext2 file
// (e2fsck would call the size wrong), so FALLOC_FL_KEEP_SIZE preallocates only up to EOF.
//
// FALLOC_FL_ZERO_RANGE is a punch followed by a preallocation of the same range: with no unwritten extents
// the range is made zeros the only way ext2 can, partial blocks zeroed in place and whole blocks freed and
// allocated again zeroed, so that it reads as zeros and, as Linux promises, later writes into it need no
// allocation. The whole blocks move: the freed ones return to the bitmap only after the next device flush
// (deferred frees, docs/durability.md rule 6), so the new ones are others, and near a full filesystem the
// allocation's ENOSPC path releases the deferred ones and retries. Not atomic: an ENOSPC that remains
// leaves the range zeros (holes) and is returned.
#include <linux/falloc.h>

#include <new>

#include "vnopfs/cluster.h"
#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

// Allocates (zeroed) every hole of logical blocks [first, last). ENOSPC with nothing changed.
int preallocate(ext2_inode_info* ip, uint64_t first, uint64_t last, const vfs_context& ctx) {
  ext2_mount* m = ip->i_mnt;
  const bool reserve = ext2_may_use_reserve(m, ctx);
  std::lock_guard g(ip->i_lock);
  uint64_t need = 0;
  TRY(ext2_bmap_count_missing(ip, first, last, &need));
  ext2_reservation res(m);
  TRY(res.take(need, reserve));
  uint64_t done;
  TRY(ext2_bmap_alloc_range(ip, first, last, EXT2_BMAP_ALLOC | EXT2_BMAP_ZERO, &res, &done, nullptr));
  ext2_itimes(ip, EXT2_ICHG);
  return 0;
}

int zero_if_allocated(vnode* vp, ext2_inode_info* ip, uint64_t off, uint64_t end, uint64_t size) {
  if (end <= off) return 0;
  uint32_t pbn = 0;
  {
    std::lock_guard g(ip->i_lock);
    TRY(ext2_bmap_locked(ip, off / ip->i_mnt->m_block_size, 0, &pbn, 1, nullptr, nullptr));
  }
  if (pbn == 0) return 0;  // a hole already reads as zeros
  return ext2_zero_range_cached(vp, static_cast<off_t>(off), end - off, static_cast<off_t>(size),
                                static_cast<off_t>(size));
}

// Punches [off, end) inside EOF: partial blocks zeroed, whole ones freed (back to holes).
int punch_hole(vnode* vp, ext2_inode_info* ip, uint64_t off, uint64_t end) {
  const uint64_t bs = ip->i_mnt->m_block_size;
  uint64_t size;
  {
    std::lock_guard g(ip->i_lock);
    size = ext2_i_size(ip);
  }
  end = std::min(end, size);
  if (off >= end) return 0;
  const uint64_t first_full = (off + bs - 1) / bs, last_full = end / bs;  // whole blocks [first_full, last_full)
  if (first_full > last_full) {
    TRY(zero_if_allocated(vp, ip, off, end, size));  // inside one block
  } else {
    TRY(zero_if_allocated(vp, ip, off, first_full * bs, size));
    TRY(zero_if_allocated(vp, ip, last_full * bs, end, size));
  }
  if (first_full < last_full) {
    buf_invalidate_range(vp, static_cast<daddr64_t>(first_full), static_cast<daddr64_t>(last_full));
    std::lock_guard g(ip->i_lock);
    TRY(ext2_free_range_locked(ip, first_full, last_full));
  }
  std::lock_guard g(ip->i_lock);
  ext2_itimes(ip, EXT2_ICHG | EXT2_IUPD);
  return 0;
}

int allocate_impl(vnode* vp, int mode, off_t offset, off_t length, const vfs_context& ctx) {
  ext2_inode_info* ip = VTOI(vp);
  ext2_mount* m = ip->i_mnt;
  if (offset < 0 || length <= 0) return EINVAL;
  if (vp->v_type == vtype::VDIR) return EISDIR;
  if (vp->v_type != vtype::VREG) return ENODEV;
  if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) return EOPNOTSUPP;
  if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE)) return EOPNOTSUPP;
  if ((mode & FALLOC_FL_PUNCH_HOLE) && (mode & FALLOC_FL_ZERO_RANGE)) return EOPNOTSUPP;
  TRY(ext2_check_writable(m));
  const uint64_t off = static_cast<uint64_t>(offset);
  const uint64_t end = off + static_cast<uint64_t>(length);
  if (end > m->m_max_file_size || end < off) return EFBIG;
  {
    std::lock_guard g(ip->i_lock);
    if (ip->i_di.base.i_flags & (EXT2_IMMUTABLE_FL | EXT2_APPEND_FL)) return EPERM;
  }
  // Privileges go before anything changes, whatever the range turns out to need (file_modified).
  TRY(ext2_xattr_kill_caps(vp, ctx));
  {
    std::lock_guard g(ip->i_lock);
    (void)ext2_kill_suid(ip, ctx);
  }
  if (mode & FALLOC_FL_PUNCH_HOLE) return punch_hole(vp, ip, off, end);
  const uint64_t bs = m->m_block_size;
  uint64_t size;
  {
    std::lock_guard g(ip->i_lock);
    size = ext2_i_size(ip);
  }
  if (mode & FALLOC_FL_ZERO_RANGE) TRY(punch_hole(vp, ip, off, end));  // the part inside EOF
  const uint64_t alloc_end = (mode & FALLOC_FL_KEEP_SIZE) ? std::min(end, size) : end;
  if (alloc_end > off) TRY(preallocate(ip, off / bs, (alloc_end + bs - 1) / bs, ctx));
  if (!(mode & FALLOC_FL_KEEP_SIZE) && end > size) TRY(ext2_truncate(vp, end, ctx));
  return 0;
}

int seek_impl(ext2_inode_info* ip, bool data, off_t* offp) {
  if (*offp < 0) return ENXIO;
  const uint64_t bs = ip->i_mnt->m_block_size;
  std::lock_guard g(ip->i_lock);
  const uint64_t size = ext2_i_size(ip), start = static_cast<uint64_t>(*offp);
  if (start >= size) return ENXIO;
  const uint64_t max_lbn = ext2_max_lblocks(ip->i_mnt);
  for (uint64_t lbn = start / bs; lbn * bs < size;) {
    uint32_t pbn = 0;
    uint64_t span = 1;
    if (lbn < max_lbn && ext2_has_blockmap(ip)) TRY(ext2_bmap_extent_locked(ip, lbn, &pbn, &span));
    else span = UINT64_MAX / 2;
    if ((pbn != 0) == data) {
      *offp = static_cast<off_t>(std::max(start, lbn * bs));
      return 0;
    }
    lbn += span;
  }
  if (data) return ENXIO;
  *offp = static_cast<off_t>(size);  // the implicit hole at EOF
  return 0;
}

}  // namespace

int ext2_vnop_allocate(vnop_allocate_args* ap) {
  try {
    return allocate_impl(ap->a_vp, ap->a_mode, ap->a_offset, ap->a_length,
                         ap->a_context ? *ap->a_context : vfs_context::kernel());
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
}

int ext2_vnop_ioctl(vnop_ioctl_args* ap) {
  if (ap->a_data == nullptr) return EINVAL;
  if (ap->a_command == FIOGETFLAGS) return ext2_getflags(VTOI(ap->a_vp), static_cast<uint32_t*>(ap->a_data));
  if (ap->a_command == FIOSETFLAGS)
    return ext2_setflags(VTOI(ap->a_vp), *static_cast<uint32_t*>(ap->a_data),
                         ap->a_context ? *ap->a_context : vfs_context::kernel());
  if (ap->a_command != FIOSEEKDATA && ap->a_command != FIOSEEKHOLE) return ENOTTY;
  if (ap->a_vp->v_type != vtype::VREG) return EINVAL;
  return seek_impl(VTOI(ap->a_vp), ap->a_command == FIOSEEKDATA, static_cast<off_t*>(ap->a_data));
}

}  // namespace vnopfs::ext2

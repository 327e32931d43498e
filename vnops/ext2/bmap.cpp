// bmap.cpp: the block map (12 direct, single, double, triple indirect), VNOP_BLOCKMAP and VNOP_STRATEGY.
//
// A logical block's path has depth+1 pointers: one in i_block, then one per indirect level; the last
// points at the data block. Every pointer read from disk is checked against the data area before use.
// Allocation fills a path top-down: each new indirect block is zeroed and written (synchronously) before
// the pointer to it is set, so no crash can leave a pointer to a block of old contents in the map.
#include <cstring>

#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

struct path {
  int depth = 0;            // 0 direct, 1 single, 2 double, 3 triple indirect
  uint32_t off[4] = {};     // index at each level (off[0] into i_block)
  uint64_t base = 0;        // first logical block of this depth's region
};

// Where lbn lives in the map. EFBIG past the triple-indirect range.
int block_path(const ext2_mount* m, uint64_t lbn, path* p) {
  const uint64_t apb = m->m_addr_per_block;
  if (lbn < EXT2_NDIR_BLOCKS) {
    *p = {0, {static_cast<uint32_t>(lbn)}, 0};
    return 0;
  }
  uint64_t r = lbn - EXT2_NDIR_BLOCKS, base = EXT2_NDIR_BLOCKS;
  if (r < apb) {
    *p = {1, {EXT2_IND_BLOCK, static_cast<uint32_t>(r)}, base};
    return 0;
  }
  r -= apb;
  base += apb;
  if (r < apb * apb) {
    *p = {2, {EXT2_DIND_BLOCK, static_cast<uint32_t>(r / apb), static_cast<uint32_t>(r % apb)}, base};
    return 0;
  }
  r -= apb * apb;
  base += apb * apb;
  if (r < apb * apb * apb) {
    *p = {3,
          {EXT2_TIND_BLOCK, static_cast<uint32_t>(r / (apb * apb)), static_cast<uint32_t>((r / apb) % apb),
           static_cast<uint32_t>(r % apb)},
          base};
    return 0;
  }
  return EFBIG;
}

// Logical blocks one pointer at `level` covers.
uint64_t coverage(const ext2_mount* m, const path& p, int level) {
  uint64_t c = 1;
  for (int k = level; k < p.depth; k++) c *= m->m_addr_per_block;
  return c;
}

const char* level_name(int k) {
  static const char* names[] = {"i_block", "indirect entry", "double-indirect entry", "triple-indirect entry"};
  return names[k];
}

int check_ptr(ext2_inode_info* ip, uint32_t ptr, uint32_t where_blk, int level) {
  if (ptr == 0 || ext2_data_block_ok(ip->i_mnt, ptr)) return 0;
  return ext2_corrupt(ip->i_mnt, ip->i_ino, where_blk, level_name(level), "block %u outside the data area", ptr);
}

uint32_t* entries(const BufRef& bp) { return reinterpret_cast<uint32_t*>(bp.data()); }

// Counts pointers after `first` (at index idx of arr, n entries) that continue a contiguous run from
// pbn, up to maxrun - 1 more.
uint32_t run_length(const ext2_mount* m, const uint32_t* arr, uint32_t idx, uint32_t n, uint32_t pbn, uint32_t maxrun) {
  uint32_t run = 1;
  while (run < maxrun && idx + run < n && arr[idx + run] == pbn + run && ext2_data_block_ok(m, pbn + run)) run++;
  return run;
}

// Looks lbn up without allocating. *pbn = 0 for a hole, *level = the level of the first zero pointer
// (depth+1 when mapped), *span = blocks from lbn sharing the answer (mapped run up to maxrun, or the rest of
// the hole under the zero pointer).
int lookup(ext2_inode_info* ip, uint64_t lbn, uint32_t maxrun, uint32_t* pbn, int* level, uint64_t* span) {
  ext2_mount* m = ip->i_mnt;
  path p;
  TRY(block_path(m, lbn, &p));
  uint32_t ptr = ip->i_di.base.i_block[p.off[0]];
  TRY(check_ptr(ip, ptr, 0, 0));
  const uint64_t rel = lbn - p.base;
  for (int k = 0;; k++) {
    if (ptr == 0) {
      uint64_t c = coverage(m, p, k);
      *pbn = 0;
      *level = k;
      *span = c - (k == 0 && p.depth == 0 ? 0 : rel % c);
      return 0;
    }
    if (k == p.depth) {
      *pbn = ptr;
      *level = p.depth + 1;
      *span = 1;
      if (p.depth == 0) {
        *span = run_length(m, ip->i_di.base.i_block, p.off[0], EXT2_NDIR_BLOCKS, ptr, maxrun);
      }
      return 0;
    }
    BufRef bp;
    uint32_t blk = ptr;
    TRY(buf_meta_bread(m->m_devvp, blk, &bp));
    ptr = entries(bp)[p.off[k + 1]];
    TRY(check_ptr(ip, ptr, blk, k + 1));
    if (k + 1 == p.depth && ptr != 0) {
      *pbn = ptr;
      *level = p.depth + 1;
      *span = run_length(m, entries(bp), p.off[k + 1], m->m_addr_per_block, ptr, maxrun);
      return 0;
    }
  }
}

// Allocates one block from the reservation, near goal, and accounts it to ip.
int alloc_one(ext2_inode_info* ip, ext2_reservation* res, uint32_t goal, uint32_t* blkp) {
  ext2_mount* m = ip->i_mnt;
  if (res->count == 0) return ENOSPC;  // the caller's count was wrong: never allocate unreserved
  TRY(ext2_balloc_reserved(m, goal, blkp));
  res->count--;
  ext2_i_blocks_add(ip, 1);
  ext2_note_meta_dirty(ip, m->m_groups[ext2_group_of_block(m, *blkp)].g_desc.bg_block_bitmap);
  ip->i_next_alloc_goal = *blkp + 1;
  return 0;
}

// Writes zeros over a new block before anything points to it. A regular file's data block is read
// through the file's own buffers afterwards, so its device-vnode copy is dropped at once.
int zero_block(ext2_inode_info* ip, uint32_t blk, bool data) {
  ext2_mount* m = ip->i_mnt;
  BufRef bp = buf_getblk(m->m_devvp, blk, BLK_META);
  if (!bp) return ENOMEM;
  buf_clear(bp.get());
  TRY(buf_bwrite(std::move(bp)));
  if (data && S_ISREG(ext2_i_mode(ip))) buf_invalblkno(m->m_devvp, blk);
  return 0;
}

uint32_t default_goal(ext2_inode_info* ip) {
  if (ip->i_next_alloc_goal) return ip->i_next_alloc_goal;
  ext2_mount* m = ip->i_mnt;
  return ext2_group_first_block(m, ext2_group_of_ino(m, ip->i_ino));
}

// The allocating walk: every zero pointer on lbn's path gets a block (indirect ones zeroed first).
int alloc_path(ext2_inode_info* ip, const path& p, int flags, ext2_reservation* res, uint32_t* pbn, bool* isnew) {
  ext2_mount* m = ip->i_mnt;
  uint32_t* slot = &ip->i_di.base.i_block[p.off[0]];
  uint32_t ptr = *slot;
  TRY(check_ptr(ip, ptr, 0, 0));
  if (ptr == 0) {
    uint32_t goal = p.off[0] > 0 && p.depth == 0 && slot[-1] ? slot[-1] + 1 : default_goal(ip);
    TRY(alloc_one(ip, res, goal, &ptr));
    if (p.depth > 0 || (flags & EXT2_BMAP_ZERO)) TRY(zero_block(ip, ptr, p.depth == 0));
    *slot = ptr;
    ip->i_dirty = ip->i_data_dirty = true;
    if (p.depth == 0) *isnew = true;
  }
  for (int k = 1; k <= p.depth; k++) {
    BufRef bp;
    uint32_t parent = ptr;
    TRY(buf_meta_bread(m->m_devvp, parent, &bp));
    uint32_t* arr = entries(bp);
    ptr = arr[p.off[k]];
    TRY(check_ptr(ip, ptr, parent, k));
    if (ptr != 0) continue;
    uint32_t goal = p.off[k] > 0 && arr[p.off[k] - 1] ? arr[p.off[k] - 1] + 1 : default_goal(ip);
    TRY(alloc_one(ip, res, goal, &ptr));
    if (k < p.depth || (flags & EXT2_BMAP_ZERO)) TRY(zero_block(ip, ptr, k == p.depth));
    arr[p.off[k]] = ptr;
    buf_bdwrite(std::move(bp));
    ext2_note_meta_dirty(ip, parent);
    if (k == p.depth) *isnew = true;
  }
  *pbn = ptr;
  return 0;
}

// ---- the extent cache (i_extents)

constexpr size_t kMaxExtents = 4096;

// A cached mapping for lbn: *pbn and the blocks (<= maxrun) mapped contiguously from it; false on a miss.
bool extent_lookup(ext2_inode_info* ip, uint64_t lbn, uint32_t maxrun, uint32_t* pbn, uint32_t* run) {
  std::lock_guard g(ip->i_extent_lock);
  auto it = ip->i_extents.upper_bound(lbn);
  if (it == ip->i_extents.begin()) return false;
  --it;
  const auto [start, ext] = *it;
  if (lbn >= start + ext.second) return false;
  *pbn = ext.first + static_cast<uint32_t>(lbn - start);
  *run = static_cast<uint32_t>(std::min<uint64_t>(start + ext.second - lbn, maxrun));
  return true;
}

// Remembers that [lbn, lbn + n) maps to [pbn, pbn + n), merging with the extent before it.
void extent_note(ext2_inode_info* ip, uint64_t lbn, uint32_t pbn, uint32_t n) {
  std::lock_guard g(ip->i_extent_lock);
  auto& ex = ip->i_extents;
  auto it = ex.upper_bound(lbn);
  if (it != ex.begin()) {
    auto prev = std::prev(it);
    auto& [plbn, pe] = *prev;
    if (lbn < plbn + pe.second) return;  // already known (mappings never change while cached)
    if (plbn + pe.second == lbn && pe.first + pe.second == pbn) {
      pe.second += n;
      return;
    }
  }
  if (ex.size() >= kMaxExtents) ex.clear();  // bounded: start over rather than grow
  ex.emplace(lbn, std::make_pair(pbn, n));
}

}  // namespace

void ext2_extent_forget(ext2_inode_info* ip, uint64_t first, uint64_t last) {
  std::lock_guard g(ip->i_extent_lock);
  auto& ex = ip->i_extents;
  auto it = ex.upper_bound(first);
  if (it != ex.begin()) --it;
  while (it != ex.end() && it->first < last) {
    const uint64_t s0 = it->first, e0 = s0 + it->second.second;
    const uint32_t p0 = it->second.first;
    if (e0 <= first) {
      ++it;
      continue;
    }
    it = ex.erase(it);
    if (s0 < first) ex.emplace(s0, std::make_pair(p0, static_cast<uint32_t>(first - s0)));
    if (e0 > last) {
      ex.emplace(last, std::make_pair(p0 + static_cast<uint32_t>(last - s0), static_cast<uint32_t>(e0 - last)));
      break;
    }
  }
}

uint64_t ext2_max_lblocks(const ext2_mount* m) {
  const uint64_t apb = m->m_addr_per_block;
  return EXT2_NDIR_BLOCKS + apb + apb * apb + apb * apb * apb;
}

int ext2_bmap_extent_locked(ext2_inode_info* ip, uint64_t lbn, uint32_t* pbn, uint64_t* span) {
  int level;
  return lookup(ip, lbn, UINT32_MAX, pbn, &level, span);
}

int ext2_bmap_count_missing(ext2_inode_info* ip, uint64_t first, uint64_t last, uint64_t* count) {
  ext2_mount* m = ip->i_mnt;
  *count = 0;
  for (uint64_t lbn = first; lbn < last;) {
    uint32_t pbn;
    int level;
    uint64_t span;
    TRY(lookup(ip, lbn, UINT32_MAX, &pbn, &level, &span));
    uint64_t end = std::min(last, lbn + span);
    if (pbn == 0) {
      path p;
      TRY(block_path(m, lbn, &p));
      *count += end - lbn;  // data blocks
      for (int j = level; j < p.depth; j++) {  // indirect blocks under the zero pointer, each once
        uint64_t c = coverage(m, p, j + 1);
        *count += (end - 1 - p.base) / c - (lbn - p.base) / c + 1;
      }
    }
    lbn = end;
  }
  return 0;
}

int ext2_bmap_locked(ext2_inode_info* ip, uint64_t lbn, int flags, uint32_t* pbn, uint32_t maxrun, uint32_t* run,
                     bool* isnew, ext2_reservation* res) {
  ext2_mount* m = ip->i_mnt;
  bool fresh = false;
  if (isnew) *isnew = false;
  if (run) *run = 1;
  int level;
  uint64_t span;
  TRY(lookup(ip, lbn, std::max<uint32_t>(maxrun, 1), pbn, &level, &span));
  if (*pbn != 0) {
    uint32_t r = static_cast<uint32_t>(std::min<uint64_t>(span, std::max<uint32_t>(maxrun, 1)));
    if (run) *run = r;
    extent_note(ip, lbn, *pbn, r);
    return 0;
  }
  if (!(flags & EXT2_BMAP_ALLOC)) return 0;
  TRY(ext2_check_writable(m));
  path p;
  TRY(block_path(m, lbn, &p));
  ext2_reservation own(m);
  if (res == nullptr) {
    TRY(own.take(static_cast<uint64_t>(p.depth + 1 - level), flags & EXT2_BMAP_RESERVE));
    res = &own;
  }
  TRY(alloc_path(ip, p, flags, res, pbn, &fresh));
  if (isnew) *isnew = fresh;
  extent_note(ip, lbn, *pbn, 1);
  return 0;
}

int ext2_bmap(ext2_inode_info* ip, uint64_t lbn, int flags, uint32_t* pbn, bool* isnew) {
  std::lock_guard g(ip->i_lock);
  return ext2_bmap_locked(ip, lbn, flags, pbn, 1, nullptr, isnew);
}

// ---- VNOP_BLOCKMAP and VNOP_STRATEGY

int ext2_vnop_blockmap(vnop_blockmap_args* ap) {
  ext2_inode_info* ip = VTOI(ap->a_vp);
  ext2_mount* m = ip->i_mnt;
  if (ap->a_foffset < 0) return EINVAL;
  const uint64_t bs = m->m_block_size;
  uint64_t lbn = static_cast<uint64_t>(ap->a_foffset) / bs;
  uint64_t within = static_cast<uint64_t>(ap->a_foffset) % bs;
  uint32_t maxrun = static_cast<uint32_t>(std::min<uint64_t>((within + ap->a_size + bs - 1) / bs, UINT32_MAX));
  uint32_t pbn = 0, run = 1;
  if (extent_lookup(ip, lbn, std::max(maxrun, 1u), &pbn, &run)) {  // no i_lock: see ext2_inode_info
    if (ap->a_bpn) *ap->a_bpn = static_cast<daddr64_t>(pbn);
    if (ap->a_run) *ap->a_run = std::min<size_t>(static_cast<size_t>(run) * bs - within, ap->a_size);
    return 0;
  }
  try {
    std::lock_guard g(ip->i_lock);
    if (ap->a_flags & VNODE_WRITE) {
      // Blocks are allocated by VNOP_WRITE before the data is copied; a hole met here (a buffer dirtied
      // some other way) is allocated now, from the root reserve: the data was already accepted.
      TRY(ext2_bmap_locked(ip, lbn, EXT2_BMAP_ALLOC | EXT2_BMAP_RESERVE, &pbn, std::max(maxrun, 1u), &run, nullptr));
    } else {
      uint64_t span;
      TRY(ext2_bmap_extent_locked(ip, lbn, &pbn, &span));
      run = static_cast<uint32_t>(std::min<uint64_t>(span, std::max(maxrun, 1u)));
      if (pbn) extent_note(ip, lbn, pbn, run);
    }
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
  if (ap->a_bpn) *ap->a_bpn = pbn ? static_cast<daddr64_t>(pbn) : -1;
  if (ap->a_run) *ap->a_run = std::min<size_t>(static_cast<size_t>(run) * bs - within, ap->a_size);
  return 0;
}

int ext2_vnop_strategy(vnop_strategy_args* ap) {
  buf* bp = ap->a_bp;
  vnode* vp = buf_vnode(bp);
  ext2_mount* m = ext2_mount_of(vp->v_mount);
  if (buf_blkno(bp) == BUF_UNMAPPED) {
    const bool reading = buf_flags(bp) & B_READ;
    daddr64_t bpn = -1;
    size_t run = 0;
    vnop_blockmap_args a{&vnop_blockmap_desc, vp, static_cast<off_t>(buf_lblkno(bp)) * m->m_block_size,
                         buf_count(bp), &bpn, &run, reading ? VNODE_READ : VNODE_WRITE, nullptr};
    int err = ext2_vnop_blockmap(&a);
    if (!err && bpn == -1 && reading && run >= buf_count(bp)) {
      buf_clear(bp);  // a hole reads as zeros, without I/O
      buf_biodone(bp);
      return 0;
    }
    if (!err && (bpn == -1 || run < buf_count(bp))) {
      VLOG_ERR("ext2 %s: inode %llu: strategy of %u bytes at block %lld maps only %zu (contract: the cluster layer "
               "maps runs before a multi-block I/O)", vp->v_mount->mnt_from.c_str(),
               static_cast<unsigned long long>(vp->v_id), buf_count(bp), static_cast<long long>(buf_lblkno(bp)), run);
      err = EIO;
    }
    if (err) {
      buf_seterror(bp, err);
      buf_biodone(bp);
      return 0;
    }
    buf_setblkno(bp, bpn);
  }
  return buf_strategy(m->m_devvp, bp);
}

}  // namespace vnopfs::ext2

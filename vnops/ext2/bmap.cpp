// bmap.cpp: the block map (12 direct, single, double, triple indirect), VNOP_BLOCKMAP and VNOP_STRATEGY.
//
// A logical block's path has depth+1 pointers: one in i_block, then one per indirect level; the last
// points at the data block. Every pointer read from disk is checked against the data area before use.
// Allocation fills a path top-down: each new indirect block is zeroed and written (synchronously) before
// the pointer to it is set, so no crash can leave a pointer to a block of old contents in the map.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "vnopfs/device.h"
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

// Zero pointers from index idx of arr (n entries): a hole of that many blocks at the data level.
uint32_t zero_run(const uint32_t* arr, uint32_t idx, uint32_t n) {
  uint32_t z = 0;
  while (idx + z < n && arr[idx + z] == 0) z++;
  return z;
}

// Looks lbn up without allocating. *pbn = 0 for a hole, *level = the level of the first zero pointer
// (depth+1 when mapped), *span = blocks from lbn sharing the answer: the mapped run (up to maxrun, inside
// one block of pointers), or the hole: every block under the zero pointer from lbn on, or at the data
// level the zero pointers that follow in the same block of pointers.
int lookup(ext2_inode_info* ip, uint64_t lbn, uint32_t maxrun, uint32_t* pbn, int* level, uint64_t* span) {
  ext2_mount* m = ip->i_mnt;
  path p;
  TRY(block_path(m, lbn, &p));
  const uint32_t* ib = ip->i_di.base.i_block;
  uint32_t ptr = ib[p.off[0]];
  TRY(check_ptr(ip, ptr, 0, 0));
  if (p.depth == 0) {
    *pbn = ptr;
    *level = ptr ? 1 : 0;
    *span = ptr ? run_length(m, ib, p.off[0], EXT2_NDIR_BLOCKS, ptr, maxrun) : zero_run(ib, p.off[0], EXT2_NDIR_BLOCKS);
    return 0;
  }
  const uint64_t rel = lbn - p.base;
  for (int k = 0;; k++) {
    if (ptr == 0) {  // an indirect block is missing: everything under it is a hole
      uint64_t c = coverage(m, p, k);
      *pbn = 0;
      *level = k;
      *span = c - rel % c;
      return 0;
    }
    BufRef bp;
    uint32_t blk = ptr;
    TRY(buf_meta_bread(m->m_devvp, blk, &bp));
    const uint32_t* arr = entries(bp);
    ptr = arr[p.off[k + 1]];
    TRY(check_ptr(ip, ptr, blk, k + 1));
    if (k + 1 == p.depth) {
      *pbn = ptr;
      *level = ptr ? p.depth + 1 : p.depth;
      *span = ptr ? run_length(m, arr, p.off[k + 1], m->m_addr_per_block, ptr, maxrun)
                  : zero_run(arr, p.off[k + 1], m->m_addr_per_block);
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

// Writes zeros over new blocks [blk, blk + n) before anything points to them, and waits. One block goes
// through its metadata buffer; a run goes straight to the device in large writes (any cached copy of its
// blocks dropped first). A regular file's data block is read through the file's own buffers afterwards,
// so its device-vnode copy is dropped at once.
int zero_blocks(ext2_inode_info* ip, uint32_t blk, uint32_t n, bool data) {
  ext2_mount* m = ip->i_mnt;
  if (n == 1) {
    BufRef bp = buf_getblk(m->m_devvp, blk, BLK_META);
    if (!bp) return ENOMEM;
    buf_clear(bp.get());
    TRY(buf_bwrite(std::move(bp)));
    if (data && S_ISREG(ext2_i_mode(ip))) buf_invalblkno(m->m_devvp, blk);
    return 0;
  }
  constexpr size_t kZeroBytes = 1u << 20;
  static void* const zeros = [] {
    void* p = std::aligned_alloc(4096, kZeroBytes);
    if (p) std::memset(p, 0, kZeroBytes);
    return p;
  }();
  if (!zeros) return ENOMEM;
  for (uint32_t i = 0; i < n; i++) buf_invalblkno(m->m_devvp, blk + i);
  const uint64_t bs = m->m_block_size;
  for (uint64_t off = uint64_t{blk} * bs, end = (uint64_t{blk} + n) * bs; off < end;) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(end - off, kZeroBytes / bs * bs));
    TRY(dev::dev_sync_io(*m->m_mp->mnt_device, dev::io_op::write, off, zeros, len, dev::IO_ATTR_META));
    off += len;
  }
  return 0;
}

int zero_block(ext2_inode_info* ip, uint32_t blk, bool data) { return zero_blocks(ip, blk, 1, data); }

uint32_t default_goal(ext2_inode_info* ip) {
  if (ip->i_next_alloc_goal) return ip->i_next_alloc_goal;
  ext2_mount* m = ip->i_mnt;
  return ext2_group_first_block(m, ext2_group_of_ino(m, ip->i_ino));
}

// ---- the extent cache (i_extents): lbn -> {pbn, length}, pbn 0 for a hole. Changed only under i_lock
// (so it always agrees with the map an i_lock holder sees) and i_extent_lock; read under i_extent_lock
// alone.

constexpr size_t kMaxExtents = 4096;
using extent_map = std::map<uint64_t, std::pair<uint32_t, uint32_t>>;

// Drops [first, last) from the cache, keeping the parts of extents outside it. [i_extent_lock]
void forget_locked(extent_map& ex, uint64_t first, uint64_t last) {
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
      const uint32_t p1 = p0 ? p0 + static_cast<uint32_t>(last - s0) : 0;
      ex.emplace(last, std::make_pair(p1, static_cast<uint32_t>(e0 - last)));
      break;
    }
  }
}

// b continues a (an extent of alen blocks at pbn a): both holes, or physically contiguous.
bool continues(uint32_t a, uint64_t alen, uint32_t b) { return a == 0 ? b == 0 : b != 0 && a + alen == b; }

// A cached answer for lbn: *pbn (0 for a hole) and the blocks (<= maxrun) it holds for; false on a miss.
bool extent_lookup(ext2_inode_info* ip, uint64_t lbn, uint32_t maxrun, uint32_t* pbn, uint32_t* run) {
  std::lock_guard g(ip->i_extent_lock);
  auto it = ip->i_extents.upper_bound(lbn);
  if (it == ip->i_extents.begin()) return false;
  --it;
  const auto [start, ext] = *it;
  if (lbn >= start + ext.second) return false;
  *pbn = ext.first ? ext.first + static_cast<uint32_t>(lbn - start) : 0;
  *run = static_cast<uint32_t>(std::min<uint64_t>(start + ext.second - lbn, maxrun));
  return true;
}

// Records that [lbn, lbn + n) maps to [pbn, pbn + n) (pbn 0: is a hole), replacing what was cached there
// and merging with the neighbours. [i_lock]
void extent_note(ext2_inode_info* ip, uint64_t lbn, uint32_t pbn, uint64_t n) {
  n = std::min<uint64_t>(n, UINT32_MAX);
  if (n == 0) return;
  std::lock_guard g(ip->i_extent_lock);
  auto& ex = ip->i_extents;
  forget_locked(ex, lbn, lbn + n);
  if (ex.size() >= kMaxExtents) ex.clear();  // bounded: start over rather than grow
  uint64_t start = lbn, len = n;
  uint32_t first = pbn;
  auto next = ex.lower_bound(lbn);
  if (next != ex.begin()) {
    auto prev = std::prev(next);
    const auto [plbn, pe] = *prev;
    if (plbn + pe.second == lbn && continues(pe.first, pe.second, pbn) && pe.second + len <= UINT32_MAX) {
      start = plbn;
      first = pe.first;
      len += pe.second;
      ex.erase(prev);
    }
  }
  if (next != ex.end() && next->first == lbn + n && continues(pbn, n, next->second.first) &&
      len + next->second.second <= UINT32_MAX) {
    len += next->second.second;
    ex.erase(next);
  }
  ex.emplace(start, std::make_pair(first, static_cast<uint32_t>(len)));
}

// The first block at or after lbn (and before last) that the cache does not know to be mapped.
uint64_t extent_mapped_until(ext2_inode_info* ip, uint64_t lbn, uint64_t last) {
  std::lock_guard g(ip->i_extent_lock);
  const auto& ex = ip->i_extents;
  while (lbn < last) {
    auto it = ex.upper_bound(lbn);
    if (it == ex.begin()) break;
    --it;
    const uint64_t end = it->first + it->second.second;
    if (lbn >= end || it->second.first == 0) break;
    lbn = end;
  }
  return std::min(lbn, last);
}

// ---- allocation

// Makes sure every indirect block on p's path exists: each new one is zeroed and written before the
// pointer to it is set. *leaf = the buffer of the last one (none for a direct block), *leafblk its number.
int walk_to_leaf(ext2_inode_info* ip, const path& p, ext2_reservation* res, BufRef* leaf, uint32_t* leafblk) {
  ext2_mount* m = ip->i_mnt;
  *leafblk = 0;
  if (p.depth == 0) return 0;
  uint32_t* slot = &ip->i_di.base.i_block[p.off[0]];
  uint32_t ptr = *slot;
  TRY(check_ptr(ip, ptr, 0, 0));
  if (ptr == 0) {
    TRY(alloc_one(ip, res, default_goal(ip), &ptr));
    TRY(zero_block(ip, ptr, false));
    *slot = ptr;
    ip->i_dirty = ip->i_data_dirty = true;
  }
  for (int k = 1; k < p.depth; k++) {
    BufRef bp;
    uint32_t parent = ptr;
    TRY(buf_meta_bread(m->m_devvp, parent, &bp));
    uint32_t* arr = entries(bp);
    ptr = arr[p.off[k]];
    TRY(check_ptr(ip, ptr, parent, k));
    if (ptr != 0) continue;
    uint32_t goal = p.off[k] > 0 && arr[p.off[k] - 1] ? arr[p.off[k] - 1] + 1 : default_goal(ip);
    TRY(alloc_one(ip, res, goal, &ptr));
    TRY(zero_block(ip, ptr, false));
    arr[p.off[k]] = ptr;
    buf_bdwrite(std::move(bp));
    ext2_note_meta_dirty(ip, parent);
  }
  TRY(buf_meta_bread(m->m_devvp, ptr, leaf));
  *leafblk = ptr;
  return 0;
}

// Allocates the holes among logical blocks [lbn, end) that share lbn's block of pointers (i_block's direct
// slots or one indirect block): the missing indirect blocks on the way, then the data blocks in runs as
// long as the bitmaps give them, the block of pointers written once. *done = the first block not handled
// (every hole before it is allocated, also on error); *pbn0 = lbn's block afterwards.
int fill_leaf(ext2_inode_info* ip, uint64_t lbn, uint64_t end, int flags, ext2_reservation* res, uint64_t* done,
              uint32_t* pbn0, std::vector<ext2_range>* fresh) {
  ext2_mount* m = ip->i_mnt;
  *done = lbn;
  path p;
  TRY(block_path(m, lbn, &p));
  BufRef leaf;
  uint32_t leafblk;
  TRY(walk_to_leaf(ip, p, res, &leaf, &leafblk));
  uint32_t* arr = p.depth == 0 ? ip->i_di.base.i_block : entries(leaf);
  const uint32_t idx0 = p.off[p.depth];
  const uint32_t nslots = p.depth == 0 ? EXT2_NDIR_BLOCKS : m->m_addr_per_block;
  const uint64_t n = std::min<uint64_t>(end - lbn, nslots - idx0);
  bool changed = false;
  int err = 0;
  uint64_t i = 0;
  while (i < n) {
    const uint32_t idx = idx0 + static_cast<uint32_t>(i);
    if (arr[idx] != 0) {
      if ((err = check_ptr(ip, arr[idx], leafblk, p.depth))) break;
      i++;
      continue;
    }
    const uint32_t z = std::min<uint32_t>(zero_run(arr, idx, idx0 + static_cast<uint32_t>(n)), UINT32_MAX);
    if (res->count == 0) {  // the caller's count was wrong: never allocate unreserved
      err = ENOSPC;
      break;
    }
    const uint32_t goal = idx > 0 && arr[idx - 1] ? arr[idx - 1] + 1 : default_goal(ip);
    uint32_t blk, got;
    if ((err = ext2_balloc_run_reserved(m, goal, static_cast<uint32_t>(std::min<uint64_t>(z, res->count)), &blk, &got)))
      break;
    res->count -= got;
    ext2_i_blocks_add(ip, got);
    ext2_note_meta_dirty(ip, m->m_groups[ext2_group_of_block(m, blk)].g_desc.bg_block_bitmap);
    ip->i_next_alloc_goal = blk + got;
    uint32_t zeroed = got;
    if ((flags & EXT2_BMAP_ZERO) && (err = zero_blocks(ip, blk, got, true))) {
      zeroed = 0;  // nothing points to the run yet: give it straight back
      ext2_i_blocks_add(ip, -static_cast<int64_t>(got));
      (void)ext2_bfree(m, blk, got);
    }
    for (uint32_t j = 0; j < zeroed; j++) arr[idx + j] = blk + j;
    if (zeroed > 0) {
      changed = true;
      extent_note(ip, lbn + i, blk, zeroed);
      if (fresh && !(flags & EXT2_BMAP_ZERO)) fresh->push_back({lbn + i, zeroed});
    }
    i += zeroed;
    if (err) break;
  }
  if (changed) {
    if (p.depth == 0) {
      ip->i_dirty = ip->i_data_dirty = true;
    } else {
      buf_bdwrite(std::move(leaf));
      ext2_note_meta_dirty(ip, leafblk);
    }
  }
  if (pbn0 && i > 0) *pbn0 = arr[idx0];
  *done = lbn + i;
  return err;
}

}  // namespace

void ext2_extent_forget(ext2_inode_info* ip, uint64_t first, uint64_t last) {
  std::lock_guard g(ip->i_extent_lock);
  forget_locked(ip->i_extents, first, last);
}

bool ext2_extent_mapped(ext2_inode_info* ip, uint64_t first, uint64_t last) {
  return extent_mapped_until(ip, first, last) >= last;
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
  for (uint64_t lbn = extent_mapped_until(ip, first, last); lbn < last;) {
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
        uint64_t c = coverage(m, p, j);  // one indirect block per pointer of level j the range meets
        *count += (end - 1 - p.base) / c - (lbn - p.base) / c + 1;
      }
    } else {
      extent_note(ip, lbn, pbn, span);
    }
    lbn = end < last ? extent_mapped_until(ip, end, last) : end;
  }
  return 0;
}

int ext2_bmap_alloc_range(ext2_inode_info* ip, uint64_t first, uint64_t last, int flags, ext2_reservation* res,
                          uint64_t* done, std::vector<ext2_range>* fresh) {
  *done = first;
  TRY(ext2_check_writable(ip->i_mnt));
  for (uint64_t lbn = first; lbn < last;) {
    lbn = *done = extent_mapped_until(ip, lbn, last);
    if (lbn >= last) break;
    uint32_t pbn;
    int level;
    uint64_t span;
    TRY(lookup(ip, lbn, UINT32_MAX, &pbn, &level, &span));
    if (pbn != 0) {
      extent_note(ip, lbn, pbn, span);
      lbn += span;
      continue;
    }
    TRY(fill_leaf(ip, lbn, last, flags, res, done, nullptr, fresh));
    lbn = *done;
  }
  *done = last;
  return 0;
}

int ext2_bmap_locked(ext2_inode_info* ip, uint64_t lbn, int flags, uint32_t* pbn, uint32_t maxrun, uint32_t* run,
                     bool* isnew, ext2_reservation* res) {
  ext2_mount* m = ip->i_mnt;
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
  extent_note(ip, lbn, 0, span);
  if (!(flags & EXT2_BMAP_ALLOC)) return 0;
  TRY(ext2_check_writable(m));
  path p;
  TRY(block_path(m, lbn, &p));
  ext2_reservation own(m);
  if (res == nullptr) {
    TRY(own.take(static_cast<uint64_t>(p.depth + 1 - level), flags & EXT2_BMAP_RESERVE));
    res = &own;
  }
  uint64_t done;
  TRY(fill_leaf(ip, lbn, lbn + 1, flags, res, &done, pbn, nullptr));
  if (done != lbn + 1) return EIO;  // fill_leaf returns an error whenever it stops early
  if (isnew) *isnew = true;
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
  maxrun = std::max(maxrun, 1u);
  const bool writing = ap->a_flags & VNODE_WRITE;
  uint32_t pbn = 0, run = 1;
  // The answer for the whole run from the extent cache, without i_lock: a writer holding i_lock while it
  // waits for clean buffers can never block the push or read that would clean them. A cached hole answers
  // a read; a write must allocate it.
  if (!extent_lookup(ip, lbn, maxrun, &pbn, &run) || (pbn == 0 && writing)) {
    try {
      std::lock_guard g(ip->i_lock);
      if (writing) {
        // Blocks are allocated by VNOP_WRITE before the data is copied; a hole met here (a buffer dirtied
        // some other way) is allocated now, from the root reserve: the data was already accepted.
        TRY(ext2_bmap_locked(ip, lbn, EXT2_BMAP_ALLOC | EXT2_BMAP_RESERVE, &pbn, maxrun, &run, nullptr));
      } else {
        int level;
        uint64_t span;
        TRY(lookup(ip, lbn, UINT32_MAX, &pbn, &level, &span));
        extent_note(ip, lbn, pbn, span);  // the whole run or hole: the next calls for it hit the cache
        run = static_cast<uint32_t>(std::min<uint64_t>(span, maxrun));
      }
    } catch (const std::bad_alloc&) {
      return ENOMEM;
    }
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

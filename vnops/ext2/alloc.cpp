// alloc.cpp: block and inode bitmaps, per-group locks, goal-directed allocation, reservations.
//
// Space is decided before anything changes: a caller reserves n blocks off m_free_blocks (the sum of the
// groups' free counts minus what others have reserved), so ENOSPC comes before the first bitmap bit is
// touched; a reserved block is then always found in some group's bitmap unless that bitmap disagrees with
// its count (corruption: EIO and a log line). Bitmaps are metadata buffers on mnt_devvp, changed only under
// their group's lock.
#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <thread>

#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

bool test_bit(const uint8_t* map, uint32_t i) { return map[i >> 3] & (1u << (i & 7)); }
void set_bit(uint8_t* map, uint32_t i) { map[i >> 3] |= static_cast<uint8_t>(1u << (i & 7)); }
void clear_bit(uint8_t* map, uint32_t i) { map[i >> 3] &= static_cast<uint8_t>(~(1u << (i & 7))); }

// First clear bit in [from, to), or `to`.
uint32_t find_zero_in(const uint8_t* map, uint32_t from, uint32_t to) {
  uint32_t i = from;
  while (i < to && (i & 63) != 0) {
    if (!test_bit(map, i)) return i;
    i++;
  }
  while (i + 64 <= to) {
    uint64_t w;
    std::memcpy(&w, map + (i >> 3), 8);
    if (w != ~0ull) return i + static_cast<uint32_t>(std::countr_one(w));
    i += 64;
  }
  for (; i < to; i++)
    if (!test_bit(map, i)) return i;
  return to;
}

// First clear bit at or after start, wrapping around; nbits if none.
uint32_t find_zero_from(const uint8_t* map, uint32_t start, uint32_t nbits) {
  uint32_t i = find_zero_in(map, start, nbits);
  if (i < nbits) return i;
  i = find_zero_in(map, 0, start);
  return i < start ? i : nbits;
}

uint32_t group_nblocks(const ext2_mount* m, uint32_t g) {
  uint32_t first = ext2_group_first_block(m, g);
  return g + 1 == m->m_groups_count ? m->m_blocks_count - first : m->m_blocks_per_group;
}

// The kernel's ext2_valid_block_bitmap: the group's own metadata must be marked in use, or the bitmap
// cannot be trusted to keep allocations off it. [g_lock]
int check_block_bitmap(ext2_mount* m, uint32_t g, const uint8_t* map) {
  ext2_group& grp = m->m_groups[g];
  if (grp.g_bitmap_checked) return 0;
  uint32_t first = ext2_group_first_block(m, g);
  const ext2_group_desc& d = grp.g_desc;
  auto used = [&](uint32_t blk) { return test_bit(map, blk - first); };
  bool ok = used(d.bg_block_bitmap) && used(d.bg_inode_bitmap);
  for (uint32_t b = 0; ok && b < m->m_itb_per_group; b++) ok = used(d.bg_inode_table + b);
  if (ext2_group_has_super(m, g))
    for (uint32_t b = 0; ok && b < 1 + m->m_gdt_blocks + m->m_reserved_gdt; b++) ok = used(first + b);
  if (!ok)
    return ext2_corrupt(m, 0, d.bg_block_bitmap, "block bitmap", "group %u: its own metadata blocks are marked free", g);
  grp.g_bitmap_checked = true;
  return 0;
}

// Takes a run of clear bits of group g: the first clear bit at or after `start` (wrapping), then the clear
// bits that follow it, up to max in all; *blkp = its first block, *gotp = its length (>= 1). ENOSPC if the
// group has none (after a corruption report when the count said otherwise).
int alloc_in_group(ext2_mount* m, uint32_t g, uint32_t start, uint32_t max, uint32_t* blkp, uint32_t* gotp) {
  ext2_group& grp = m->m_groups[g];
  std::lock_guard lock(grp.g_lock);
  if (grp.g_desc.bg_free_blocks_count == 0) return ENOSPC;
  BufRef bp;
  TRY(buf_meta_bread(m->m_devvp, grp.g_desc.bg_block_bitmap, &bp));
  auto* map = reinterpret_cast<uint8_t*>(bp.data());
  TRY(check_block_bitmap(m, g, map));
  uint32_t n = group_nblocks(m, g);
  uint32_t first = ext2_group_first_block(m, g);
  uint32_t bit = find_zero_from(map, start < n ? start : 0, n);
  if (bit == n) {
    (void)ext2_corrupt(m, 0, grp.g_desc.bg_block_bitmap, "bg_free_blocks_count",
                       "group %u counts %u free blocks, its bitmap none", g, grp.g_desc.bg_free_blocks_count);
    return ENOSPC;
  }
  uint32_t blk = first + bit;
  if (!ext2_data_block_ok(m, blk))
    return ext2_corrupt(m, 0, grp.g_desc.bg_block_bitmap, "block bitmap", "block %u (metadata) is marked free", blk);
  // The run stops at a used bit, the group's end, the free count, or a metadata block marked free (the
  // next allocation that starts there reports it).
  uint32_t got = 1, limit = std::min<uint32_t>(max, grp.g_desc.bg_free_blocks_count);
  while (got < limit && bit + got < n && !test_bit(map, bit + got) && ext2_data_block_ok(m, blk + got)) got++;
  for (uint32_t i = 0; i < got; i++) set_bit(map, bit + i);
  buf_setflags(bp.get(), B_EARLY);  // allocation bitmaps go out before other metadata (docs/durability.md)
  buf_bdwrite(std::move(bp));
  grp.g_desc.bg_free_blocks_count = static_cast<uint16_t>(grp.g_desc.bg_free_blocks_count - got);
  grp.g_dirty = true;
  *blkp = blk;
  *gotp = got;
  return 0;
}

}  // namespace

bool ext2_may_use_reserve(const ext2_mount* m, const vfs_context& ctx) {
  // The kernel's ext2_has_free_blocks: resgid 0 (the default) grants nothing by group membership.
  return ctx.is_superuser() || ctx.uid == m->m_sb.s_def_resuid ||
         (m->m_sb.s_def_resgid != 0 && ctx.groupmember(m->m_sb.s_def_resgid));
}

uint64_t ext2_free_blocks(ext2_mount* m, bool use_reserve) {
  int64_t f = m->m_free_blocks.load();
  int64_t r = use_reserve ? 0 : m->m_sb.s_r_blocks_count;
  return f > r ? static_cast<uint64_t>(f - r) : 0;
}

namespace {

bool try_reserve(ext2_mount* m, uint64_t n, bool use_reserve) {
  int64_t r = use_reserve ? 0 : m->m_sb.s_r_blocks_count;
  int64_t cur = m->m_free_blocks.load();
  do {
    if (cur - r < static_cast<int64_t>(n)) return false;
  } while (!m->m_free_blocks.compare_exchange_weak(cur, cur - static_cast<int64_t>(n)));
  return true;
}

}  // namespace

int ext2_reserve_blocks(ext2_mount* m, uint64_t n, bool use_reserve) {
  if (n == 0 || try_reserve(m, n, use_reserve)) return 0;
  // Freed blocks may be waiting for a device flush (deferred frees): release them and try again. Another
  // thread may have taken the queue and be flushing: its blocks come back when its flush is done.
  for (int tries = 0; tries < 50 && m->m_pending_nblocks.load() > 0; tries++) {
    TRY(ext2_release_deferred(m));
    if (try_reserve(m, n, use_reserve)) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return ENOSPC;
}

void ext2_unreserve_blocks(ext2_mount* m, uint64_t n) { m->m_free_blocks += static_cast<int64_t>(n); }

int ext2_balloc_run_reserved(ext2_mount* m, uint32_t goal, uint32_t max, uint32_t* blkp, uint32_t* countp) {
  uint32_t g0 = 0, start = 0;
  if (goal >= m->m_first_data_block && goal < m->m_blocks_count) {
    g0 = ext2_group_of_block(m, goal);
    start = goal - ext2_group_first_block(m, g0);
  }
  for (uint32_t i = 0; i < m->m_groups_count; i++) {
    uint32_t g = (g0 + i) % m->m_groups_count;
    int err = alloc_in_group(m, g, i == 0 ? start : 0, std::max<uint32_t>(max, 1), blkp, countp);
    if (err != ENOSPC) return err;
  }
  // The reservation said a block was free, no bitmap has one: the counts are corrupt.
  return ext2_corrupt(m, 0, 0, "s_free_blocks_count", "free blocks counted but none found in any bitmap");
}

int ext2_balloc_reserved(ext2_mount* m, uint32_t goal, uint32_t* blkp) {
  uint32_t got;
  return ext2_balloc_run_reserved(m, goal, 1, blkp, &got);
}

int ext2_balloc(ext2_mount* m, uint32_t goal, bool use_reserve, uint32_t* blkp) {
  TRY(ext2_reserve_blocks(m, 1, use_reserve));
  int err = ext2_balloc_reserved(m, goal, blkp);
  if (err) ext2_unreserve_blocks(m, 1);
  return err;
}

namespace {

int check_bfree(ext2_mount* m, uint32_t blk, uint32_t count) {
  for (uint32_t i = 0; i < count; i++) {
    if (!ext2_data_block_ok(m, blk + i))
      return ext2_corrupt(m, 0, blk + i, "bfree", "freeing block %u, which cannot hold data", blk + i);
  }
  // Drop cached copies first: a stale metadata buffer must never be written over the block's next owner.
  for (uint32_t i = 0; i < count; i++) buf_invalblkno(m->m_devvp, blk + i);
  return 0;
}

// Clears the bitmap bits of [blk, blk + count), checked by check_bfree.
int bfree_bits(ext2_mount* m, uint32_t blk, uint32_t count) {
  while (count > 0) {
    uint32_t g = ext2_group_of_block(m, blk);
    uint32_t first = ext2_group_first_block(m, g);
    uint32_t n = std::min(count, first + group_nblocks(m, g) - blk);
    ext2_group& grp = m->m_groups[g];
    std::lock_guard lock(grp.g_lock);
    BufRef bp;
    TRY(buf_meta_bread(m->m_devvp, grp.g_desc.bg_block_bitmap, &bp));
    auto* map = reinterpret_cast<uint8_t*>(bp.data());
    uint32_t freed = 0;
    for (uint32_t i = 0; i < n; i++) {
      uint32_t bit = blk + i - first;
      if (!test_bit(map, bit)) {
        (void)ext2_corrupt(m, 0, blk + i, "block bitmap", "freeing block %u, already free", blk + i);
        continue;
      }
      clear_bit(map, bit);
      freed++;
    }
    buf_setflags(bp.get(), B_EARLY);  // allocation bitmaps go out before other metadata (docs/durability.md)
    buf_bdwrite(std::move(bp));
    grp.g_desc.bg_free_blocks_count = static_cast<uint16_t>(grp.g_desc.bg_free_blocks_count + freed);
    grp.g_dirty = true;
    m->m_free_blocks += freed;
    blk += n;
    count -= n;
  }
  return 0;
}

// A queue this long is released at once. Otherwise the syncer's pass releases it: a device flush is an
// fdatasync of the image, which can cost a host writeback, so not one per few hundred unlinks.
constexpr size_t kMaxPendingItems = 65536;

}  // namespace

int ext2_bfree(ext2_mount* m, uint32_t blk, uint32_t count) {
  TRY(check_bfree(m, blk, count));
  return bfree_bits(m, blk, count);
}

void ext2_bfree_deferred(ext2_mount* m, uint32_t blk, uint32_t count) {
  if (count == 0 || check_bfree(m, blk, count) != 0) return;  // reported; the blocks stay in use (a leak)
  size_t n;
  {
    std::lock_guard g(m->m_pending_lock);
    try {
      m->m_pending_bfree.emplace_back(blk, count);
    } catch (const std::bad_alloc&) {
      return;  // a leak e2fsck gives back, never a reuse
    }
    m->m_pending_nblocks += count;
    n = m->m_pending_bfree.size();
  }
  if (n >= kMaxPendingItems) (void)ext2_release_deferred(m);  // a failed flush keeps them queued
}

void ext2_defer_ifree(ext2_mount* m, uint32_t ino, bool is_dir) {
  size_t n;
  {
    std::lock_guard g(m->m_pending_lock);
    try {
      m->m_pending_ifree.emplace_back(ino, is_dir);
    } catch (const std::bad_alloc&) {
      return;
    }
    n = m->m_pending_ifree.size();
  }
  if (n >= kMaxPendingItems) (void)ext2_release_deferred(m);
}

bool ext2_pending_frees(ext2_mount* m) {
  std::lock_guard g(m->m_pending_lock);
  return !m->m_pending_bfree.empty() || !m->m_pending_ifree.empty();
}

int ext2_release_deferred(ext2_mount* m) {
  std::vector<std::pair<uint32_t, bool>> inodes;
  std::vector<std::pair<uint32_t, uint32_t>> blocks;
  {
    std::lock_guard g(m->m_pending_lock);
    inodes.swap(m->m_pending_ifree);
    blocks.swap(m->m_pending_bfree);
  }
  if (inodes.empty() && blocks.empty()) return 0;
  // Every item was queued after the write that removed its last pointer or name completed, so this
  // flush, submitted after, makes those writes stable before any bit is cleared.
  if (int err = ext2_dev_flush(m)) {
    std::lock_guard g(m->m_pending_lock);  // not known stable: keep them (a leak, never a reuse)
    try {
      m->m_pending_ifree.insert(m->m_pending_ifree.end(), inodes.begin(), inodes.end());
      m->m_pending_bfree.insert(m->m_pending_bfree.end(), blocks.begin(), blocks.end());
    } catch (const std::bad_alloc&) {
      // The blocks dropped from the queue stay allocated on the image (a leak e2fsck gives back).
      for (auto [blk, count] : blocks) m->m_pending_nblocks -= count;
    }
    return err;
  }
  int first = 0;
  for (auto [blk, count] : blocks) {
    m->m_pending_nblocks -= count;
    if (int err = bfree_bits(m, blk, count); err && !first) first = err;
  }
  for (auto [ino, dir] : inodes)
    if (int err = ext2_ifree_bit(m, ino, dir); err && !first) first = err;
  return first;
}

// ---- inodes

namespace {

// Takes a clear bit of group g's inode bitmap (never a reserved inode). ENOSPC if none.
int ialloc_in_group(ext2_mount* m, uint32_t g, bool is_dir, uint32_t* inop) {
  ext2_group& grp = m->m_groups[g];
  std::lock_guard lock(grp.g_lock);
  if (grp.g_desc.bg_free_inodes_count == 0) return ENOSPC;
  BufRef bp;
  TRY(buf_meta_bread(m->m_devvp, grp.g_desc.bg_inode_bitmap, &bp));
  auto* map = reinterpret_cast<uint8_t*>(bp.data());
  uint32_t base = g * m->m_inodes_per_group;  // ino = base + bit + 1
  uint32_t start = base + 1 < m->m_first_ino ? m->m_first_ino - 1 - base : 0;
  if (start >= m->m_inodes_per_group) return ENOSPC;
  uint32_t bit = find_zero_in(map, start, m->m_inodes_per_group);
  if (bit == m->m_inodes_per_group) {
    (void)ext2_corrupt(m, 0, grp.g_desc.bg_inode_bitmap, "bg_free_inodes_count",
                       "group %u counts %u free inodes, its bitmap none", g, grp.g_desc.bg_free_inodes_count);
    return ENOSPC;
  }
  set_bit(map, bit);
  buf_setflags(bp.get(), B_EARLY);  // allocation bitmaps go out before other metadata (docs/durability.md)
  buf_bdwrite(std::move(bp));
  grp.g_desc.bg_free_inodes_count--;
  if (is_dir) grp.g_desc.bg_used_dirs_count++;
  grp.g_dirty = true;
  *inop = base + bit + 1;
  return 0;
}

// Directories go to a group with at least average free inodes and blocks (spreading the tree, as the
// kernel's find_group_dir); files stay in their parent's group, then look forward.
uint32_t pick_start_group(ext2_mount* m, uint32_t parent_group, bool is_dir) {
  if (!is_dir) return parent_group;
  int64_t avg_inodes = m->m_free_inodes.load() / m->m_groups_count;
  int64_t avg_blocks = m->m_free_blocks.load() / m->m_groups_count;
  uint32_t rotor = m->m_last_group.load();
  for (uint32_t i = 0; i < m->m_groups_count; i++) {
    uint32_t g = (rotor + i) % m->m_groups_count;
    std::lock_guard lock(m->m_groups[g].g_lock);
    const ext2_group_desc& d = m->m_groups[g].g_desc;
    if (d.bg_free_inodes_count > 0 && d.bg_free_inodes_count >= avg_inodes && d.bg_free_blocks_count >= avg_blocks) {
      m->m_last_group = (g + 1) % m->m_groups_count;
      return g;
    }
  }
  return parent_group;
}

}  // namespace

int ext2_ialloc_bit(ext2_mount* m, uint32_t parent_group, bool is_dir, uint32_t* inop) {
  int64_t cur = m->m_free_inodes.load();
  do {
    if (cur <= 0) return ENOSPC;
  } while (!m->m_free_inodes.compare_exchange_weak(cur, cur - 1));
  uint32_t g0 = pick_start_group(m, parent_group % m->m_groups_count, is_dir);
  for (uint32_t i = 0; i < m->m_groups_count; i++) {
    int err = ialloc_in_group(m, (g0 + i) % m->m_groups_count, is_dir, inop);
    if (err != ENOSPC) {
      if (err) m->m_free_inodes++;
      return err;
    }
  }
  m->m_free_inodes++;
  return ext2_corrupt(m, 0, 0, "s_free_inodes_count", "free inodes counted but none found in any bitmap");
}

size_t ext2_pending_inodes(ext2_mount* m) {
  std::lock_guard g(m->m_pending_lock);
  return m->m_pending_ifree.size();
}

int ext2_ifree_bit(ext2_mount* m, uint32_t ino, bool is_dir) {
  if (ino < m->m_first_ino || ino > m->m_inodes_count)
    return ext2_corrupt(m, ino, 0, "ifree", "inode %u is reserved or out of range", ino);
  uint32_t g = ext2_group_of_ino(m, ino);
  uint32_t bit = (ino - 1) % m->m_inodes_per_group;
  ext2_group& grp = m->m_groups[g];
  std::lock_guard lock(grp.g_lock);
  BufRef bp;
  TRY(buf_meta_bread(m->m_devvp, grp.g_desc.bg_inode_bitmap, &bp));
  auto* map = reinterpret_cast<uint8_t*>(bp.data());
  if (!test_bit(map, bit))
    return ext2_corrupt(m, ino, grp.g_desc.bg_inode_bitmap, "inode bitmap", "freeing inode %u, already free", ino);
  clear_bit(map, bit);
  buf_setflags(bp.get(), B_EARLY);  // allocation bitmaps go out before other metadata (docs/durability.md)
  buf_bdwrite(std::move(bp));
  grp.g_desc.bg_free_inodes_count++;
  if (is_dir && grp.g_desc.bg_used_dirs_count > 0) grp.g_desc.bg_used_dirs_count--;
  grp.g_dirty = true;
  m->m_free_inodes++;
  return 0;
}

}  // namespace vnopfs::ext2

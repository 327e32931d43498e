// truncate.cpp: size changes and freeing ranges of the block map.
//
// Freeing keeps the soft-updates rule "never reuse a block before every pointer to it is gone on disk":
// pointers are cleared first, every changed indirect block and the inode are written synchronously, and
// only then are the blocks queued for the bitmaps, which take them back after a device flush
// (ext2_bfree_deferred: the next allocation may take them then).
#include <algorithm>
#include <cstring>

#include "vnopfs/cluster.h"
#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

struct free_ctx {
  ext2_inode_info* ip;
  uint64_t first, last;             // logical blocks to free: [first, last)
  std::vector<uint32_t> blocks;     // to give back once the cleared pointers are on disk
  int err = 0;                      // first error; freeing goes on with what is known to be safe
};

uint64_t pow_apb(const ext2_mount* m, int n) {
  uint64_t c = 1;
  while (n-- > 0) c *= m->m_addr_per_block;
  return c;
}

// Collects the whole subtree under ptr (levels_below indirect levels) for freeing.
void collect_all(free_ctx& c, uint32_t ptr, int levels_below, uint32_t where) {
  ext2_mount* m = c.ip->i_mnt;
  if (!ext2_data_block_ok(m, ptr)) {
    int e = ext2_corrupt(m, c.ip->i_ino, where, "block map", "block %u outside the data area (not freed)", ptr);
    if (!c.err) c.err = e;
    return;
  }
  if (levels_below > 0) {
    BufRef bp;
    if (int e = buf_meta_bread(m->m_devvp, ptr, &bp)) {
      if (!c.err) c.err = e;
      return;  // its children leak (a lossless e2fsck fix); the block itself is still freed
    }
    const auto* arr = reinterpret_cast<const uint32_t*>(bp.data());
    std::vector<uint32_t> kids(arr, arr + m->m_addr_per_block);
    bp = BufRef();
    for (uint32_t k : kids)
      if (k) collect_all(c, k, levels_below - 1, ptr);
  }
  c.blocks.push_back(ptr);
}

// Frees what lies in [first, last) under *slot, which covers logical blocks [start, start + cov).
// Returns true when *slot changed.
bool free_tree(free_ctx& c, uint32_t* slot, int levels_below, uint64_t start, uint32_t where) {
  ext2_mount* m = c.ip->i_mnt;
  uint32_t ptr = *slot;
  if (ptr == 0) return false;
  uint64_t cov = pow_apb(m, levels_below);
  if (start + cov <= c.first || start >= c.last) return false;
  if (start >= c.first && start + cov <= c.last) {
    collect_all(c, ptr, levels_below, where);
    *slot = 0;
    return true;
  }
  // Partly inside: only an indirect block can be (a data block covers one logical block).
  if (!ext2_data_block_ok(m, ptr)) {
    int e = ext2_corrupt(m, c.ip->i_ino, where, "block map", "indirect block %u outside the data area", ptr);
    if (!c.err) c.err = e;
    return false;
  }
  BufRef bp;
  if (int e = buf_meta_bread(m->m_devvp, ptr, &bp)) {
    if (!c.err) c.err = e;
    return false;
  }
  auto* arr = reinterpret_cast<uint32_t*>(bp.data());
  uint64_t sub = cov / m->m_addr_per_block;
  bool changed = false;
  for (uint32_t i = 0; i < m->m_addr_per_block; i++) changed |= free_tree(c, &arr[i], levels_below - 1, start + i * sub, ptr);
  if (changed) {
    // The cleared pointers reach the disk before their blocks can be reused.
    if (int e = buf_bwrite(std::move(bp)); e && !c.err) c.err = e;
  }
  return false;
}

// Gives blocks back in contiguous runs, after a device flush (deferred frees: the cleared pointers were
// written, not yet flushed).
void release_blocks(ext2_mount* m, std::vector<uint32_t>& blocks) {
  std::sort(blocks.begin(), blocks.end());
  for (size_t i = 0; i < blocks.size();) {
    size_t j = i + 1;
    while (j < blocks.size() && blocks[j] == blocks[j - 1] + 1) j++;
    ext2_bfree_deferred(m, blocks[i], static_cast<uint32_t>(j - i));
    i = j;
  }
}

}  // namespace

int ext2_free_range_locked(ext2_inode_info* ip, uint64_t first, uint64_t last) {
  ext2_mount* m = ip->i_mnt;
  TRY(ext2_check_writable(m));
  if (!ext2_has_blockmap(ip) || first >= last) return 0;
  ext2_extent_forget(ip, first, last);  // before any block can be given back
  free_ctx c{ip, first, last, {}};
  uint32_t* ib = ip->i_di.base.i_block;
  bool changed = false;
  for (uint32_t i = 0; i < EXT2_NDIR_BLOCKS; i++) changed |= free_tree(c, &ib[i], 0, i, 0);
  uint64_t start = EXT2_NDIR_BLOCKS;
  for (int level = 1; level <= 3; level++) {
    changed |= free_tree(c, &ib[EXT2_NDIR_BLOCKS + level - 1], level, start, 0);
    start += pow_apb(m, level);
  }
  if (c.blocks.empty() && !changed) return c.err;
  ext2_i_blocks_add(ip, -static_cast<int64_t>(c.blocks.size()));
  ip->i_next_alloc_goal = 0;
  if (int e = ext2_iupdate(ip, true)) return e;  // pointers not on disk: keep the blocks (leaked, not reused)
  release_blocks(m, c.blocks);
  return c.err;
}

// Writes zeros over [off, off + len) of a regular file through its cache (the cluster layer), where off
// and len lie inside one block, or a run of blocks, that is allocated. oldEOF/newEOF as cluster_write.
int ext2_zero_range_cached(vnode* vp, off_t off, size_t len, off_t oldEOF, off_t newEOF) {
  static char zeros[65536];
  while (len > 0) {
    size_t n = std::min(len, sizeof zeros);
    uio u(zeros, n, off, UIO_WRITE, UIO_SYSSPACE);
    TRY(cluster_write(vp, &u, oldEOF, newEOF, 0, 0, 0));
    if (u.resid() != 0) return EIO;
    off += static_cast<off_t>(n);
    len -= n;
  }
  return 0;
}

namespace {

// True when the block holding byte `off` is allocated.
int block_allocated(ext2_inode_info* ip, uint64_t off, bool* yes) {
  std::lock_guard g(ip->i_lock);
  uint32_t pbn = 0;
  TRY(ext2_bmap_locked(ip, off / ip->i_mnt->m_block_size, 0, &pbn, 1, nullptr, nullptr));
  *yes = pbn != 0;
  return 0;
}

int truncate_regular(vnode* vp, ext2_inode_info* ip, uint64_t oldsize, uint64_t newsize) {
  ext2_mount* m = ip->i_mnt;
  const uint64_t bs = m->m_block_size;
  if (newsize > oldsize) {
    cluster_setsize(vp, static_cast<off_t>(newsize));
    bool alloc = false;
    if (oldsize % bs != 0) TRY(block_allocated(ip, oldsize, &alloc));
    if (alloc) {  // bytes past the old EOF in its block must read as zeros
      uint64_t end = std::min(newsize, (oldsize / bs + 1) * bs);
      TRY(ext2_zero_range_cached(vp, static_cast<off_t>(oldsize), end - oldsize, static_cast<off_t>(oldsize),
                                 static_cast<off_t>(newsize)));
    }
    std::lock_guard g(ip->i_lock);
    ext2_i_set_size(ip, newsize);
    return 0;
  }
  bool alloc = false;
  if (newsize % bs != 0) TRY(block_allocated(ip, newsize, &alloc));
  if (alloc) {  // the tail of the new last block is zeroed, so a later extension reads zeros there
    uint64_t end = std::min(oldsize, (newsize / bs + 1) * bs);
    TRY(ext2_zero_range_cached(vp, static_cast<off_t>(newsize), end - newsize, static_cast<off_t>(oldsize),
                               static_cast<off_t>(oldsize)));
  }
  uint64_t keep = (newsize + bs - 1) / bs;  // logical blocks that stay
  buf_invalidate_range(vp, static_cast<daddr64_t>(keep), INT64_MAX);
  cluster_setsize(vp, static_cast<off_t>(newsize));
  std::lock_guard g(ip->i_lock);
  ext2_i_set_size(ip, newsize);
  return ext2_free_range_locked(ip, keep, UINT64_MAX);
}

}  // namespace

int ext2_truncate(vnode* vp, uint64_t newsize, const vfs_context&) {
  ext2_inode_info* ip = VTOI(vp);
  ext2_mount* m = ip->i_mnt;
  TRY(ext2_check_writable(m));
  if (newsize > m->m_max_file_size) return EFBIG;
  uint64_t oldsize;
  {
    std::lock_guard g(ip->i_lock);
    oldsize = ext2_i_size(ip);
  }
  if (newsize == oldsize) return 0;
  int err;
  if (vp->v_type == vtype::VREG) {
    err = truncate_regular(vp, ip, oldsize, newsize);
  } else {
    // Directories and slow symlinks keep their blocks as metadata buffers (mnt_devvp): bfree drops them.
    std::lock_guard g(ip->i_lock);
    ext2_i_set_size(ip, newsize);
    uint64_t bs = m->m_block_size;
    err = newsize < oldsize ? ext2_free_range_locked(ip, (newsize + bs - 1) / bs, UINT64_MAX) : 0;
  }
  std::lock_guard g(ip->i_lock);
  ext2_itimes(ip, EXT2_ICHG | EXT2_IUPD);
  return err;
}

}  // namespace vnopfs::ext2

// write.cpp: VNOP_WRITE through cluster_write, the full contract of VNOP_WRITE in include/vnopfs/vnop.def and docs/design.md, "The contracts".
//
// Allocation design: blocks are allocated HERE, in VNOP_WRITE, before the data is copied (FFS ffs_balloc
// style), not at push time. Reasons: ENOSPC reaches the writer with nothing changed (IO_UNIT reserves every
// block of the write up front; other writes become short writes at the first block that cannot be had);
// the cluster layer's VNODE_WRITE blockmap at push time then only looks blocks up, so a push never fails for
// space. A new block must never show old disk contents: a block this write covers completely is filled by
// the copy; a new block it covers only partly and that lies below the old EOF (which cluster_write would
// pre-read) is zeroed on disk before its pointer is set (EXT2_BMAP_ZERO); partial blocks at or past the old
// EOF are zero-filled by cluster_write itself. A block allocated but not copied into because the copy
// failed is freed again (back to a hole).
//
// Mapping is extent-wise, per round (kChunk), never per block: a round the extent cache knows to be mapped
// (the common overwrite) costs one cache lookup and no i_lock, and the IO_UNIT count skips it the same way;
// holes are allocated by range (ext2_bmap_alloc_range: contiguous runs, each block of pointers written
// once), and the blocks it maps are in the extent cache, so the cluster layer's VNODE_WRITE blockmap for a
// run, when it fills or pushes the buffers, is one cache lookup too.
//
// Write paths (ext2.h, ext2_wpath): allocation, sizes and times are the same for every table; only the copy
// of a round differs (cluster_write, ext2_buf_write or ext2_direct_write).
//
// Locks: the caller holds the vnode lock shared (a write inside EOF) or exclusive (extending, IO_APPEND;
// with ext2-direct also a write with a partial block), see ext2.h; i_lock is taken only around allocation and size updates, never across cluster_write.
#include <sys/stat.h>

#include <algorithm>
#include <new>
#include <optional>

#include "vnopfs/cluster.h"
#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

constexpr uint64_t kChunk = 1u << 20;  // bytes allocated and copied per round

struct write_state {
  vnode* vp;
  ext2_inode_info* ip;
  ext2_mount* m;
  uio* u;
  int ioflag;
  const vfs_context& ctx;
  uint64_t bs;
  bool use_reserve;
  uint64_t orig_size = 0;      // size before the write
  uint64_t size = 0;           // size now
  ext2_reservation res;        // IO_UNIT: every block of the write, reserved before anything changes
  std::vector<ext2_range> fresh;  // data blocks this round allocated that the copy must fill
  std::optional<buf_alloc_hold> hold;  // the allocation gate, from this round's first allocation to its end

  write_state(vnode* v, uio* uu, int fl, const vfs_context& c)
      : vp(v), ip(VTOI(v)), m(ip->i_mnt), u(uu), ioflag(fl), ctx(c), bs(m->m_block_size),
        use_reserve(ext2_may_use_reserve(m, c)), res(m) {}
};

// Allocates the blocks of [coff, *cend). Without IO_UNIT, running out of space clips *cend to the last
// block obtained (ENOSPC only when not even the first one could be had).
int allocate_round(write_state& w, uint64_t coff, uint64_t* cend) {
  const uint64_t first = coff / w.bs, last = (*cend + w.bs - 1) / w.bs;
  w.fresh.clear();
  // The common overwrite: one extent-cache lookup and no i_lock. Mapped blocks stay mapped while the
  // caller holds the vnode lock (freeing takes it exclusive).
  if (ext2_extent_mapped(w.ip, first, last)) return 0;
  // From the first pointer this round sets until its data is in the cache or on the device (the end of
  // write_round): the flusher never writes such a pointer ahead of the data (buf.h, buf_alloc_hold).
  // Taken before i_lock: the flusher, holding the gate, may map a buffer of this file (VNODE_WRITE).
  if (!w.hold) w.hold.emplace(w.vp);
  std::lock_guard g(w.ip->i_lock);
  bool per_block = false;  // no reservation for the round: each block reserves its own
  if (!(w.ioflag & IO_UNIT)) {
    uint64_t need = 0;
    TRY(ext2_bmap_count_missing(w.ip, first, last, &need));
    if (need == 0) return 0;
    if (w.res.take(need, w.use_reserve) != 0) per_block = true;
  }
  const int base = EXT2_BMAP_ALLOC | (w.use_reserve ? EXT2_BMAP_RESERVE : 0);
  // A new block the write covers only partly and that lies below the EOF is zeroed on disk first
  // (cluster_write would pre-read it); only the first and the last block can be partial.
  auto zero_flag = [&](uint64_t lbn) {
    const uint64_t b0 = lbn * w.bs, b1 = b0 + w.bs;
    return (coff > b0 || *cend < b1) && b0 < w.size ? EXT2_BMAP_ZERO : 0;
  };
  if (per_block) {  // near ENOSPC: as many blocks as can be had, one at a time
    for (uint64_t lbn = first; lbn < last; lbn++) {
      const int flags = base | zero_flag(lbn);
      uint32_t pbn;
      bool isnew = false;
      int err = ext2_bmap_locked(w.ip, lbn, flags, &pbn, 1, nullptr, &isnew);
      if (err == ENOSPC && lbn > first) {
        *cend = lbn * w.bs;
        return 0;
      }
      if (err) {
        *cend = std::max(coff, lbn * w.bs);
        return err;
      }
      if (isnew && !(flags & EXT2_BMAP_ZERO)) w.fresh.push_back({lbn, 1});
    }
    return 0;
  }
  // By range: a partial head block, the whole blocks, a partial tail block.
  struct piece { uint64_t a, b; int flags; } pieces[3];
  int np = 0;
  uint64_t lo = first, hi = last;
  if (zero_flag(lo)) pieces[np++] = {lo, lo + 1, base | EXT2_BMAP_ZERO}, lo++;
  const bool zero_tail = hi > lo && zero_flag(hi - 1);
  if (zero_tail) hi--;
  if (hi > lo) pieces[np++] = {lo, hi, base};
  if (zero_tail) pieces[np++] = {hi, hi + 1, base | EXT2_BMAP_ZERO};
  for (int i = 0; i < np; i++) {
    uint64_t done;
    if (int err = ext2_bmap_alloc_range(w.ip, pieces[i].a, pieces[i].b, pieces[i].flags, &w.res, &done, &w.fresh)) {
      *cend = std::max(coff, done * w.bs);
      return err;
    }
  }
  return 0;
}

// After a failed copy: blocks allocated for data that never arrived go back to holes, so no pointer is
// left to a block of old contents.
void release_uncopied(write_state& w) {
  const uint64_t keep = (static_cast<uint64_t>(w.u->offset()) + w.bs - 1) / w.bs;  // blocks the copy reached
  std::vector<ext2_range> drop;
  for (const ext2_range& r : w.fresh) {
    const uint64_t a = std::max(r.lbn, keep), e = r.lbn + r.count;
    if (a < e) drop.push_back({a, e - a});
  }
  if (drop.empty()) return;
  for (const ext2_range& r : drop)
    buf_invalidate_range(w.vp, static_cast<daddr64_t>(r.lbn), static_cast<daddr64_t>(r.lbn + r.count));
  std::lock_guard g(w.ip->i_lock);
  for (const ext2_range& r : drop) (void)ext2_free_range_locked(w.ip, r.lbn, r.lbn + r.count);
}

// Zeroes the bytes between the old EOF and a write that starts past it, when they share the old EOF's
// block (headOff for cluster_write) or the old EOF's block is allocated but the write starts further on.
int zero_gap(write_state& w, uint64_t off, uint64_t newEOF, off_t* headOff, int* flags) {
  if (off <= w.size || w.size % w.bs == 0) return 0;
  const uint64_t blk_end = (w.size / w.bs + 1) * w.bs;
  if (off < blk_end) {
    *headOff = static_cast<off_t>(w.size);
    *flags |= IO_HEADZEROFILL;
    return 0;
  }
  uint32_t pbn = 0;
  {
    std::lock_guard g(w.ip->i_lock);
    TRY(ext2_bmap_locked(w.ip, w.size / w.bs, 0, &pbn, 1, nullptr, nullptr));
  }
  if (pbn == 0) return 0;
  return ext2_zero_range_cached(w.vp, static_cast<off_t>(w.size), blk_end - w.size, static_cast<off_t>(w.size),
                                static_cast<off_t>(newEOF));
}

// The bytes of a cluster-path round that go straight to the device (0: none): the whole blocks from a
// block-aligned offset, when they are at least m_direct_min and the file has no dirty buffer. Why: a large
// write through the cache costs a copy into the buffers and, later, the device write's copy of the same
// bytes; straight from the request's memory it costs the device write alone, in the request (as XNU's
// cluster_write_direct does for IO_NOCACHE, here chosen by size). Why only without dirty buffers: a dirty
// buffer of the range pushed after this write would put older bytes over it, and pushing first would make a
// large write wait for the small ones before it; a file being written in small pieces keeps the cluster path.
size_t direct_len(const write_state& w, uint64_t coff, uint64_t cend, int flags) {
  if (w.m->m_direct_min == 0 || w.m->m_wpath != ext2_wpath::cluster || coff % w.bs || (flags & IO_HEADZEROFILL))
    return 0;
  const uint64_t len = (cend - coff) / w.bs * w.bs;
  if (len == 0 || len < w.m->m_direct_min || buf_vnode_isdirty(w.vp)) return 0;
  return static_cast<size_t>(len);
}

// One round: allocate, then copy through the cluster layer, then publish the new size.
int write_round(write_state& w) {
  struct drop_hold {
    write_state& w;
    ~drop_hold() { w.hold.reset(); }
  } drop{w};
  const uint64_t coff = static_cast<uint64_t>(w.u->offset());
  uint64_t cend = std::min(coff + w.u->resid(), (coff / kChunk + 1) * kChunk);
  int alloc_err = allocate_round(w, coff, &cend);
  if (cend <= coff) return alloc_err ? alloc_err : ENOSPC;
  const uint64_t newEOF = std::max(w.size, cend);
  if (newEOF > w.size) cluster_setsize(w.vp, static_cast<off_t>(newEOF));
  off_t headOff = 0;
  int flags = w.ioflag & (IO_SYNC | IO_NOCACHE);
  int err = zero_gap(w, coff, newEOF, &headOff, &flags);
  const size_t rest = w.u->resid() - (cend - coff);
  if (!err) {
    w.u->setresid(cend - coff);
    switch (w.m->m_wpath) {  // the one place the write paths differ (ext2.h, ext2_wpath)
      case ext2_wpath::buf: err = ext2_buf_write(w.vp, w.u, cend - coff, w.size, flags); break;
      case ext2_wpath::direct: err = ext2_direct_write(w.vp, w.u, cend - coff, w.size); break;
      case ext2_wpath::cluster:
      case ext2_wpath::sync:
        if (size_t d = direct_len(w, coff, cend, flags)) {
          err = ext2_direct_write_blocks(w.vp, w.u, d);
          if (err || d == cend - coff) break;  // else a partial last block, through the cache
        }
        err = cluster_write(w.vp, w.u, static_cast<off_t>(w.size), static_cast<off_t>(newEOF), headOff, 0, flags);
        break;
    }
    w.u->setresid(w.u->resid() + rest);
  }
  if (err) release_uncopied(w);
  const uint64_t reached = static_cast<uint64_t>(w.u->offset());
  if (reached > w.size) {
    std::lock_guard g(w.ip->i_lock);
    ext2_i_set_size(w.ip, reached);
    w.size = reached;
  } else if (newEOF > w.size) {
    cluster_setsize(w.vp, static_cast<off_t>(w.size));
  }
  if (err) return err;
  return alloc_err;  // ENOSPC/EIO after a partial round: the caller sees a short write
}

// Checks and the EOF decision under i_lock. ERESTART: the caller must retake the vnode lock exclusive.
int write_begin(write_state& w) {
  const bool exclusive = w.vp->v_lock.held_exclusive();
  std::lock_guard g(w.ip->i_lock);
  const ext2_inode& di = w.ip->i_di.base;
  if (di.i_flags & EXT2_IMMUTABLE_FL) return EPERM;
  if ((di.i_flags & EXT2_APPEND_FL) && !(w.ioflag & IO_APPEND)) return EPERM;
  if (di.i_flags & EXT2_SYNC_FL) w.ioflag |= IO_SYNC;  // chattr +S
  w.orig_size = w.size = ext2_i_size(w.ip);
  if (w.ioflag & IO_APPEND) {
    if (!exclusive) return ERESTART;
    w.u->setoffset(static_cast<off_t>(w.size));
  }
  const uint64_t off = static_cast<uint64_t>(w.u->offset());
  if (off >= w.m->m_max_file_size) return EFBIG;
  if (off + w.u->resid() > w.size && !exclusive) return ERESTART;
  // ext2-direct read-modify-writes a partial block through a bounce block: two such writes to one block
  // must not interleave, so they need the lock exclusive.
  if (w.m->m_wpath == ext2_wpath::direct && !exclusive && (off % w.bs || (off + w.u->resid()) % w.bs))
    return ERESTART;
  if (w.ioflag & IO_UNIT) {
    uint64_t need = 0, end = std::min<uint64_t>(off + w.u->resid(), w.m->m_max_file_size);
    TRY(ext2_bmap_count_missing(w.ip, off / w.bs, (end + w.bs - 1) / w.bs, &need));
    TRY(w.res.take(need, w.use_reserve));  // ENOSPC here: nothing changed
  }
  (void)ext2_kill_suid(w.ip, w.ctx);  // before any data moves (HFS order)
  return 0;
}

int write_impl(vnode* vp, uio* u, int ioflag, const vfs_context& ctx) {
  write_state w(vp, u, ioflag, ctx);
  TRY(ext2_xattr_kill_caps(vp, ctx));  // ERESTART under the shared lock if a capability must go
  TRY(write_begin(w));
  // Past the format's maximum size the write is clipped (short), as Linux does; the clipped bytes are
  // handed back to the uio at the end.
  const uint64_t off = static_cast<uint64_t>(u->offset());
  size_t clipped = 0;
  if (off + u->resid() > w.m->m_max_file_size) {
    clipped = off + u->resid() - w.m->m_max_file_size;
    u->setresid(u->resid() - clipped);
  }
  const uio::mark mark = u->save();
  int err = 0;
  while (u->resid() > 0 && !err) {
    const off_t before = u->offset();
    err = write_round(w);
    if (!err && u->offset() == before) err = EIO;  // no progress without an error: never spin
  }
  const bool moved = static_cast<uint64_t>(u->offset()) > off;
  if (err && (ioflag & IO_UNIT)) {
    if (w.size > w.orig_size) (void)ext2_truncate(vp, w.orig_size, ctx);
    u->restore(mark);
  } else if (err && moved) {
    err = 0;  // a short write is success
  }
  u->setresid(u->resid() + clipped);
  if (moved && !(err && (ioflag & IO_UNIT))) {
    std::lock_guard g(w.ip->i_lock);
    ext2_itimes_lazy(w.ip, EXT2_ICHG | EXT2_IUPD);  // a size or block change made the inode dirty already
  }
  if (!err && moved && (ioflag & (IO_SYNC | IO_DSYNC)))
    err = ext2_fsync_vnode(vp, (ioflag & IO_SYNC) ? MNT_WAIT : MNT_DWAIT, /*flush_device=*/true);
  return err;
}

}  // namespace

int ext2_vnop_write(vnop_write_args* ap) {
  vnode* vp = ap->a_vp;
  if (vp->v_type == vtype::VDIR) return EISDIR;
  if (vp->v_type != vtype::VREG) return EINVAL;
  ext2_mount* m = VTOI(vp)->i_mnt;
  TRY(ext2_check_writable(m));
  uio* u = ap->a_uio;
  if (u->offset() < 0) return EINVAL;
  if (u->resid() == 0) return 0;
  int ioflag = ap->a_ioflag;
  if (vp->v_mount->mnt_flag & MNT_SYNCHRONOUS) ioflag |= IO_SYNC;
  const vfs_context& ctx = ap->a_context ? *ap->a_context : vfs_context::kernel();
  try {
    return write_impl(vp, u, ioflag, ctx);
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
}

}  // namespace vnopfs::ext2

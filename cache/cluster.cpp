// cluster.cpp: the write side of the cluster layer, after XNU bsd/vfs/vfs_cluster.c (cluster_write_copy,
// cluster_update_state, cluster_push). See cluster.h for the contracts.
#include <algorithm>
#include <cstring>

#include "cache/buf_internal.h"
#include "vnopfs/cluster.h"

namespace vnopfs {

static inline bool has(const buf* bp, uint32_t f) { return (bp->b_flags.load(std::memory_order_relaxed) & f) != 0; }

void cluster_vnode_forget_locked(vnode_bufs* vb) {
  vb->ncl = 0;
  vb->sparse = false;
  vb->ra_last = -1;
  vb->ra_next = 0;
  vb->ra_window = 0;
}

void cluster_setsize(vnode* vp, off_t size) {
  bufcache* c = cache_of(vp);
  {
    std::lock_guard g(c->mtx);
    vnode_bufs* vb = vb_get_locked(c, vp);
    if (vb == nullptr) return;
    off_t old = vb->size;
    vb->size = size;
    if (size >= old) return;
    daddr64_t eofblk = (size + c->bs - 1) >> c->bshift;
    // Write-behind clusters never reach past EOF.
    uint32_t k = 0;
    for (uint32_t i = 0; i < vb->ncl; i++) {
      wcluster cl = vb->cl[i];
      cl.end = std::min(cl.end, eofblk);
      if (cl.start < cl.end) vb->cl[k++] = cl;
    }
    vb->ncl = k;
    vb->ra_next = std::min(vb->ra_next, eofblk);
  }
  // The block holding the new EOF keeps no stale bytes past it in core: a later extension reads zeros.
  if (size & (c->bs - 1)) {
    BufRef bp = buf_getblk(vp, size >> c->bshift, BLK_READ | BLK_ONLYVALID);
    if (bp) {
      size_t in = static_cast<size_t>(size & (c->bs - 1));
      std::memset(bp.data() + in, 0, c->bs - in);
    }
  }
}

// Writes the dirty, non-busy buffers of [start, end) in runs (a full write-behind cluster, an IO_SYNC range).
static void push_range(bufcache* c, vnode* vp, daddr64_t start, daddr64_t end) {
  std::vector<buf*> run;
  try {
    run.reserve(std::min<size_t>(static_cast<size_t>(end - start), c->max_io_blocks));
  } catch (const std::bad_alloc&) {
    return;  // the flusher or the next push writes them
  }
  std::unique_lock g(c->mtx);
  for (daddr64_t lb = start; lb <= end; lb++) {
    // Under [M] a found buffer's identity and B_DELWRI hold; busy is taken by CAS (a hit may hold it).
    buf* bp = lb < end ? incore_locked(c, vp, lb) : nullptr;
    bool take = bp && has(bp, B_DELWRI) && run.size() < c->max_io_blocks && bbusy(bp);
    if (!take && !run.empty()) {
      g.unlock();
      write_run(c, vp, run.data(), run.size());
      run.clear();
      g.lock();
      bp = lb < end ? incore_locked(c, vp, lb) : nullptr;  // the lock was dropped: look the block up again
      take = bp && has(bp, B_DELWRI) && bbusy(bp);
    }
    if (take) {
      markclean_locked(c, bp);
      run.push_back(bp);
    }
  }
}

// Write-behind policy (XNU cluster_update_state): the written block joins a cluster it extends; a cluster
// reaching max_io_blocks is returned for pushing at once; with every slot taken the vnode goes sparse: its
// dirty list becomes the sorted dirty map that cluster_push writes in offset order. L.
static bool writebehind_policy_locked(bufcache* c, vnode_bufs* vb, daddr64_t lb, wcluster* push) {
  if (vb->sparse) return false;
  for (uint32_t i = 0; i < vb->ncl; i++) {
    wcluster& cl = vb->cl[i];
    if (lb >= cl.start && lb < cl.end) return false;  // rewrite inside a cluster
    if (lb == cl.end || lb + 1 == cl.start) {
      if (lb == cl.end) cl.end++;
      else cl.start--;
      c->n.wb_grow.fetch_add(1, std::memory_order_relaxed);
      if (static_cast<uint64_t>(cl.end - cl.start) < c->max_io_blocks) return false;
      *push = cl;
      vb->cl[i] = vb->cl[--vb->ncl];
      c->n.wb_full_push.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
  }
  if (vb->ncl < c->cfg.clusters_per_vnode) {
    vb->cl[vb->ncl++] = {lb, lb + 1};
    c->n.wb_new.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  vb->sparse = true;
  vb->ncl = 0;
  c->n.wb_go_sparse.fetch_add(1, std::memory_order_relaxed);
  return false;
}

// Dirty high-water policy for writers: past the mark a writer pushes its own vnode (it holds no filesystem
// lock here, so its VNOP_BLOCKMAP calls are safe), wakes the flusher for the others, and waits until the
// dirty count is back under the mark. Counted as a throttle wait.
// The check is a relaxed read of the dirty count: no lock on the common path.
// Buffers kept after failed writes (B_LOCKED) are dirty too, and only a retry that succeeds or their drop
// after max_write_retries makes them clean: when they alone fill the allowance (nfailed reaches the mark),
// waiting would only wait for the device to come back, so the writer gets EIO at once instead, as the
// writes of the data already refused did. Returns 0 or EIO.
static int dirty_throttle_policy(bufcache* c, vnode* vp) {
  // Failed buffers being retried are not counted dirty while in flight: nfailed is checked too (read
  // without [M] here as a hint, like ndirty; the decision is made under it).
  if (c->ndirty.load(std::memory_order_relaxed) < c->highwater &&
      c->nfailed.load(std::memory_order_relaxed) < c->highwater)
    return 0;
  auto refuse_locked = [c] {
    if (c->nfailed < c->highwater) return false;
    c->n.failed_throttle.fetch_add(1, std::memory_order_relaxed);
    return true;
  };
  {
    std::lock_guard g(c->mtx);
    if (refuse_locked()) return EIO;
    if (c->ndirty.load(std::memory_order_relaxed) < c->highwater) return 0;
    c->n.throttle_waits.fetch_add(1, std::memory_order_relaxed);
    flusher_wake_locked(c);
  }
  push_vnode(c, vp, push_wait::No);
  std::unique_lock g(c->mtx);
  while (c->ndirty.load(std::memory_order_relaxed) >= c->highwater) {
    if (refuse_locked()) return EIO;
    flusher_wake_locked(c);
    c->free_waiters++;
    c->free_cv.wait_for(g, std::chrono::milliseconds(20));
    c->free_waiters--;
  }
  return 0;
}

static int read_block(bufcache* c, vnode* vp, buf* bp) {
  buf* one = bp;
  return read_run(c, vp, &one, 1, false, false);
}

// Sets b_blkno on the run's buffers that are not mapped yet, from one VNOP_BLOCKMAP(VNODE_READ) per physical
// run (one call for the whole request when the extent is contiguous): the push then writes them without
// mapping again. VNODE_READ only looks up: a hole stays unmapped and is allocated by the push's
// VNODE_WRITE as before, and a failed lookup leaves the buffers unmapped (the push maps them, and reports
// its own error on exactly those buffers).
static void map_run(bufcache* c, vnode* vp, buf** bps, size_t n) {
  if (vp->v_flag & VSYSTEM) return;  // device buffers are their own mapping
  size_t i = 0;
  while (i < n) {
    if (bps[i]->b_blkno != BUF_UNMAPPED) {
      i++;
      continue;
    }
    daddr64_t bpn = -1;
    size_t run = 0;
    int err = VNOP_BLOCKMAP(vp, static_cast<off_t>(bps[i]->b_lblkno) << c->bshift, (n - i) << c->bshift, &bpn, &run,
                            VNODE_READ, const_cast<vfs_context*>(&vfs_context::kernel()));
    size_t nb = std::min(run >> c->bshift, n - i);
    if (err || nb == 0) return;
    if (bpn >= 0)
      for (size_t k = 0; k < nb; k++) {
        if (bps[i + k]->b_blkno == BUF_UNMAPPED) bps[i + k]->b_blkno = bpn + static_cast<daddr64_t>(k);
      }
    i += nb;
  }
}

// One pass of cluster_write over the run of buffers [bps, bps + n) starting at block lb0: pre-read or zero
// the partial blocks, map the run, copy with no cache lock held. Returns 0 or the pre-read's error (then
// the buffers are still busy with the caller, nothing copied into the failed block or after it; *copied
// says how many leading buffers were filled).
static int fill_run(bufcache* c, vnode* vp, uio* uio, buf** bps, size_t n, daddr64_t lb0, off_t start, off_t end,
                    off_t zstart, off_t zend, off_t oldEOF, off_t newEOF, size_t* copied) {
  const off_t bs = c->bs;
  *copied = 0;
  for (size_t i = 0; i < n; i++) {
    buf* bp = bps[i];
    const off_t bstart = (lb0 + static_cast<daddr64_t>(i)) << c->bshift, bend = bstart + bs;
    const off_t cs = std::max(zstart, bstart), ce = std::min(zend, bend);
    if (!has(bp, B_DONE) && !(cs == bstart && ce == bend)) {
      if (bstart < oldEOF) {  // a partial block with data on disk: read it first
        if (int err = read_block(c, vp, bp)) return err;
      } else {
        buf_clear(bp);
      }
    }
  }
  map_run(c, vp, bps, n);
  for (size_t i = 0; i < n; i++) {
    char* d = bps[i]->b_datap;
    const off_t bstart = (lb0 + static_cast<daddr64_t>(i)) << c->bshift, bend = bstart + bs;
    const off_t cs = std::max(zstart, bstart), ce = std::min(zend, bend);
    const off_t ds = std::max(start, bstart), de = std::min(end, bend);
    if (cs < ds) std::memset(d + (cs - bstart), 0, static_cast<size_t>(std::min(ds, ce) - cs));  // head zeros
    if (ds < de) uiomove(d + (ds - bstart), static_cast<size_t>(de - ds), uio);
    const off_t ts = std::max(de, std::max(cs, bstart));
    if (ts < ce) std::memset(d + (ts - bstart), 0, static_cast<size_t>(ce - ts));  // tail zeros
    if (newEOF > bstart && newEOF < bend) std::memset(d + (newEOF - bstart), 0, static_cast<size_t>(bend - newEOF));
    *copied = i + 1;
  }
  return 0;
}

// Per run of blocks: one lookup-and-busy pass (getblk_run), the fill with no cache lock held, one pass that
// marks the run dirty, releases it and updates the write-behind clusters.
int cluster_write(vnode* vp, uio* uio, off_t oldEOF, off_t newEOF, off_t headOff, off_t tailOff, int ioflag) {
  bufcache* c = cache_of(vp);
  const off_t bs = c->bs;
  const off_t start = uio->offset();
  const off_t end = std::min<off_t>(start + static_cast<off_t>(uio->resid()), newEOF);
  off_t zstart = (ioflag & IO_HEADZEROFILL) ? std::min(headOff, start) : start;
  off_t zend = (ioflag & IO_TAILZEROFILL) ? std::max(tailOff, end) : end;
  if (zend <= zstart || start < 0) return 0;
  const daddr64_t b0 = zstart >> c->bshift, b1 = (zend + bs - 1) >> c->bshift;
  buf* small[16];
  std::vector<buf*> big;
  buf** bps = small;
  const size_t maxrun = std::min<size_t>(c->max_io_blocks, static_cast<size_t>(b1 - b0));
  if (maxrun > 16) {
    try {
      big.resize(maxrun);
    } catch (const std::bad_alloc&) {
      return ENOMEM;
    }
    bps = big.data();
  }
  const bool writebehind = !(ioflag & (IO_SYNC | IO_NOCACHE));
  int err = 0;
  for (daddr64_t lb = b0; lb < b1;) {
    if ((err = dirty_throttle_policy(c, vp))) break;
    size_t n = getblk_run(c, vp, lb, std::min<size_t>(maxrun, static_cast<size_t>(b1 - lb)), 0, bps);
    if (n == 0) {
      std::lock_guard g(c->mtx);
      err = c->nfailed >= c->highwater ? EIO : ENOMEM;  // see getblk_run
      break;
    }
    size_t copied = 0;
    err = fill_run(c, vp, uio, bps, n, lb, start, end, zstart, zend, oldEOF, newEOF, &copied);
    wcluster push[4];
    size_t npush = 0;
    {
      std::lock_guard g(c->mtx);
      vnode_bufs* vb = vp->v_bufs;  // created by getblk_run; freed only by reclaim, which cannot run now
      for (size_t i = 0; i < n; i++) {
        buf* bp = bps[i];
        if (i < copied) {
          markdirty_locked(c, bp);
          bp->b_flags.fetch_or(B_DONE, std::memory_order_relaxed);
        }
        brelse_locked(c, bp);
        if (i < copied && writebehind) {
          wcluster p{0, 0};
          if (writebehind_policy_locked(c, vb, lb + static_cast<daddr64_t>(i), &p)) {
            // More than 4 full clusters from one run of <= max_io_blocks cannot happen; were it to, the
            // extra one would only lose its early push: its buffers stay dirty for the next push.
            if (npush < 4) push[npush++] = p;
          }
        }
      }
    }
    for (size_t k = 0; k < npush; k++) {
      c->n.cluster_pushes.fetch_add(1, std::memory_order_relaxed);
      push_range(c, vp, push[k].start, push[k].end);
    }
    if (err) break;
    lb += static_cast<daddr64_t>(n);
  }
  if (ioflag & (IO_SYNC | IO_NOCACHE)) {
    int e = cluster_push(vp, IO_SYNC);
    if (!err) err = e;
  }
  if (ioflag & IO_NOCACHE) {  // written through: do not keep the clean copies
    std::lock_guard g(c->mtx);
    for (daddr64_t lb = b0; lb < b1; lb++) {
      buf* bp = incore_locked(c, vp, lb);
      if (bp && !has(bp, B_DELWRI) && bbusy(bp)) {
        invalidate_locked(c, bp);
        brelse_locked(c, bp);
      }
    }
  }
  return err;
}

int cluster_push(vnode* vp, int flags) {
  bufcache* c = cache_of(vp);
  {
    std::lock_guard g(c->mtx);
    vnode_bufs* vb = vp->v_bufs;
    if (vb == nullptr) return 0;
    if (vb->sparse) c->n.sparse_pushes.fetch_add(1, std::memory_order_relaxed);
    else if (vb->ncl) c->n.cluster_pushes.fetch_add(1, std::memory_order_relaxed);
    vb->sparse = false;  // everything dirty is written now: back to write-behind clusters
    vb->ncl = 0;
  }
  if (!(flags & IO_SYNC)) return push_vnode(c, vp, push_wait::No);
  return buf_flushdirtyblks(vp, MNT_WAIT);
}

}  // namespace vnopfs

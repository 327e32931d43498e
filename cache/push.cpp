// push.cpp: turning runs of busy buffers into as few device I/Os as the block mapping allows, and pushing a
// vnode's dirty buffers in logical order (the one write path under cluster_push, buf_flushdirtyblks, the
// flusher and memory pressure).
#include <algorithm>
#include <cstring>
#include <new>

#include "cache/buf_internal.h"

namespace vnopfs {

static vfs_context* kctx() { return const_cast<vfs_context*>(&vfs_context::kernel()); }

static void hdr_put(bufcache* c, buf* h) {
  std::lock_guard g(c->mtx);
  hdr_put_locked(c, h);
}

// A write that cannot be mapped fails like a device error: the data stays dirty and the vnode records EIO.
static void fail_write(buf* bp, int err) {
  bufcache* c = bp->b_cache;
  {
    std::lock_guard g(c->mtx);
    markclean_locked(c, bp);
    bp->b_vp->v_bufs->numoutput++;
  }
  bp->b_flags.fetch_or(B_ASYNC, std::memory_order_relaxed);
  bp->b_flags.fetch_and(~(B_READ | B_DONE), std::memory_order_relaxed);
  buf_seterror(bp, err);
  buf_biodone(bp);
}

// Buffers filled by cluster_write arrive mapped (b_blkno set from the run's one VNOP_BLOCKMAP); only the
// rest (holes at fill time, buffers dirtied through buf_bdwrite) are mapped here, a run at a time.
void write_run(bufcache* c, vnode* vp, buf** bps, size_t n) {
  const bool devv = vp->v_flag & VSYSTEM;
  vnode_bufs* vb = vp->v_bufs;
  size_t i = 0;
  while (i < n) {
    if (!devv && bps[i]->b_blkno == BUF_UNMAPPED) {
      daddr64_t bpn = -1;
      size_t run = 0;
      int err = VNOP_BLOCKMAP(vp, static_cast<off_t>(bps[i]->b_lblkno) << c->bshift, (n - i) << c->bshift, &bpn,
                              &run, VNODE_WRITE, kctx());
      if (err || bpn < 0 || run < c->bs) {
        VLOG_ERR("cache: blockmap for write of block %lld of vnode %llu: error %d bpn %lld run %zu",
                 static_cast<long long>(bps[i]->b_lblkno), static_cast<unsigned long long>(vp->v_id), err,
                 static_cast<long long>(bpn), run);
        fail_write(bps[i], err ? err : EIO);
        i++;
        continue;
      }
      size_t nb = std::min(run >> c->bshift, n - i);
      for (size_t k = 0; k < nb && bps[i + k]->b_blkno == BUF_UNMAPPED; k++)
        bps[i + k]->b_blkno = bpn + static_cast<daddr64_t>(k);
    }
    size_t j = i + 1;
    while (j < n && j - i < c->max_io_blocks &&
           bps[j]->b_blkno == bps[i]->b_blkno + static_cast<daddr64_t>(j - i))
      j++;
    vnode_async_throttle(c, vb);
    if (j - i == 1) {
      bps[i]->b_flags.fetch_or(B_ASYNC, std::memory_order_relaxed);
      buf_startwrite(bps[i]);
    } else {
      buf* h = hdr_get(c, vp, B_ASYNC | (devv ? uint32_t{B_META} : 0u));
      h->b_members.assign(bps + i, bps + j);
      h->b_lblkno = bps[i]->b_lblkno;
      h->b_blkno = bps[i]->b_blkno;
      h->b_bcount = static_cast<uint32_t>((j - i) << c->bshift);
      buf_startwrite(h);
    }
    i = j;
  }
}

static bool in_class(const buf* bp, push_class which) {
  if (which == push_class::All) return true;
  return ((bp->b_flags.load(std::memory_order_relaxed) & B_EARLY) != 0) == (which == push_class::Early);
}

int read_run(bufcache* c, vnode* vp, buf** bps, size_t n, bool async, bool readahead) {
  const bool devv = vp->v_flag & VSYSTEM;
  buf* pending[64];
  size_t npending = 0;
  int first_err = 0;
  auto finish_pending = [&] {
    for (size_t k = 0; k < npending; k++) {
      int e = buf_biowait(pending[k]);
      if (e && !first_err) first_err = e;
      hdr_put(c, pending[k]);
    }
    npending = 0;
  };
  auto fail_from = [&](size_t i, int err) {
    for (size_t k = i; k < n; k++) {
      buf_seterror(bps[k], err);
      bps[k]->b_flags.fetch_or(B_INVAL | B_DONE, std::memory_order_relaxed);
      if (async) buf_brelse(BufRef(bps[k]));
    }
    if (!first_err) first_err = err;
  };
  size_t i = 0;
  while (i < n) {
    daddr64_t bpn;
    size_t run;
    if (devv) {
      bpn = bps[i]->b_lblkno;
      run = (n - i) << c->bshift;
    } else {
      int err = VNOP_BLOCKMAP(vp, static_cast<off_t>(bps[i]->b_lblkno) << c->bshift, (n - i) << c->bshift, &bpn,
                              &run, VNODE_READ, kctx());
      if (err || run < c->bs) {
        fail_from(i, err ? err : EIO);
        break;
      }
    }
    size_t nb = std::min({run >> c->bshift, n - i, static_cast<size_t>(c->max_io_blocks)});
    if (bpn < 0) {  // a hole reads as zeros, without I/O
      for (size_t k = i; k < i + nb; k++) {
        buf_clear(bps[k]);
        bps[k]->b_flags.fetch_or(B_DONE, std::memory_order_relaxed);
        if (async) buf_brelse(BufRef(bps[k]));
      }
      i += nb;
      continue;
    }
    if (!async && npending == 64) finish_pending();
    buf* h = hdr_get(c, vp, B_READ | (async ? uint32_t{B_ASYNC} : 0u) | (devv ? uint32_t{B_META} : 0u));
    if (readahead) h->b_lflags.fetch_or(BL_RAHEAD, std::memory_order_relaxed);
    for (size_t k = i; k < i + nb; k++) {
      bps[k]->b_blkno = bpn + static_cast<daddr64_t>(k - i);
      bps[k]->b_flags.fetch_and(~(B_DONE | B_ERROR), std::memory_order_relaxed);
      bps[k]->b_error = 0;
    }
    h->b_members.assign(bps + i, bps + i + nb);
    h->b_lblkno = bps[i]->b_lblkno;
    h->b_blkno = bpn;
    h->b_bcount = static_cast<uint32_t>(nb << c->bshift);
    if (!async) pending[npending++] = h;
    VNOP_STRATEGY(h);
    i += nb;
  }
  finish_pending();
  return first_err;
}

int push_vnode(bufcache* c, vnode* vp, push_wait wait, push_class which, bool* found, bool* incomplete) {
  const bool w = wait == push_wait::Yes;
  struct item {
    daddr64_t lblkno;
    buf* bp;
  };
  std::vector<item> list;
  std::vector<buf*> run;
  std::unique_lock g(c->mtx);
  vnode_bufs* vb = vp->v_bufs;
  if (found) *found = false;
  if (incomplete) *incomplete = false;
  if (vb == nullptr) return 0;
  while (vb->pushing) {
    if (!w) {  // an async push of a vnode already being pushed adds nothing
      if (found) *found = true;  // the other push may be writing buffers of the class
      if (incomplete) *incomplete = true;  // its snapshot may predate buffers dirty now
      return 0;
    }
    vb_wait_locked(vb, g);
  }
  vb->pushing = true;
  const uint64_t seq0 = c->dirty_seq;
  int err = 0;
  try {
    list.reserve(vb->dirty.size());
    run.reserve(c->max_io_blocks);
    for (buf& b : vb->dirty)
      if (b.b_dirtyseq <= seq0 && in_class(&b, which)) list.push_back({b.b_lblkno, &b});
  } catch (const std::bad_alloc&) {
    err = ENOMEM;
    list.clear();
  }
  if (found) *found = err != 0 || !list.empty();
  // Sorted without the cache mutex: the snapshot holds the block numbers (buffers are type-stable, and
  // each one is re-checked below before it is taken).
  g.unlock();
  std::sort(list.begin(), list.end(), [](const item& a, const item& b) { return a.lblkno < b.lblkno; });
  g.lock();
  auto flush_run = [&] {
    if (run.empty()) return;
    g.unlock();
    write_run(c, vp, run.data(), run.size());
    run.clear();
    g.lock();
  };
  for (size_t i = 0; i < list.size();) {
    buf* bp = list[i].bp;
    // Still this vnode's dirty data from before the call? (It may have been written or reused meanwhile.)
    if (bp->b_vb != vb || bp->b_lblkno != list[i].lblkno || !(bp->b_flags.load(std::memory_order_relaxed) & B_DELWRI) ||
        bp->b_dirtyseq > seq0) {
      i++;
      continue;
    }
    // Identity and dirtiness checked under [M] hold until [M] is dropped; busy is the one thing that may
    // change meanwhile (a lock-free hit), hence the CAS.
    if (bp->b_lflags.load(std::memory_order_relaxed) & BL_BUSY) {
      if (!w) {
        if (incomplete) *incomplete = true;
        i++;
        continue;
      }
      if (!run.empty()) {
        flush_run();  // never sleep holding a run
        continue;     // the lock was dropped: look at it again
      }
      g.unlock();
      buf_wait_unbusy(c, bp);
      g.lock();
      continue;  // look at it again
    }
    if (!run.empty() && (run.back()->b_lblkno + 1 != bp->b_lblkno || run.size() >= c->max_io_blocks)) {
      flush_run();  // the lock was dropped: bp may be busy, written or reused by now
      continue;     // look at it again
    }
    if (!bbusy(bp)) continue;  // a hit took it since the check: look again
    markclean_locked(c, bp);
    run.push_back(bp);
    i++;
  }
  flush_run();
  if (w)
    while (vb->numoutput > 0) vb_wait_locked(vb, g);
  vb->pushing = false;
  vb_notify_locked(vb);
  return err;
}

}  // namespace vnopfs

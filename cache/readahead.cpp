// readahead.cpp: the read side of the cluster layer, after XNU cluster_read_copy and cluster_read_ahead.
#include <algorithm>
#include <cstring>

#include "cache/buf_internal.h"
#include "vnopfs/cluster.h"

namespace vnopfs {

static inline bool has(const buf* bp, uint32_t f) { return (bp->b_flags.load(std::memory_order_relaxed) & f) != 0; }

// Takes busy buffers for the blocks [from, to) that are not in core, in runs, without ever sleeping for a
// buffer (a run stops at a block in core or when no clean buffer is free), and reads each run async.
static uint64_t readahead_issue(bufcache* c, vnode* vp, daddr64_t from, daddr64_t to) {
  std::vector<buf*> run;
  try {
    run.reserve(c->max_io_blocks);
  } catch (const std::bad_alloc&) {
    return 0;
  }
  uint64_t issued = 0;
  daddr64_t lb = from;
  while (lb < to) {
    {
      std::lock_guard g(c->mtx);
      for (; lb < to && run.size() < c->max_io_blocks; lb++) {
        bool found;
        buf* bp = getblk_nowait_locked(c, vp, lb, &found);
        if (found) {
          if (bp) brelse_locked(c, bp);
          lb++;
          break;
        }
        if (bp == nullptr) {  // no clean buffer free: read-ahead is optional
          lb = to;
          break;
        }
        run.push_back(bp);
      }
    }
    if (!run.empty()) {
      issued += run.size();
      read_run(c, vp, run.data(), run.size(), true, true);
      run.clear();
    }
  }
  return issued;
}

// Read-ahead policy: a read that starts where the previous one ended (or in its last block) is sequential
// and doubles the window (from the request size, at least 2 blocks, up to readahead_max_bytes); anything
// else is random: the window closes and nothing is read ahead. A new read-ahead starts only when less than
// half a window is left ahead of the reader.
void readahead_policy(bufcache* c, vnode* vp, daddr64_t first, daddr64_t last, off_t filesize, int ioflag) {
  if (ioflag & (IO_RAOFF | IO_NOCACHE)) return;
  daddr64_t from, to;
  {
    std::lock_guard g(c->mtx);
    vnode_bufs* vb = vp->v_bufs;
    if (vb == nullptr) return;
    bool seq = first == vb->ra_last + 1 || first == vb->ra_last;
    vb->ra_last = last;
    if (!seq) {
      vb->ra_window = 0;
      vb->ra_next = last + 1;
      c->n.ra_random.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    c->n.ra_sequential.fetch_add(1, std::memory_order_relaxed);
    uint32_t maxw = std::max<uint32_t>(1, c->cfg.readahead_max_bytes >> c->bshift);
    uint32_t req = static_cast<uint32_t>(last - first + 1);
    vb->ra_window = vb->ra_window ? std::min(vb->ra_window * 2, maxw) : std::min(std::max(req, 2u), maxw);
    if (vb->ra_next <= last) vb->ra_next = last + 1;
    daddr64_t eofblk = (std::min(filesize, vb->size) + c->bs - 1) >> c->bshift;
    daddr64_t target = std::min<daddr64_t>(last + 1 + vb->ra_window, eofblk);
    if (vb->ra_next >= target || vb->ra_next - (last + 1) > static_cast<daddr64_t>(vb->ra_window / 2)) {
      c->n.ra_skipped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    from = vb->ra_next;
    to = target;
    vb->ra_next = target;
  }
  uint64_t n = readahead_issue(c, vp, from, to);
  c->n.readahead_issued.fetch_add(n, std::memory_order_relaxed);
}

static void copy_out(bufcache* c, buf* bp, uio* uio, off_t end) {
  off_t bstart = bp->b_lblkno << c->bshift;
  off_t from = uio->offset();
  off_t to = std::min<off_t>(end, bstart + c->bs);
  uiomove(bp->b_datap + (from - bstart), static_cast<size_t>(to - from), uio);
}

int cluster_read(vnode* vp, uio* uio, off_t filesize, int ioflag) {
  bufcache* c = cache_of(vp);
  if (uio->resid() == 0 || uio->offset() >= filesize || uio->offset() < 0) return 0;
  const off_t end = std::min<off_t>(uio->offset() + static_cast<off_t>(uio->resid()), filesize);
  const daddr64_t first = uio->offset() >> c->bshift, last = (end - 1) >> c->bshift;
  std::vector<buf*> run;
  try {
    run.reserve(c->max_io_blocks);
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
  int err = 0;
  daddr64_t lb = first;
  while (lb <= last) {
    // Hits: the valid blocks from lb on, taken in one pass, copied with no lock, released in one pass.
    run.resize(std::min<size_t>(c->max_io_blocks, static_cast<size_t>(last - lb + 1)));
    size_t k = getblk_run(c, vp, lb, run.size(), RUN_ONLYVALID, run.data());
    if (k > 0) {
      for (size_t i = 0; i < k; i++) copy_out(c, run[i], uio, end);
      release_run(c, run.data(), k, false);
      lb += static_cast<daddr64_t>(k);
      continue;
    }
    run.clear();
    // A miss (or a busy block): the whole missing run of this request (up to max_io_blocks) in one read per
    // physical run.
    BufRef bp = buf_getblk(vp, lb, BLK_READ);
    if (!bp) return ENOMEM;
    if (has(bp.get(), B_DONE) || has(bp.get(), B_DELWRI)) {  // someone read or wrote it meanwhile
      copy_out(c, bp.get(), uio, end);
      lb++;
      continue;
    }
    run.push_back(bp.release());
    {
      std::lock_guard g(c->mtx);
      for (daddr64_t k2 = lb + 1; k2 <= last && run.size() < c->max_io_blocks; k2++) {
        bool found;
        buf* b = getblk_nowait_locked(c, vp, k2, &found);
        if (found && b) brelse_locked(c, b);
        if (found || b == nullptr) break;
        run.push_back(b);
      }
    }
    err = read_run(c, vp, run.data(), run.size(), false, false);
    for (buf* b : run) {
      if (!err) {
        copy_out(c, b, uio, end);
        if (ioflag & IO_NOCACHE) buf_setflags(b, B_NOCACHE);
      }
    }
    release_run(c, run.data(), run.size(), false);
    if (err) return err;
    lb += static_cast<daddr64_t>(run.size());
  }
  readahead_policy(c, vp, first, last, filesize, ioflag);
  return 0;
}

}  // namespace vnopfs

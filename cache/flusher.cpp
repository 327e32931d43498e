// flusher.cpp: the update daemon, one thread per cache. Every flusher_period_ms (or when woken by a
// throttled writer) it writes delayed buffers older than flush_age_ms, and past the dirty high-water mark
// pushes early down to the low-water mark. File data goes first and is waited for before device-vnode
// metadata is pushed: data before the pointers to it (docs/design.md, "Durability without a journal").
#include <algorithm>
#include <vector>

#include "cache/buf_internal.h"

namespace vnopfs {

namespace {

enum class flush_reason { Age, Highwater, Throttle };

// Collects the vnodes to push, file vnodes with an iocount taken (never one being reclaimed or
// terminating), and whether the device vnode is due. Looks only at vnodes with dirty buffers, and at the
// front of each one's dirty list (its oldest delayed write): no buffer list is scanned. L.
bool collect_locked(bufcache* c, flush_reason why, std::vector<vnode*>* vps) {
  bool dev_due = false;
  const uint64_t cutoff = now_ms() - std::min<uint64_t>(now_ms(), c->cfg.flush_age_ms);
  auto due = [&](vnode_bufs& vb) {
    if (vb.dirty.empty() || vb.reclaiming) return false;
    return why != flush_reason::Age || vb.dirty.front().b_timestamp_ms <= cutoff;
  };
  for (vnode_bufs& vb : c->dirty_vnodes) {
    if (!due(vb)) continue;
    if (vb.vp == c->devvp) {
      dev_due = true;
      continue;
    }
    if (vnode_tryget_locked(vb.vp)) vps->push_back(vb.vp);  // capacity reserved: cannot throw
  }
  return dev_due;
}

uint64_t dirty_now(bufcache* c) {
  std::lock_guard g(c->mtx);
  return c->ndirty.load(std::memory_order_relaxed);
}

// One flush pass for one reason. The early pushes stop at the low-water mark (Highwater) or when nothing is
// dirty any more (Throttle: a writer is waiting for a clean buffer).
void flush_pass(bufcache* c, flush_reason why) {
  std::vector<vnode*> vps;
  bool dev_due;
  {
    std::lock_guard g(c->mtx);
    try {
      vps.reserve(c->dirty_vnodes.size());
    } catch (const std::bad_alloc&) {
      return;  // the next pass tries again
    }
    dev_due = collect_locked(c, why, &vps);
  }
  const uint64_t target = why == flush_reason::Highwater ? c->lowwater : 0;
  auto& counter = why == flush_reason::Age ? c->n.flush_age
                  : why == flush_reason::Highwater ? c->n.flush_highwater : c->n.flush_throttle;
  size_t i = 0;
  for (; i < vps.size(); i++) {
    if (why != flush_reason::Age && dirty_now(c) <= target) break;
    counter.fetch_add(1, std::memory_order_relaxed);
    c->n.flusher_writes.fetch_add(1, std::memory_order_relaxed);
    push_vnode(c, vps[i], push_wait::No);
  }
  // Data must be on the device before metadata that points to it goes out.
  for (vnode* vp : vps) {
    buf_vnode_waitforwrites(vp);
    vnode_put(vp);
  }
  if (dev_due && (why == flush_reason::Age || dirty_now(c) > target)) {
    counter.fetch_add(1, std::memory_order_relaxed);
    c->n.flusher_writes.fetch_add(1, std::memory_order_relaxed);
    push_vnode(c, c->devvp, push_wait::No);
  }
}

void flusher_main(bufcache* c) {
  std::unique_lock g(c->mtx);
  while (!c->flusher_stop) {
    c->flusher_cv.wait_for(g, std::chrono::milliseconds(c->cfg.flusher_period_ms),
                           [&] { return c->flusher_stop || c->flusher_kick; });
    if (c->flusher_stop) break;
    bool kicked = std::exchange(c->flusher_kick, false);
    bool high = c->ndirty.load(std::memory_order_relaxed) > c->highwater;
    c->n.flusher_runs.fetch_add(1, std::memory_order_relaxed);
    g.unlock();
    flush_pass(c, flush_reason::Age);
    if (kicked) flush_pass(c, flush_reason::Throttle);
    else if (high) flush_pass(c, flush_reason::Highwater);
    g.lock();
  }
}

}  // namespace

void flusher_start(bufcache* c) { c->flusher = std::thread(flusher_main, c); }

void flusher_stop(bufcache* c) {
  {
    std::lock_guard g(c->mtx);
    c->flusher_stop = true;
    c->flusher_cv.notify_all();
  }
  if (c->flusher.joinable()) c->flusher.join();
}

void flusher_wake_locked(bufcache* c) {
  if (c->flusher_kick) return;
  c->flusher_kick = true;
  c->flusher_cv.notify_one();
}

}  // namespace vnopfs

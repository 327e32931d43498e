// flusher.cpp: the update daemon, one thread per cache. Every flusher_period_ms (or when woken by a
// throttled writer) it writes delayed buffers older than flush_age_ms, and past the dirty high-water mark
// pushes early down to the low-water mark. Each pass is an ordered flush (docs/durability.md, "Ordering"):
// file data, waited for; a device flush; the device vnode's B_EARLY metadata (allocation bitmaps), waited
// for; a device flush; then the rest of the metadata (inode tables, indirect and directory blocks). So a
// pointer, an entry or an inode never becomes stable before the data, bitmaps and synchronous writes it
// depends on. Device-vnode metadata is written by nothing else in the cache (buf_bdwrite never starts it
// early), so eviction and throttled pushes cannot reorder it.
#include <algorithm>
#include <vector>

#include "cache/buf_internal.h"

namespace vnopfs {

namespace {

enum class flush_reason { Age, Highwater, Throttle };

// Collects the vnodes to push, file vnodes with an iocount taken (never one being reclaimed or
// terminating), and whether the device vnode is due. When it is, every file vnode with dirty data is
// taken, due or not: the metadata about to go out may point at any of it. Looks only at vnodes with dirty
// buffers, and at the front of each one's dirty list (its oldest delayed write): no buffer list is
// scanned. L.
bool due_locked(bufcache* c, flush_reason why, vnode_bufs& vb) {
  const uint64_t cutoff = now_ms() - std::min<uint64_t>(now_ms(), c->cfg.flush_age_ms);
  if (vb.dirty.empty() || vb.reclaiming) return false;
  return why != flush_reason::Age || vb.dirty.front().b_timestamp_ms <= cutoff;
}

// Whether this pass will write the device vnode's metadata. L.
bool dev_due_locked(bufcache* c, flush_reason why) {
  vnode_bufs* dvb = c->devvp->v_bufs;
  return dvb != nullptr && due_locked(c, why, *dvb);
}

bool collect_locked(bufcache* c, flush_reason why, std::vector<taken_vnode>* vps) {
  auto due = [&](vnode_bufs& vb) { return due_locked(c, why, vb); };
  const bool dev_due = dev_due_locked(c, why);
  for (vnode_bufs& vb : c->dirty_vnodes) {
    if (vb.vp == c->devvp || vb.dirty.empty() || vb.reclaiming) continue;
    if (!dev_due && !due(vb)) continue;
    // An idle vnode (kept by its failed writes) is taken with a hold: retried here, never reclaimed here.
    if (vnode_take how = vnode_tryget_locked(vb.vp); how != vnode_take::None)
      vps->push_back({vb.vp, how});  // capacity reserved: cannot throw
  }
  return dev_due;
}

// A device flush: every write completed before it is stable when it returns. False when it failed (the
// metadata then stays dirty for a later pass: writing it would break the order).
bool device_flush(bufcache* c) {
  if (c->device == nullptr) return true;
  int err = dev::dev_sync_io(*c->device, dev::io_op::flush, 0, nullptr, 0);
  if (err) VLOG_ERR("cache: flusher: device flush failed (error %d): metadata left for the next pass", err);
  return err == 0;
}

uint64_t dirty_now(bufcache* c) {
  std::lock_guard g(c->mtx);
  return c->ndirty.load(std::memory_order_relaxed);
}

// One flush pass for one reason. The early pushes stop at the low-water mark (Highwater) or when nothing is
// dirty any more (Throttle: a writer is waiting for a clean buffer).
void flush_pass(bufcache* c, flush_reason why) {
  // The metadata step writes pointers: from before the data step's collection until they are issued, no
  // VNOP_WRITE may be between setting a pointer and dirtying (or writing) its data (buf.h,
  // buf_alloc_hold), so the gate is taken before the vnodes are collected. An Age pass that cannot have it
  // within the timeout leaves the metadata for the next pass; a pressure pass (a writer waits for clean
  // buffers, and may be one holding the gate) writes it anyway, and counts it.
  struct gate_release {
    alloc_gate* held = nullptr;
    ~gate_release() {
      if (held) held->unlock_exclusive();
    }
  } gate;
  bool want_meta;
  {
    std::lock_guard g(c->mtx);
    want_meta = dev_due_locked(c, why);
  }
  if (want_meta && c->gate.lock_exclusive(std::chrono::milliseconds(200))) gate.held = &c->gate;
  std::vector<taken_vnode> vps;
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
  if (dev_due && gate.held == nullptr) {
    if (why == flush_reason::Age || !want_meta) {
      if (want_meta) c->n.meta_gate_skipped.fetch_add(1, std::memory_order_relaxed);
      dev_due = false;  // due only since the first look, or the gate was busy: the next pass
    } else {
      c->n.meta_gate_unordered.fetch_add(1, std::memory_order_relaxed);
    }
  }
  const uint64_t target = why == flush_reason::Highwater ? c->lowwater : 0;
  auto& counter = why == flush_reason::Age ? c->n.flush_age
                  : why == flush_reason::Highwater ? c->n.flush_highwater : c->n.flush_throttle;
  bool all_data = true;
  bool data_left = false;  // a dirty data buffer this step could not write (busy, or another push's)
  for (size_t i = 0; i < vps.size(); i++) {
    if (why != flush_reason::Age && dirty_now(c) <= target) {
      all_data = false;
      break;
    }
    counter.fetch_add(1, std::memory_order_relaxed);
    c->n.flusher_writes.fetch_add(1, std::memory_order_relaxed);
    bool left = false;
    push_vnode(c, vps[i].vp, push_wait::No, push_class::All, nullptr, &left);
    data_left |= left;
  }
  // Never push_wait::Yes here: a getblk caller waiting for the flusher may hold busy buffers of any
  // vnode. A busy buffer skipped stays dirty for a later pass (after more flushes: never out of order).
  for (auto [vp, how] : vps) {
    buf_vnode_waitforwrites(vp);
    vnode_untake(vp, how);
  }
  if (!dev_due || !all_data || (why != flush_reason::Age && dirty_now(c) <= target)) return;
  // A data buffer left dirty (busy in a writer's copy, or left to another push) may be pointed at by the
  // metadata: an age pass leaves the metadata for the next pass; a pressure pass writes it, counted.
  if (data_left) {
    if (why == flush_reason::Age) {
      c->n.meta_data_left.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    c->n.meta_gate_unordered.fetch_add(1, std::memory_order_relaxed);
  }
  counter.fetch_add(1, std::memory_order_relaxed);
  c->n.flusher_writes.fetch_add(1, std::memory_order_relaxed);
  // The flush covers the data above and every synchronous write the filesystem completed before it (an
  // inode before the entry naming it, cleared pointers before the frees): none of the delayed metadata
  // below may become stable without them.
  if (!device_flush(c)) return;
  // push_vnode finds the B_EARLY buffers in the snapshot it takes anyway: no second scan of the device
  // vnode's dirty list under the cache mutex.
  bool early = false;
  push_vnode(c, c->devvp, push_wait::No, push_class::Early, &early);
  if (early) {
    buf_vnode_waitforwrites(c->devvp);
    if (!device_flush(c)) return;
  }
  push_vnode(c, c->devvp, push_wait::No, push_class::Late);
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

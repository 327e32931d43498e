// buf.cpp: the buffer cache, after XNU bsd/vfs/vfs_bio.c. See buf.h for the contracts and buf_internal.h
// for the locking rules.
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>

#include <sys/mman.h>

#include "cache/buf_internal.h"

namespace vnopfs {

uint64_t now_ms() {
  using namespace std::chrono;
  return static_cast<uint64_t>(duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count());
}

int size_bucket(uint32_t blocks) {
  int b = 0;
  while (blocks > 1 && b < bufcache_stats::kSizeBuckets - 1) {
    blocks >>= 1;
    b++;
  }
  return b;
}

// ---- accessors
char* buf_dataptr(const buf* bp) { return bp->b_datap; }
uint32_t buf_count(const buf* bp) { return bp->b_bcount; }
daddr64_t buf_lblkno(const buf* bp) { return bp->b_lblkno; }
daddr64_t buf_blkno(const buf* bp) { return bp->b_blkno; }
void buf_setblkno(buf* bp, daddr64_t blkno) { bp->b_blkno = blkno; }
uint32_t buf_flags(const buf* bp) { return bp->b_flags.load(std::memory_order_relaxed); }
void buf_setflags(buf* bp, uint32_t flags) {
  bp->b_flags.fetch_or(flags & (B_NOCACHE | B_AGE | B_FUA | B_META | B_EARLY), std::memory_order_relaxed);
}
void buf_clearflags(buf* bp, uint32_t flags) {
  bp->b_flags.fetch_and(~(flags & (B_NOCACHE | B_AGE | B_FUA | B_META | B_EARLY)), std::memory_order_relaxed);
}
int buf_error(const buf* bp) { return bp->b_error; }
void buf_seterror(buf* bp, int error) {
  bp->b_error = error;
  if (error) bp->b_flags.fetch_or(B_ERROR, std::memory_order_relaxed);
  else bp->b_flags.fetch_and(~B_ERROR, std::memory_order_relaxed);
}
void buf_clear(buf* bp) { std::memset(bp->b_datap, 0, bp->b_bcount); }
void* buf_fsprivate(const buf* bp) { return bp->b_fsprivate; }
void buf_setfsprivate(buf* bp, void* p) { bp->b_fsprivate = p; }
vnode* buf_vnode(const buf* bp) { return bp->b_vp; }

static inline bool has(const buf* bp, uint32_t f) { return (bp->b_flags.load(std::memory_order_relaxed) & f) != 0; }
static inline void setf(buf* bp, uint32_t f) { bp->b_flags.fetch_or(f, std::memory_order_relaxed); }
static inline void clrf(buf* bp, uint32_t f) { bp->b_flags.fetch_and(~f, std::memory_order_relaxed); }

// ---- BufRef
BufRef& BufRef::operator=(BufRef&& o) noexcept {
  if (this != &o) {
    if (bp_) buf_brelse(BufRef(std::exchange(bp_, nullptr)));
    bp_ = std::exchange(o.bp_, nullptr);
  }
  return *this;
}
BufRef::~BufRef() {
  if (bp_) buf_brelse(BufRef(std::exchange(bp_, nullptr)));
}

// ---- creation and teardown
bufcache::~bufcache() {
  if (pool_mapped) ::munmap(pool, pool_bytes);
  else std::free(pool);
}

// The buffer memory: one mapping with transparent huge pages advised, so first use of the pool faults 2 MiB
// at a time instead of 4 KiB (first-touch faults were a quarter of the CPU of a cold cachebench run). Falls
// back to aligned_alloc. Either way 4 KiB aligned (O_DIRECT devices) and touched only when used.
static bool pool_alloc(bufcache* c, size_t bytes) {
  c->pool_bytes = bytes;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p != MAP_FAILED) {
    (void)::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: fine if refused
    c->pool = static_cast<char*>(p);
    c->pool_mapped = true;
    return true;
  }
  c->pool = static_cast<char*>(std::aligned_alloc(4096, bytes));
  return c->pool != nullptr;
}

static bool pow2(uint32_t x) { return x && !(x & (x - 1)); }

int bufcache_create(mount* mp, dev::device* device, const bufcache_config& cfg) {
  if (!pow2(cfg.block_size) || cfg.block_size < 512 || cfg.block_size > 65536) return EINVAL;
  if (cfg.cache_bytes < (1u << 20) || cfg.cache_bytes / cfg.block_size < 64) return EINVAL;
  if (cfg.max_io_bytes < cfg.block_size || cfg.clusters_per_vnode == 0 ||
      cfg.clusters_per_vnode > kMaxClustersPerVnode || cfg.max_async_per_vnode == 0 ||
      cfg.dirty_lowwater_pct > cfg.dirty_highwater_pct || cfg.dirty_highwater_pct > 100)
    return EINVAL;
  try {
    auto c = std::make_unique<bufcache>();
    c->mp = mp;
    c->device = device;
    c->cfg = cfg;
    c->bs = cfg.block_size;
    while ((1u << c->bshift) < c->bs) c->bshift++;
    c->nbufs = cfg.cache_bytes / cfg.block_size;
    c->max_io_blocks = std::max<uint32_t>(1, cfg.max_io_bytes / cfg.block_size);
    c->highwater = static_cast<uint32_t>(c->nbufs * cfg.dirty_highwater_pct / 100);
    c->lowwater = static_cast<uint32_t>(c->nbufs * cfg.dirty_lowwater_pct / 100);
    if (!pool_alloc(c.get(), c->nbufs * c->bs)) return ENOMEM;
    c->bufs = std::make_unique<buf[]>(c->nbufs);
    for (size_t i = 0; i < c->nbufs; i++) {
      buf* bp = &c->bufs[i];
      bp->b_datap = c->pool + i * c->bs;
      bp->b_bcount = c->bs;
      bp->b_cache = c.get();
      bp->b_lflags.store(bl_q(BQ_EMPTY), std::memory_order_relaxed);
      c->q[BQ_EMPTY].push_back(*bp);
    }
    // Cluster headers: enough for every vnode's async window plus readers; fixed, like XNU's iobufs.
    c->nhdrs = 128;
    c->hdrs = std::make_unique<buf[]>(c->nhdrs);
    for (size_t i = 0; i < c->nhdrs; i++) {
      buf* h = &c->hdrs[i];
      h->b_cache = c.get();
      h->b_header = true;
      h->b_members.reserve(c->max_io_blocks);
      h->b_io.iov.reserve(c->max_io_blocks);
      c->hdr_free.push_back(*h);
    }
    size_t nb = 8;  // buckets per shard: about one per buffer in all
    while (nb * kHashShards < c->nbufs) nb <<= 1;
    for (auto& sh : c->shards) {
      sh.buckets = std::make_unique<buf_hash::bucket_type[]>(nb);
      sh.hash = std::make_unique<buf_hash>(buf_hash::bucket_traits(sh.buckets.get(), nb));
    }
    mp->mnt_cache = c.get();
    if (int err = spec_create_devvp(c.get())) {
      mp->mnt_cache = nullptr;
      return err;
    }
    mp->mnt_devvp = c->devvp;
    flusher_start(c.get());
    c.release();
    return 0;
  } catch (const std::bad_alloc&) {
    mp->mnt_cache = nullptr;
    return ENOMEM;
  } catch (const std::system_error&) {
    mp->mnt_cache = nullptr;
    return ENOMEM;
  }
}

int bufcache_destroy(mount* mp) {
  bufcache* c = mp->mnt_cache;
  if (c == nullptr) return 0;
  int first = 0;
  // Data before the metadata that points to it (docs/design.md, "Durability without a journal"), then the device vnode.
  std::vector<taken_vnode> vps;
  {
    std::lock_guard g(c->mtx);
    for (auto& vb : c->vnodes) {
      if (vb.vp == c->devvp || vb.dirty.empty()) continue;
      if (vnode_take how = vnode_tryget_locked(vb.vp); how != vnode_take::None) vps.push_back({vb.vp, how});
    }
  }
  for (auto [vp, how] : vps) {
    int e = buf_flushdirtyblks(vp, MNT_WAIT);
    if (!first) first = e;
    vnode_untake(vp, how);
  }
  int e = buf_flushdirtyblks(c->devvp, MNT_WAIT);
  if (!first) first = e;
  flusher_stop(c);
  vnode* devvp = c->devvp;
  vnode_put(devvp);  // VNOP_RECLAIM of the device vnode: buf_vnode_reclaim
  {
    std::lock_guard g(c->mtx);
    // Vnodes the filesystem failed to reclaim keep dangling state; drop it so nothing leaks.
    while (!c->vnodes.empty()) {
      vnode_bufs* vb = &c->vnodes.front();
      c->vnodes.pop_front();
      vb->clean.clear();
      vb->dirty.clear();
      if (vb->vb_dirtylink.is_linked()) c->dirty_vnodes.erase(c->dirty_vnodes.iterator_to(*vb));
      if (vb->vp) vb->vp->v_bufs = nullptr;
      delete vb;
    }
    c->dirty_vnodes.clear();
    for (int i = 0; i < BQ_COUNT; i++) c->q[i].clear();
    c->hdr_free.clear();
    for (auto& sh : c->shards) {
      std::lock_guard gs(sh.mtx);
      sh.hash->clear();
    }
  }
  mp->mnt_cache = nullptr;
  mp->mnt_devvp = nullptr;
  delete c;
  return first;
}

bufcache_stats bufcache_getstats(const mount* mp) {
  bufcache* c = mp->mnt_cache;
  bufcache_stats s;
  auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  {
    std::lock_guard g(c->mtx);
    s.dirty = c->ndirty.load(std::memory_order_relaxed);
    s.dirty_max = c->dirty_max;
    s.failed = c->nfailed.load(std::memory_order_relaxed);
    // Counted here rather than at every CAS: a shared counter on the hit path would be the cache-wide
    // cache line the shards exist to avoid. O(buffers), for a statistics call.
    for (size_t i = 0; i < c->nbufs; i++)
      if (c->bufs[i].b_lflags.load(std::memory_order_relaxed) & BL_BUSY) s.busy++;
  }
  s.buffers = c->nbufs;
  s.block_size = c->bs;
  for (auto& sh : c->shards) s.hits += sh.hits.load(std::memory_order_relaxed);
  s.misses = ld(c->n.misses);
  s.evictions = ld(c->n.evictions);
  s.throttle_waits = ld(c->n.throttle_waits);
  s.bdwrite_to_async = ld(c->n.bdwrite_to_async);
  s.reads = ld(c->n.reads);
  s.writes = ld(c->n.writes);
  s.read_errors = ld(c->n.read_errors);
  s.write_errors = ld(c->n.write_errors);
  s.dropped_dirty = ld(c->n.dropped_dirty);
  s.failed_throttle = ld(c->n.failed_throttle);
  s.readahead_issued = ld(c->n.readahead_issued);
  s.readahead_used = ld(c->n.readahead_used);
  s.cluster_pushes = ld(c->n.cluster_pushes);
  s.sparse_pushes = ld(c->n.sparse_pushes);
  s.flusher_runs = ld(c->n.flusher_runs);
  s.flusher_writes = ld(c->n.flusher_writes);
  s.meta_gate_skipped = ld(c->n.meta_gate_skipped);
  s.meta_gate_unordered = ld(c->n.meta_gate_unordered);
  s.meta_data_left = ld(c->n.meta_data_left);
  for (int i = 0; i < bufcache_stats::kSizeBuckets; i++) {
    s.write_size_hist[i] = ld(c->n.write_hist[i]);
    s.read_size_hist[i] = ld(c->n.read_hist[i]);
  }
  return s;
}

const bufcache_config& bufcache_getconfig(const mount* mp) { return mp->mnt_cache->cfg; }

// ---- small locked helpers
void vb_notify_locked(vnode_bufs* vb) {
  if (vb->waiters) vb->cv.notify_all();
}

void vb_wait_locked(vnode_bufs* vb, std::unique_lock<std::mutex>& g) {
  vb->waiters++;
  vb->cv.wait(g);
  vb->waiters--;
}

void free_notify_locked(bufcache* c) {
  if (c->free_waiters) c->free_cv.notify_all();
}

vnode_bufs* vb_get_locked(bufcache* c, vnode* vp) {
  if (vp->v_bufs) return vp->v_bufs;
  auto* vb = new (std::nothrow) vnode_bufs;
  if (vb == nullptr) return nullptr;
  vb->vp = vp;
  c->vnodes.push_back(*vb);
  vp->v_bufs = vb;
  return vb;
}

// ---- the sharded hash, busy by CAS, the wait table
// The shard is chosen by the top bits of the key's hash; the bucket inside it by the low bits.
static bufcache::hash_shard& shard_of(bufcache* c, const vnode* vp, daddr64_t lblkno, size_t* hash = nullptr) {
  size_t h = buf_key_hash()(buf_key{vp, lblkno});
  if (hash) *hash = h;
  return c->shards[h >> (8 * sizeof(size_t) - 6)];
}
// The key's hash computed once, for the shard and the bucket.
struct prehashed {
  size_t h;
  size_t operator()(const buf_key&) const { return h; }
};
static_assert(kHashShards == 64);

static bufcache::wait_slot& wait_slot_of(bufcache* c, const buf* bp) {
  uint64_t h = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(bp)) * 0x9E3779B97F4A7C15ull;
  return c->waits[h >> 58];
}
static_assert(kWaitSlots == 64);

// Wakes the sleepers of bp's slot (others sharing the slot wake spuriously and look again).
static void wait_slot_wake(bufcache* c, const buf* bp) {
  auto& ws = wait_slot_of(c, bp);
  std::lock_guard g(ws.mtx);
  ws.cv.notify_all();
}

buf* incore_locked(bufcache* c, vnode* vp, daddr64_t lblkno) {
  size_t h;
  auto& sh = shard_of(c, vp, lblkno, &h);
  std::lock_guard g(sh.mtx);
  auto it = sh.hash->find(buf_key{vp, lblkno}, prehashed{h}, buf_key_eq());
  return it == sh.hash->end() ? nullptr : &*it;
}

bool bbusy(buf* bp) {
  uint32_t w = bp->b_lflags.load(std::memory_order_relaxed);
  do {
    if (w & BL_BUSY) return false;
  } while (!bp->b_lflags.compare_exchange_weak(w, w | BL_BUSY, std::memory_order_acquire, std::memory_order_relaxed));
  return true;
}

lookup_result lookup_busy(bufcache* c, vnode* vp, daddr64_t lblkno, buf** bpp) {
  size_t h;
  auto& sh = shard_of(c, vp, lblkno, &h);
  std::lock_guard g(sh.mtx);
  auto it = sh.hash->find(buf_key{vp, lblkno}, prehashed{h}, buf_key_eq());
  if (it == sh.hash->end()) return lookup_result::Miss;
  buf* bp = &*it;
  *bpp = bp;
  if (!bbusy(bp)) return lookup_result::Busy;
  // FreeBSD getblkx re-checks the identity after taking the lock; here the CAS is made under [S], which
  // every identity change holds, so the identity found is the one owned.
  assert(bp->b_vp == vp && bp->b_lblkno == lblkno);
  return lookup_result::Got;
}

void buf_wait_unbusy(bufcache* c, buf* bp) {
  auto& ws = wait_slot_of(c, bp);
  std::unique_lock g(ws.mtx);
  uint32_t w = bp->b_lflags.load(std::memory_order_relaxed);
  for (;;) {
    if (!(w & BL_BUSY)) return;
    // WANTED is set under [W] and only while BUSY is: the releaser's CAS either precedes this one (we see
    // BUSY clear and go) or sees WANTED and notifies under [W], which it cannot take before we sleep.
    if ((w & BL_WANTED) ||
        bp->b_lflags.compare_exchange_weak(w, w | BL_WANTED, std::memory_order_relaxed, std::memory_order_relaxed))
      break;
  }
  ws.cv.wait(g);
}

// Clears BUSY (and WANTED), setting the queue bits to q and BL_REF if ref; wakes the waiters. The caller
// owns the buffer; with [M] held when q differs from the current queue bits.
static void unbusy(bufcache* c, buf* bp, uint8_t q, bool ref) {
  uint32_t w = bp->b_lflags.load(std::memory_order_relaxed);
  uint32_t n;
  do {
    n = (w & ~(BL_BUSY | BL_WANTED | BL_QMASK | BL_REF)) | bl_q(q) | (ref ? uint32_t{BL_REF} : 0u);
  } while (!bp->b_lflags.compare_exchange_weak(w, n, std::memory_order_release, std::memory_order_relaxed));
  if (w & BL_WANTED) wait_slot_wake(c, bp);
}

// The dirty count changes only here and in invalidate_locked: the one place that knows when it falls under
// the high-water mark and a throttled writer may go on.
static void ndirty_add_locked(bufcache* c, vnode_bufs* vb, bool on) {
  if (on) {
    if (vb->dirty.size() == 1) c->dirty_vnodes.push_back(*vb);
    uint64_t n = c->ndirty.load(std::memory_order_relaxed) + 1;
    c->ndirty.store(n, std::memory_order_relaxed);
    if (n > c->dirty_max) c->dirty_max = n;
    return;
  }
  if (vb->dirty.empty() && vb->vb_dirtylink.is_linked()) c->dirty_vnodes.erase(c->dirty_vnodes.iterator_to(*vb));
  uint64_t n = c->ndirty.load(std::memory_order_relaxed) - 1;
  c->ndirty.store(n, std::memory_order_relaxed);
  if (n < c->highwater) free_notify_locked(c);
}

// B_LOCKED (kept dirty after a failed write) and the counts beside it change only here. The first failed
// buffer of a file vnode makes the cache hold the vnode (vnode_hold), the last one's end (written, dropped
// after its retries, or invalidated) lets it go: a vnode is never reclaimed with data whose write failed
// and that may still be retried (buf.h, "Errors"). The device vnode lives until unmount and is not held.
// vnode_hold/vnode_drop take the mount's vnode mutex (a leaf after [M]) and never reclaim. L.
static void set_failed_locked(bufcache* c, buf* bp, bool failed) {
  if (has(bp, B_LOCKED) == failed) return;
  vnode_bufs* vb = bp->b_vb;
  if (failed) {
    setf(bp, B_LOCKED);
    c->nfailed.fetch_add(1, std::memory_order_relaxed);
    if (vb->nfailed++ == 0 && !vb->held && !(vb->vp->v_flag & VSYSTEM) && !c->holds_released) {
      vnode_hold(vb->vp);
      vb->held = true;
    }
    return;
  }
  clrf(bp, B_LOCKED);
  c->nfailed.fetch_sub(1, std::memory_order_relaxed);
  if (--vb->nfailed == 0 && vb->held) {
    vb->held = false;
    vnode_drop(vb->vp);
  }
  if (c->nfailed < c->highwater) free_notify_locked(c);  // a writer refused or waiting may go on
}

void markdirty_locked(bufcache* c, buf* bp) {
  if (has(bp, B_DELWRI)) return;
  setf(bp, B_DELWRI);
  vnode_bufs* vb = bp->b_vb;
  vb->clean.erase(vb->clean.iterator_to(*bp));
  vb->dirty.push_back(*bp);
  bp->b_timestamp_ms = now_ms();
  bp->b_dirtyseq = ++c->dirty_seq;
  ndirty_add_locked(c, vb, true);
}

void markclean_locked(bufcache* c, buf* bp) {
  if (!has(bp, B_DELWRI)) return;
  clrf(bp, B_DELWRI);
  vnode_bufs* vb = bp->b_vb;
  vb->dirty.erase(vb->dirty.iterator_to(*bp));
  vb->clean.push_back(*bp);
  ndirty_add_locked(c, vb, false);
}

// Takes the identity away from a busy buffer: out of the hash and its vnode's lists.
void invalidate_locked(bufcache* c, buf* bp) {
  if (bp->b_vb) set_failed_locked(c, bp, false);
  if (bp->b_hash.is_linked()) {
    auto& sh = shard_of(c, bp->b_vp, bp->b_lblkno);
    std::lock_guard gs(sh.mtx);
    sh.hash->erase(sh.hash->iterator_to(*bp));
  }
  if (bp->b_vb) {
    if (has(bp, B_DELWRI)) {
      bp->b_vb->dirty.erase(bp->b_vb->dirty.iterator_to(*bp));
      ndirty_add_locked(c, bp->b_vb, false);
    } else {
      bp->b_vb->clean.erase(bp->b_vb->clean.iterator_to(*bp));
    }
  }
  bp->b_vb = nullptr;
  bp->b_vp = nullptr;
  bp->b_flags.store(0, std::memory_order_relaxed);
  bp->b_lflags.fetch_and(~uint32_t{BL_RAHEAD}, std::memory_order_relaxed);
  bp->b_error = 0;
  bp->b_wfails = 0;
  bp->b_wfail_ms = 0;
  bp->b_blkno = BUF_UNMAPPED;
  bp->b_fsprivate = nullptr;
}

static bool release_drops(uint32_t f) {
  bool dirty = f & B_DELWRI;
  return (f & B_INVAL) || (!dirty && ((f & B_NOCACHE) || (f & B_ERROR) || !(f & B_DONE)));
}
static uint8_t release_queue(uint32_t f, bool identity) {
  return !identity ? BQ_EMPTY : (f & B_DELWRI) ? BQ_DIRTY : (f & B_AGE) ? BQ_AGE : BQ_LRU;
}
static constexpr uint32_t kReleaseClear = B_ASYNC | B_NOCACHE | B_AGE | B_READ | B_CALL | B_CACHE | B_FUA;

// f: the flags as the owner left them (a release that started lock-free has cleared them already).
static void release_locked(bufcache* c, buf* bp, uint32_t f) {
  assert(bp->b_lflags.load(std::memory_order_relaxed) & BL_BUSY);
  if (release_drops(f) && bp->b_vb) invalidate_locked(c, bp);
  clrf(bp, kReleaseClear);
  bp->b_iodone = nullptr;
  uint8_t q = release_queue(f, bp->b_vb != nullptr);
  uint8_t cur = bl_queue(bp->b_lflags.load(std::memory_order_relaxed));
  if (cur != q) {  // lazy removal: it may still be on the queue it was on when it was taken
    if (cur != BQ_NONE) c->q[cur].erase(c->q[cur].iterator_to(*bp));
    if (q == BQ_EMPTY) c->q[q].push_front(*bp);
    else c->q[q].push_back(*bp);
  }
  unbusy(c, bp, q, false);
  if (q != BQ_DIRTY) free_notify_locked(c);
}

void brelse_locked(bufcache* c, buf* bp) { release_locked(c, bp, bp->b_flags.load(std::memory_order_relaxed)); }

// The hot release: the buffer goes back to the queue it never left, so no list changes and no [M]. The CAS
// expects the queue bits it read: if the reclaimer unlinked the buffer meanwhile (cleared them under [M]),
// the CAS fails and the release is finished under [M]. A throttled getblk never waits for a lock-free
// release: it found no free buffer only after unlinking every busy one from the queues, so a buffer still
// linked was not counted on (and the throttle's wait is bounded anyway). Called without [M].
bool brelse_fast(bufcache* c, buf* bp) {
  const uint32_t f = bp->b_flags.load(std::memory_order_relaxed);
  if (release_drops(f) || bp->b_vb == nullptr) return false;
  const uint8_t q = release_queue(f, true);
  uint32_t w = bp->b_lflags.load(std::memory_order_relaxed);
  if (bl_queue(w) != q) return false;
  clrf(bp, kReleaseClear);  // still the owner's until the CAS below
  bp->b_iodone = nullptr;
  uint32_t n;
  do {
    if (bl_queue(w) != q) {  // unlinked by the reclaimer since: relink under [M]
      std::lock_guard g(c->mtx);
      release_locked(c, bp, f);
      return true;
    }
    n = (w & ~(BL_BUSY | BL_WANTED)) | (q == BQ_LRU ? uint32_t{BL_REF} : 0u);
  } while (!bp->b_lflags.compare_exchange_weak(w, n, std::memory_order_release, std::memory_order_relaxed));
  if (w & BL_WANTED) wait_slot_wake(c, bp);
  return true;
}

// Reclaims a clean free buffer for a new identity: EMPTY first, then AGE, then LRU (XNU getnewbuf).
// nullptr when every buffer is busy or dirty.
// Lazy removal: a busy buffer met at a queue's front is unlinked (a hit left it there) and its queue bits
// cleared by CAS, so its lock-free release fails over to [M] and relinks it. An LRU buffer released by a
// hit since (BL_REF) gets a second chance at the back (CLOCK); each buffer at most once per call.
static buf* getnewbuf_locked(bufcache* c) {
  for (uint8_t q : {BQ_EMPTY, BQ_AGE, BQ_LRU}) {
    size_t second_chances = c->q[q].size();
    while (!c->q[q].empty()) {
      buf* bp = &c->q[q].front();
      uint32_t w = bp->b_lflags.load(std::memory_order_relaxed);
      if (w & BL_BUSY) {
        if (!bp->b_lflags.compare_exchange_weak(w, w & ~BL_QMASK, std::memory_order_relaxed,
                                                std::memory_order_relaxed))
          continue;  // released or wanted meanwhile: look again
        c->q[q].pop_front();
        continue;
      }
      if ((w & BL_REF) && second_chances > 0) {
        if (!bp->b_lflags.compare_exchange_weak(w, w & ~BL_REF, std::memory_order_relaxed, std::memory_order_relaxed))
          continue;
        second_chances--;
        c->q[q].pop_front();
        c->q[q].push_back(*bp);
        continue;
      }
      if (!bp->b_lflags.compare_exchange_weak(w, (w | BL_BUSY) & ~(BL_QMASK | BL_REF), std::memory_order_acquire,
                                              std::memory_order_relaxed))
        continue;
          c->q[q].pop_front();
      if (bp->b_vb) {
        c->n.evictions.fetch_add(1, std::memory_order_relaxed);
        invalidate_locked(c, bp);
      }
      return bp;
    }
  }
  return nullptr;
}

static void assign_locked(bufcache* c, buf* bp, vnode* vp, vnode_bufs* vb, daddr64_t lblkno, bool meta) {
  bp->b_vp = vp;
  bp->b_vb = vb;
  bp->b_lblkno = lblkno;
  bp->b_blkno = (vp->v_flag & VSYSTEM) ? lblkno : BUF_UNMAPPED;
  bp->b_bcount = c->bs;
  bp->b_flags.store(meta ? uint32_t{B_META} : 0u, std::memory_order_relaxed);
  {
    auto& sh = shard_of(c, vp, lblkno);
    std::lock_guard gs(sh.mtx);
    sh.hash->insert(*bp);
  }
  vb->clean.push_back(*bp);
}

// Write throttling: no clean buffer can be reclaimed. The flusher pushes dirty ones (it holds no
// filesystem lock, so its VNOP_BLOCKMAP calls cannot deadlock against the caller's); the caller waits.
static void throttle_wait_locked(bufcache* c, std::unique_lock<std::mutex>& g) {
  c->n.throttle_waits.fetch_add(1, std::memory_order_relaxed);
  flusher_wake_locked(c);
  c->free_waiters++;
  c->free_cv.wait_for(g, std::chrono::milliseconds(50));
  c->free_waiters--;
}

buf* getblk_nowait_locked(bufcache* c, vnode* vp, daddr64_t lblkno, bool* found) {
  *found = false;
  if (buf* bp = incore_locked(c, vp, lblkno)) {
    *found = true;
    if (!bbusy(bp)) return nullptr;
    setf(bp, B_CACHE);
    return bp;
  }
  vnode_bufs* vb = vb_get_locked(c, vp);
  if (vb == nullptr) return nullptr;
  buf* bp = getnewbuf_locked(c);
  if (bp == nullptr) return nullptr;
  assign_locked(c, bp, vp, vb, lblkno, (vp->v_flag & VSYSTEM) != 0);
  c->n.misses.fetch_add(1, std::memory_order_relaxed);
  return bp;
}

// The hit half of a getblk, after busy was taken: counted. No lock needed.
static void take_hit(bufcache* c, buf* bp) {
  setf(bp, B_CACHE);
  shard_of(c, bp->b_vp, bp->b_lblkno).hits.fetch_add(1, std::memory_order_relaxed);
  if (bp->b_lflags.load(std::memory_order_relaxed) & BL_RAHEAD) {
    bp->b_lflags.fetch_and(~uint32_t{BL_RAHEAD}, std::memory_order_relaxed);
    c->n.readahead_used.fetch_add(1, std::memory_order_relaxed);
  }
}

static void release_any(bufcache* c, buf* bp) {
  if (brelse_fast(c, bp)) return;
  std::lock_guard g(c->mtx);
  brelse_locked(c, bp);
}

// A hit takes no cache-wide lock: the shard's [S] for the lookup and busy CAS. A miss takes [M], looks
// again (every insertion holds [M], so what it finds then stays true) and reclaims a buffer.
BufRef buf_getblk(vnode* vp, daddr64_t blkno, int operation) {
  bufcache* c = cache_of(vp);
  for (;;) {
    buf* bp = nullptr;
    switch (lookup_busy(c, vp, blkno, &bp)) {
      case lookup_result::Got:
        if ((operation & BLK_ONLYVALID) && !has(bp, B_DONE)) {
          release_any(c, bp);
          return BufRef();
        }
        take_hit(c, bp);
        if (operation & BLK_META) setf(bp, B_META);
        return BufRef(bp);
      case lookup_result::Busy:
        buf_wait_unbusy(c, bp);
        continue;  // it may have been invalidated or reused meanwhile: look again
      case lookup_result::Miss:
        break;
    }
    if (operation & BLK_ONLYVALID) return BufRef();
    std::unique_lock g(c->mtx);
    if (incore_locked(c, vp, blkno)) continue;  // entered by another thread since the lookup
    vnode_bufs* vb = vb_get_locked(c, vp);
    if (vb == nullptr) return BufRef();  // ENOMEM: callers see an empty BufRef
    bp = getnewbuf_locked(c);
    if (bp == nullptr) {
      throttle_wait_locked(c, g);
      continue;
    }
    assign_locked(c, bp, vp, vb, blkno, (vp->v_flag & VSYSTEM) || (operation & BLK_META));
    c->n.misses.fetch_add(1, std::memory_order_relaxed);
    return BufRef(bp);
  }
}

size_t getblk_run(bufcache* c, vnode* vp, daddr64_t lbn, size_t n, int flags, buf** out) {
  const bool onlyvalid = flags & RUN_ONLYVALID;
  size_t k = 0;
  // The prefix of hits, lock-free.
  while (k < n) {
    const daddr64_t lb = lbn + static_cast<daddr64_t>(k);
    buf* bp = nullptr;
    lookup_result r = lookup_busy(c, vp, lb, &bp);
    if (r == lookup_result::Miss) {
      if (onlyvalid) return k;
      break;
    }
    if (r == lookup_result::Busy) {
      if (k > 0 || onlyvalid) return k;  // never sleep holding part of a run
      buf_wait_unbusy(c, bp);
      continue;  // it may have been invalidated or reused meanwhile: look again
    }
    if (onlyvalid && !has(bp, B_DONE)) {
      release_any(c, bp);
      return k;
    }
    take_hit(c, bp);
    out[k++] = bp;
  }
  if (k == n) return k;
  // A miss: the rest under one acquisition of [M].
  std::unique_lock g(c->mtx);
  vnode_bufs* vb = vb_get_locked(c, vp);
  if (vb == nullptr) {
    g.unlock();
    for (size_t i = 0; i < k; i++) release_any(c, out[i]);
    return 0;
  }
  while (k < n) {
    const daddr64_t lb = lbn + static_cast<daddr64_t>(k);
    if (buf* bp = incore_locked(c, vp, lb)) {
      if (!bbusy(bp)) {
        if (k > 0) break;  // never sleep holding part of a run
        g.unlock();
        buf_wait_unbusy(c, bp);
        g.lock();
        continue;  // it may have been invalidated meanwhile: look again
      }
      take_hit(c, bp);
      out[k++] = bp;
      continue;
    }
    buf* bp = getnewbuf_locked(c);
    if (bp == nullptr) {
      if (k > 0) break;
      // No clean buffer, and failed writes fill the dirty allowance: the flusher's retries would not free
      // one while the device refuses them. The writer gets EIO (cluster_write) instead of waiting.
      if (c->nfailed >= c->highwater) {
        c->n.failed_throttle.fetch_add(1, std::memory_order_relaxed);
        return 0;
      }
      throttle_wait_locked(c, g);
      continue;
    }
    assign_locked(c, bp, vp, vb, lb, (vp->v_flag & VSYSTEM) != 0);
    c->n.misses.fetch_add(1, std::memory_order_relaxed);
    out[k++] = bp;
  }
  return k;
}

void release_run(bufcache* c, buf** bps, size_t n, bool dirty) {
  std::unique_lock g(c->mtx, std::defer_lock);
  for (size_t i = 0; i < n; i++) {
    buf* bp = bps[i];
    if (dirty) {
      if (!has(bp, B_DELWRI)) {  // clean -> dirty moves it between lists: [M] (B_DELWRI is stable while busy)
        if (!g.owns_lock()) g.lock();
        markdirty_locked(c, bp);
      }
      setf(bp, B_DONE);
    }
    if (!g.owns_lock() && brelse_fast(c, bp)) continue;
    if (!g.owns_lock()) g.lock();
    brelse_locked(c, bp);
  }
}

void buf_brelse(BufRef ref) {
  buf* bp = ref.release();
  if (bp == nullptr) return;
  release_any(bp->b_cache, bp);
}

// ---- reads
static int bread_common(vnode* vp, daddr64_t blkno, int op, BufRef* bpp) {
  bufcache* c = cache_of(vp);
  BufRef bp = buf_getblk(vp, blkno, op);
  if (!bp) return ENOMEM;
  if (has(bp.get(), B_DONE) || has(bp.get(), B_DELWRI)) {
    *bpp = std::move(bp);
    return 0;
  }
  clrf(bp.get(), B_DONE | B_ERROR | B_ASYNC);
  setf(bp.get(), B_READ);
  bp->b_error = 0;
  buf* raw = bp.get();
  VNOP_STRATEGY(raw);
  int err = buf_biowait(raw);
  clrf(raw, B_READ);
  if (err) {
    c->n.read_errors.fetch_add(1, std::memory_order_relaxed);
    setf(raw, B_INVAL);  // nothing half-valid stays behind
    buf_brelse(std::move(bp));
    return err;
  }
  *bpp = std::move(bp);
  return 0;
}

int buf_bread(vnode* vp, daddr64_t blkno, BufRef* bpp) { return bread_common(vp, blkno, BLK_READ, bpp); }
int buf_meta_bread(vnode* vp, daddr64_t blkno, BufRef* bpp) {
  return bread_common(vp, blkno, BLK_READ | BLK_META, bpp);
}

int buf_breadn(vnode* vp, daddr64_t blkno, const daddr64_t* rablks, int nrablks, BufRef* bpp) {
  bufcache* c = cache_of(vp);
  for (int i = 0; i < nrablks; i++) {
    buf* bp;
    {
      std::lock_guard g(c->mtx);
      bool found;
      bp = getblk_nowait_locked(c, vp, rablks[i], &found);
      if (bp && found) {  // in core already: nothing to read
        brelse_locked(c, bp);
        continue;
      }
    }
    if (bp == nullptr) continue;  // the cache is short of clean buffers: read-ahead is optional
    c->n.readahead_issued.fetch_add(1, std::memory_order_relaxed);
    read_run(c, vp, &bp, 1, true, true);
  }
  return buf_bread(vp, blkno, bpp);
}

// ---- writes
void vnode_async_throttle(bufcache* c, vnode_bufs* vb) {
  std::unique_lock g(c->mtx);
  if (vb->numoutput < c->cfg.max_async_per_vnode) return;
  c->n.throttle_waits.fetch_add(1, std::memory_order_relaxed);
  while (vb->numoutput >= c->cfg.max_async_per_vnode) vb_wait_locked(vb, g);
}

void buf_startwrite(buf* bp) {
  bufcache* c = bp->b_cache;
  {
    std::lock_guard g(c->mtx);
    if (bp->b_header) {
      for (buf* m : bp->b_members) markclean_locked(c, m);
    } else {
      markclean_locked(c, bp);
    }
    bp->b_vp->v_bufs->numoutput++;
  }
  clrf(bp, B_READ | B_DONE | B_ERROR);
  bp->b_error = 0;
  VNOP_STRATEGY(bp);
}

int buf_bwrite(BufRef ref) {
  buf* bp = ref.release();
  clrf(bp, B_ASYNC);
  buf_startwrite(bp);
  int err = buf_biowait(bp);
  buf_brelse(BufRef(bp));
  return err;
}

int vn_bwrite(vnop_bwrite_args* ap) {
  buf* bp = ap->a_bp;
  if (has(bp, B_ASYNC)) {
    buf_startwrite(bp);
    return 0;
  }
  return buf_bwrite(BufRef(bp));
}

int buf_bawrite(BufRef ref) {
  buf* bp = ref.get();
  bufcache* c = bp->b_cache;
  vnode_bufs* vb;
  {
    std::lock_guard g(c->mtx);
    vb = bp->b_vb;
  }
  vnode_async_throttle(c, vb);
  setf(bp, B_ASYNC);
  return VNOP_BWRITE(ref.release());
}

// Delayed write. Past the dirty high-water mark the write starts now (XNU turns bdwrite into bawrite past
// 3/4 of the headers): dirty buffers cannot be reclaimed, so letting them pile up only moves the wait.
// Device-vnode metadata never starts early: it goes out only in the flusher's ordered pass or a
// filesystem's own ordered writes (docs/durability.md, "Ordering"); the throttle pushes file data.
void buf_bdwrite(BufRef ref) {
  buf* bp = ref.release();
  bufcache* c = bp->b_cache;
  {
    // Rewriting a buffer that is already dirty changes no list: no [M] unless it must move.
    std::unique_lock g(c->mtx, std::defer_lock);
    if (!has(bp, B_DELWRI)) {
      g.lock();
      markdirty_locked(c, bp);
    }
    setf(bp, B_DONE);
    bool start = c->ndirty.load(std::memory_order_relaxed) > c->highwater && !has(bp, B_LOCKED) && bp->b_vp != c->devvp;
    if (!start) {
      if (g.owns_lock()) brelse_locked(c, bp);
      else release_any(c, bp);
      return;
    }
  }
  c->n.bdwrite_to_async.fetch_add(1, std::memory_order_relaxed);
  buf_bawrite(BufRef(bp));
}

// B_DONE of a synchronous I/O is set under the buffer's wait slot [W] (io_done_publish), as the completion's
// last touch of the buffer: once the waiter sees it, the buffer is the waiter's alone.
int buf_biowait(buf* bp) {
  bufcache* c = bp->b_cache;
  auto& ws = wait_slot_of(c, bp);
  {
    std::unique_lock g(ws.mtx);
    while (!has(bp, B_DONE)) ws.cv.wait(g);
  }
  if (has(bp, B_ERROR)) return bp->b_error ? bp->b_error : EIO;
  return 0;
}

void buf_setcallback(buf* bp, void (*fn)(buf*, void*), void* arg) {
  bp->b_iodone = fn;
  bp->b_iodone_arg = arg;
  setf(bp, B_CALL | B_ASYNC);
}

// The end of one write of bp's data (a buffer, or one member of a cluster). Errors never vanish: the data
// stays dirty (B_LOCKED) and the vnode records EIO; after max_write_retries the data is dropped and the
// vnode's error becomes sticky.
// B_DONE is left to the caller (a synchronous write's waiter must see it last).
static void write_done_locked(bufcache* c, buf* bp, int error) {
  vnode_bufs* vb = bp->b_vb;
  if (error == 0) {
    bp->b_wfails = 0;
    if (vb) set_failed_locked(c, bp, false);
    clrf(bp, B_ERROR);
    bp->b_error = 0;
    return;
  }
  c->n.write_errors.fetch_add(1, std::memory_order_relaxed);
  bp->b_error = error;
  setf(bp, B_ERROR);
  if (vb == nullptr) return;
  vb->error = EIO;
  // Failures closer together than the retry interval count once (bufcache_config): a burst of fsyncs or
  // last-reference write-backs is one retry, not all of them.
  const uint64_t t = now_ms();
  if (bp->b_wfails == 0 || t - bp->b_wfail_ms >= c->cfg.write_retry_interval_ms) {
    bp->b_wfails++;
    bp->b_wfail_ms = t;
  }
  if (bp->b_wfails < c->cfg.max_write_retries) {
    set_failed_locked(c, bp, true);
    markdirty_locked(c, bp);
    return;
  }
  c->n.dropped_dirty.fetch_add(1, std::memory_order_relaxed);
  vb->sticky = true;
  VLOG_ERR("cache: block %lld of vnode %llu dropped after %u failed writes", static_cast<long long>(bp->b_lblkno),
           static_cast<unsigned long long>(bp->b_vp->v_id), bp->b_wfails);
  set_failed_locked(c, bp, false);
  setf(bp, B_INVAL);
}

static void cluster_iodone(buf* hdr);

// Wakes the synchronous waiter of bp (buf_biowait): B_DONE under the wait slot, then nothing more of bp.
static void io_done_publish(bufcache* c, buf* bp) {
  auto& ws = wait_slot_of(c, bp);
  std::lock_guard g(ws.mtx);
  setf(bp, B_DONE);
  ws.cv.notify_all();
}

void buf_biodone(buf* bp) {
  bufcache* c = bp->b_cache;
  if (bp->b_header) {
    cluster_iodone(bp);
    return;
  }
  const bool write = !has(bp, B_READ);
  if (write) {  // dirty state, numoutput and the vnode's error: [M]
    std::unique_lock g(c->mtx);
    write_done_locked(c, bp, has(bp, B_ERROR) ? (bp->b_error ? bp->b_error : EIO) : 0);
    vnode_bufs* vb = bp->b_vp->v_bufs;  // reclaim waits for numoutput == 0 before freeing v_bufs
    vb->numoutput--;
    vb_notify_locked(vb);
    if (has(bp, B_ASYNC) && !has(bp, B_CALL)) {  // released in the same acquisition
      setf(bp, B_DONE);
      brelse_locked(c, bp);
      return;
    }
  } else if (has(bp, B_ERROR)) {
    c->n.read_errors.fetch_add(1, std::memory_order_relaxed);
  }
  if (has(bp, B_CALL)) {
    setf(bp, B_DONE);
    clrf(bp, B_CALL);
    auto fn = bp->b_iodone;
    void* arg = bp->b_iodone_arg;
    fn(bp, arg);  // it owns bp now
    return;
  }
  if (has(bp, B_ASYNC)) {
    setf(bp, B_DONE);
    if (!write && has(bp, B_ERROR)) setf(bp, B_INVAL);
    release_any(c, bp);
    return;
  }
  io_done_publish(c, bp);
}

// Completion of a cluster header, one batch: one acquisition of [M] for all its members (none for a
// synchronous read). Each member gets the result of the one I/O it was part of (a failed I/O fails exactly
// its own members: other headers of the same push complete on their own); async headers release their
// members and go back to the pool, a sync header wakes its waiter (who still owns the members).
static void cluster_iodone(buf* hdr) {
  bufcache* c = hdr->b_cache;
  int error = has(hdr, B_ERROR) ? (hdr->b_error ? hdr->b_error : EIO) : 0;
  const bool write = !has(hdr, B_READ);
  const bool async = has(hdr, B_ASYNC);
  const bool rahead = hdr->b_lflags.load(std::memory_order_relaxed) & BL_RAHEAD;
  std::unique_lock g(c->mtx, std::defer_lock);
  if (write || async) g.lock();
  for (buf* m : hdr->b_members) {
    if (write) {
      write_done_locked(c, m, error);
      setf(m, B_DONE);
    } else if (error) {
      m->b_error = error;
      setf(m, B_ERROR | B_DONE | B_INVAL);
    } else {
      setf(m, B_DONE);
      if (rahead) m->b_lflags.fetch_or(BL_RAHEAD, std::memory_order_relaxed);
    }
  }
  if (write) {
    vnode_bufs* vb = hdr->b_vp->v_bufs;
    if (vb && !has(hdr, B_PHYS)) {  // buf_physio's writes are not in numoutput: no buffer waits for them
      vb->numoutput--;
      vb_notify_locked(vb);
    }
  } else if (error) {
    c->n.read_errors.fetch_add(1, std::memory_order_relaxed);
  }
  if (async) {
    for (buf* m : hdr->b_members) brelse_locked(c, m);
    hdr_put_locked(c, hdr);
    return;
  }
  if (g.owns_lock()) g.unlock();
  io_done_publish(c, hdr);
}

void hdr_put_locked(bufcache* c, buf* h) {
  h->b_members.clear();
  h->b_lflags.store(0, std::memory_order_relaxed);
  h->b_vp = nullptr;
  c->hdr_free.push_back(*h);
  if (c->hdr_waiters) c->hdr_cv.notify_one();
}

buf* hdr_get(bufcache* c, vnode* vp, uint32_t flags) {
  std::unique_lock g(c->mtx);
  while (c->hdr_free.empty()) {
    c->hdr_waiters++;
    c->hdr_cv.wait(g);
    c->hdr_waiters--;
  }
  buf* h = &c->hdr_free.front();
  c->hdr_free.pop_front();
  h->b_vp = vp;
  h->b_flags.store(flags | B_CLUSTER, std::memory_order_relaxed);
  h->b_error = 0;
  h->b_bcount = 0;
  h->b_members.clear();
  h->b_lflags.store(0, std::memory_order_relaxed);
  return h;
}

// ---- device submission
static void buf_io_done(dev::io_request* r, int error, size_t bytes) {
  buf* bp = static_cast<buf*>(r->owner);
  if (error == 0 && bytes < r->length) error = EIO;
  if (error) buf_seterror(bp, error == EINVAL ? EINVAL : EIO);
  buf_biodone(bp);
}

int buf_strategy(vnode* devvp, buf* bp) {
  bufcache* c = cache_of(devvp);
  dev::io_request* r = &bp->b_io;
  bool read = has(bp, B_READ);
  r->op = read ? dev::io_op::read : dev::io_op::write;
  r->attrs = (has(bp, B_FUA) ? uint32_t{dev::IO_ATTR_FUA} : 0u) | (has(bp, B_META) ? uint32_t{dev::IO_ATTR_META} : 0u);
  // A synchronous read is waited for by its submitter, which holds no cache lock here (never across a VNOP
  // call) and no lock buf_biodone takes: the device may read in this thread, saving the two hand-offs of the
  // worker queue (cold random 4 KiB reads: 4.0 -> 1.9 context switches per read; docs/bench.md).
  // A synchronous direct write (buf_physio) is waited for the same way. Other writes stay queued: with
  // buf_bwrite and waited pushes done inline (a608950, 8d11397), scripts/killloop found another file's
  // old bytes in appended files after 3-10 SIGKILLs in 100 (0 in 100 without), cause not found yet.
  if ((read || has(bp, B_PHYS)) && !has(bp, B_ASYNC) && !has(bp, B_CALL)) r->attrs |= dev::IO_ATTR_INLINE;
  r->offset = static_cast<uint64_t>(bp->b_blkno) << c->bshift;
  if (!has(bp, B_PHYS)) {  // buf_physio filled the iovecs from its uio
    r->clear_iov();
    if (bp->b_header) {
      for (buf* m : bp->b_members) r->add_iov(m->b_datap, c->bs);
    } else {
      r->add_iov(bp->b_datap, bp->b_bcount);
    }
  }
  r->done = buf_io_done;
  r->owner = bp;
  uint32_t blocks = static_cast<uint32_t>(r->length >> c->bshift);
  if (bp->b_blkno < 0) {  // unmapped or a hole: never send it to block 0 .. by accident
    buf_seterror(bp, EIO);
    buf_biodone(bp);
    return 0;
  }
  if (read) {
    c->n.reads.fetch_add(1, std::memory_order_relaxed);
    c->n.read_hist[size_bucket(blocks)].fetch_add(1, std::memory_order_relaxed);
  } else {
    c->n.writes.fetch_add(1, std::memory_order_relaxed);
    c->n.write_hist[size_bucket(blocks)].fetch_add(1, std::memory_order_relaxed);
  }
  c->device->submit(r);
  return 0;
}

// ---- invalidation and flushing
// Waits for busy bp to be free, [M] dropped meanwhile; returns with [M] held. The buffer may have changed
// identity: the caller looks again.
static void wait_busy_locked(bufcache* c, buf* bp, std::unique_lock<std::mutex>& g) {
  g.unlock();
  buf_wait_unbusy(c, bp);
  g.lock();
}

// Discards vp's buffers that match `pick`, waiting for busy ones. Restarts the scan after every sleep.
template <class Pick>
static void discard_locked(bufcache* c, vnode_bufs* vb, std::unique_lock<std::mutex>& g, Pick pick) {
  for (;;) {
    buf* victim = nullptr;
    for (buf_vnlist* l : {&vb->dirty, &vb->clean}) {
      for (buf& b : *l) {
        if (pick(&b)) { victim = &b; break; }
      }
      if (victim) break;
    }
    if (victim == nullptr) return;
    if (!bbusy(victim)) {
      wait_busy_locked(c, victim, g);
      continue;
    }
    invalidate_locked(c, victim);
    brelse_locked(c, victim);
  }
}

int buf_invalidateblks(vnode* vp, int flags) {
  bufcache* c = cache_of(vp);
  int err = 0;
  if (flags & BUF_WRITE_DATA) err = buf_flushdirtyblks(vp, MNT_WAIT);
  std::unique_lock g(c->mtx);
  vnode_bufs* vb = vp->v_bufs;
  if (vb == nullptr) return err;
  bool skip_meta = flags & BUF_SKIP_META;
  discard_locked(c, vb, g, [&](buf* b) { return !(skip_meta && has(b, B_META)); });
  cluster_vnode_forget_locked(vb);
  return err;
}

void buf_invalidate_range(vnode* vp, daddr64_t first, daddr64_t last) {
  bufcache* c = cache_of(vp);
  std::unique_lock g(c->mtx);
  vnode_bufs* vb = vp->v_bufs;
  if (vb == nullptr) return;
  // A short range of a vnode with many buffers (a direct write over a file that was read into the cache):
  // one hash lookup per block instead of a scan of every buffer of the vnode.
  if (last > first && static_cast<uint64_t>(last - first) < vb->clean.size() + vb->dirty.size()) {
    for (daddr64_t lb = first; lb < last;) {
      buf* bp = incore_locked(c, vp, lb);
      if (bp == nullptr) {
        lb++;
        continue;
      }
      if (!bbusy(bp)) {
        wait_busy_locked(c, bp, g);  // it may have gone or changed identity meanwhile: look again
        continue;
      }
      invalidate_locked(c, bp);
      brelse_locked(c, bp);
      lb++;
    }
  } else {
    discard_locked(c, vb, g, [&](buf* b) { return b->b_lblkno >= first && b->b_lblkno < last; });
  }
  if (vb->ra_next > first) vb->ra_next = first;
}

void buf_invalblkno(vnode* vp, daddr64_t blkno) {
  bufcache* c = cache_of(vp);
  std::unique_lock g(c->mtx);
  for (;;) {
    buf* bp = incore_locked(c, vp, blkno);
    if (bp == nullptr) return;
    if (!bbusy(bp)) {
      wait_busy_locked(c, bp, g);
      continue;
    }
    invalidate_locked(c, bp);
    brelse_locked(c, bp);
    return;
  }
}

void buf_vnode_waitforwrites(vnode* vp) {
  bufcache* c = cache_of(vp);
  std::unique_lock g(c->mtx);
  while (vp->v_bufs && vp->v_bufs->numoutput > 0) vb_wait_locked(vp->v_bufs, g);
}

bool buf_vnode_isdirty(vnode* vp) {
  bufcache* c = cache_of(vp);
  std::lock_guard g(c->mtx);
  return vp->v_bufs && !vp->v_bufs->dirty.empty();
}

// Takes the recorded write error: reported once, unless data was dropped (sticky).
static int take_error_locked(vnode_bufs* vb) {
  if (vb == nullptr) return 0;
  int e = vb->error;
  if (!vb->sticky) vb->error = 0;
  return vb->sticky ? EIO : e;
}

int buf_flushdirtyblks(vnode* vp, int wait) {
  bufcache* c = cache_of(vp);
  bool w = wait == MNT_WAIT;
  int err = push_vnode(c, vp, w ? push_wait::Yes : push_wait::No);
  if (!w) return err;
  std::lock_guard g(c->mtx);
  int e = take_error_locked(vp->v_bufs);
  return e ? e : err;
}

int vnode_take_error(vnode* vp) {
  bufcache* c = cache_of(vp);
  std::lock_guard g(c->mtx);
  return take_error_locked(vp->v_bufs);
}

int buf_vnode_reclaim(vnode* vp) {
  bufcache* c = cache_of(vp);
  if (c == nullptr) return 0;
  std::unique_lock g(c->mtx);
  vnode_bufs* vb = vp->v_bufs;
  if (vb == nullptr) return 0;
  vb->reclaiming = true;
  while (vb->numoutput > 0) vb_wait_locked(vb, g);
  // Dirty buffers here are writes that failed (the filesystem flushed before reclaim): discarding them
  // loses data some writer was told was written, which must not go unreported (the fault matrix found
  // fsync returning 0 on the inode's next vnode).
  const int owed = (!vb->dirty.empty() || vb->error != 0 || vb->sticky) ? EIO : 0;
  discard_locked(c, vb, g, [](buf*) { return true; });
  while (vb->pushing) vb_wait_locked(vb, g);
  while (vb->waiters) {  // someone woken by the last notify has not run yet: vb must outlive its wait
    g.unlock();
    std::this_thread::yield();
    g.lock();
  }
  c->vnodes.erase(c->vnodes.iterator_to(*vb));
  if (vb->vb_dirtylink.is_linked()) c->dirty_vnodes.erase(c->dirty_vnodes.iterator_to(*vb));
  vp->v_bufs = nullptr;
  delete vb;
  return owed;
}

bool buf_vnode_write_failed(vnode* vp) {
  bufcache* c = cache_of(vp);
  if (c == nullptr) return false;
  std::lock_guard g(c->mtx);
  return vp->v_bufs != nullptr && (vp->v_bufs->sticky || vp->v_bufs->error != 0);
}

int buf_vnode_set_lost(vnode* vp) {
  bufcache* c = cache_of(vp);
  if (c == nullptr) return 0;
  std::lock_guard g(c->mtx);
  vnode_bufs* vb = vb_get_locked(c, vp);
  if (vb == nullptr) return ENOMEM;
  vb->error = EIO;
  vb->sticky = true;
  return 0;
}

vnode_take vnode_tryget_locked(vnode* vp) {
  std::lock_guard g(vp->v_mount->mnt_vnode_mutex);
  if (vp->v_lflag & (VL_TERMINATE | VL_DEAD)) return vnode_take::None;
  if (vp->v_iocount + vp->v_usecount > 0) {
    vp->v_iocount++;
    return vnode_take::Ref;
  }
  if ((vp->v_lflag & VL_INACTIVE) && vp->v_holdcount > 0) {  // idle, kept by its failed writes
    vp->v_holdcount++;
    return vnode_take::Hold;
  }
  return vnode_take::None;
}

void vnode_untake(vnode* vp, vnode_take how) {
  if (how == vnode_take::Ref) vnode_put(vp);
  else if (how == vnode_take::Hold) vnode_drop(vp);
}

void bufcache_release_holds(mount* mp) {
  bufcache* c = mp->mnt_cache;
  if (c == nullptr) return;
  std::lock_guard g(c->mtx);
  c->holds_released = true;
  for (vnode_bufs& vb : c->vnodes) {
    if (!vb.held) continue;
    VLOG_ERR("cache: vnode %llu: %u blocks whose writes failed are given up (unmount)",
             static_cast<unsigned long long>(vb.vp->v_id), vb.nfailed);
    vb.held = false;
    vnode_drop(vb.vp);
  }
}

}  // namespace vnopfs

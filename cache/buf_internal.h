// buf_internal.h: the private side of the buffer cache (struct buf, per-vnode state, the cache itself),
// shared by buf.cpp, push.cpp, spec.cpp, cluster.cpp, readahead.cpp and flusher.cpp. Nothing outside
// cache/ includes it. docs/cache.md explains the design; this header is the rulebook.
//
// Locks, in the order they may nest (a thread takes them left to right only):
//   busy (BL_BUSY, an ownership taken by CAS, not a mutex) -> bufcache::mtx [M] -> hash shard lock [S]
//                                                                           \-> wait slot lock [W]
//                                                                           \-> mount::mnt_vnode_mutex
// [S], [W] and mnt_vnode_mutex are leaves: nothing is taken while holding one, and [S] and [W] are never
// held together. Nobody sleeps holding [S]; a [W] is held only by a waiter going to sleep on its cv.
// - [S] (bufcache::shards[i].mtx, 64 shards by hash of (vnode, lblkno)) guards its shard's hash chains. A
//   lookup takes only [S]: it finds the buffer and takes busy by CAS while holding [S] (hash insertion and
//   removal need [S], so the identity it found is the identity it owns; a failed CAS drops [S] and waits).
//   Insertion and removal also hold [M], so a thread holding [M] sees identities that cannot change.
// - b_lflags is one atomic word: BL_BUSY, BL_WANTED, BL_REF, BL_RAHEAD and the queue the buffer is on
//   (BL_Q*). Busy is taken by CAS (acquire) and given back by CAS (release): the busy holder's writes to
//   the buffer happen before the next holder's reads. The queue bits change only under [M], and only
//   together with the list itself; every other bit may change without [M].
// - [M] guards the queues (LRU, AGE, EMPTY, DIRTY, hdr_free), the per-vnode lists, numoutput, the
//   write-behind/read-ahead state, the dirty count, the flusher's state and the identity (b_vp, b_vb,
//   b_lblkno: changed only while busy, under [M] and the shard's [S]). It is not taken by a hit (lookup and
//   busy), nor by a release that leaves the buffer on the queue it is already on (a clean buffer back to
//   LRU/AGE, a dirty one back to DIRTY): that is the hot path. It is taken by a miss, by a release that
//   changes queue or vnode list (clean -> dirty, an invalidation), by write completions and pushes. It is
//   never held across I/O, a copy of data, a VNOP call or a callback.
// - Everything else in a busy buffer (data, b_blkno, b_error, b_flags bits other than DELWRI) belongs to
//   the busy holder and is changed without [M]. B_DELWRI changes only under [M] (it moves the buffer between
//   its vnode's clean and dirty lists) and only while busy, so the holder reads it without [M].
// - Read without [M] (hints whose staleness is harmless): bufcache::ndirty (an atomic, written under [M]).
//
// Lazy queue removal (a hit does not touch the queues): a busy buffer may still be on the free queue its
// BL_Q bits name. The reclaimer (getnewbuf_locked, [M]) skips a busy buffer at the front of a queue and
// unlinks it (clearing its BL_Q bits by CAS, so a racing lock-free release sees the change and takes the
// slow path under [M] instead). A lock-free release back to LRU sets BL_REF; the reclaimer gives such a
// buffer a second chance (clears BL_REF, moves it to the back) instead of reusing it (CLOCK).
// Invariant: a buffer that is not busy is on exactly the queue its BL_Q bits name, and that queue fits its
// state (EMPTY: no identity; AGE/LRU: clean and valid; DIRTY: B_DELWRI).
//
// Waiting is addressed, never a herd on one cache-wide condition variable:
//   bufcache::waits[]  a table of 64 {mutex, cv} slots hashed by buffer address: a busy buffer's release
//                      (BL_WANTED) and a synchronous I/O's completion (B_DONE). A waiter sets BL_WANTED by
//                      CAS under the slot's [W] and only if BL_BUSY is still set, then sleeps on the slot's
//                      cv; a releaser whose CAS cleared BL_WANTED takes [W] and notifies: no lost wake-up.
//                      biodone sets B_DONE of a synchronous I/O under [W], as the last touch of the buffer.
//   vnode_bufs::cv  that vnode's writes in flight (numoutput) and its push serialisation (pushing)
//   bufcache::free_cv  writers waiting for a reclaimable buffer or for the dirty count to fall
//   bufcache::hdr_cv   a cluster header to come back to the pool
// The last three are notified only when someone sleeps on them (the waiter counts beside them, [M]).
//
// Ownership: a buffer is busy (BL_BUSY) while one BufRef, one run (getblk_run) or one I/O owns it. A free
// buffer is on exactly one queue: EMPTY (no identity, not hashed), AGE or LRU (clean, valid, reclaimable)
// or DIRTY (delayed write, not reclaimable until written). Hashed buffers are on their vnode's clean or
// dirty list whether busy or not. A vnode's dirty list is in the order its buffers became dirty, so its
// front is its oldest delayed write (the flusher's aging looks at fronts only), and a vnode with dirty
// buffers is on bufcache::dirty_vnodes (the flusher scans nothing else).
//
// Write-ordering dependencies (issue 15, soft-updates style; designed, not yet used): a buffer carries
// b_dep, the head of a list of dependency records owned by the filesystem's dependency layer (per-mount
// lock, ordered after busy and never nested with [M]). The cache calls the mount's bio_deps hooks only when
// b_dep is non-empty: io_start on every buffer of a write (busy held, before VNOP_STRATEGY: it may roll back
// unsafe bytes), io_complete on every member before busy is released (may re-dirty: release-as-dirty is part
// of the completion batch), io_deallocate when a buffer loses its identity, io_countdeps for the flusher to
// prefer buffers without dependencies. See docs/cache.md "Write ordering".
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/intrusive/list.hpp>
#include <boost/intrusive/unordered_set.hpp>

#include "vnopfs/buf.h"
#include "vnopfs/device.h"
#include "vnopfs/mount.h"
#include "vnopfs/vnops.h"

namespace vnopfs {

namespace bi = boost::intrusive;
using list_hook = bi::list_member_hook<bi::link_mode<bi::safe_link>>;
using hash_hook = bi::unordered_set_member_hook<bi::link_mode<bi::safe_link>>;

enum : uint8_t { BQ_NONE = 0, BQ_LRU, BQ_AGE, BQ_EMPTY, BQ_DIRTY, BQ_COUNT };
enum : uint32_t {  // b_lflags: one atomic word (see the header comment)
  BL_BUSY = 0x1,     // owned: taken by CAS
  BL_WANTED = 0x2,   // someone sleeps in the wait table for the busy release
  BL_RAHEAD = 0x4,   // read by read-ahead and not yet used (readahead_used counts the first hit)
  BL_REF = 0x8,      // released to LRU by a hit since the reclaimer last looked: a second chance
  BL_QSHIFT = 4,
  BL_QMASK = 0x70,   // the queue (BQ_*) the buffer is linked on; BQ_NONE: none. Changes only under [M]
};
inline uint8_t bl_queue(uint32_t w) { return static_cast<uint8_t>((w & BL_QMASK) >> BL_QSHIFT); }
inline uint32_t bl_q(uint8_t q) { return static_cast<uint32_t>(q) << BL_QSHIFT; }
constexpr size_t kHashShards = 64;
constexpr size_t kWaitSlots = 64;
constexpr uint32_t kMaxClustersPerVnode = 32;

struct vnode_bufs;
class bufcache;

struct buf {
  hash_hook b_hash;           // [M]+[S] its shard's hash, while the buffer has an identity
  list_hook b_freelist;       // [M] the queue its BL_Q bits name (maybe while busy: lazy removal); headers: hdr_free
  list_hook b_vnbufs;         // [M] b_vb->clean or b_vb->dirty
  std::atomic<uint32_t> b_lflags{0};  // CAS: busy, wanted, ref, rahead; BL_Q bits only under [M]
  uint32_t b_wfails = 0;         // [M] failed writes of this data, counted write_retry_interval_ms apart
  uint64_t b_wfail_ms = 0;       // [M] when the last counted failure was
  uint64_t b_timestamp_ms = 0;   // [M] when it became dirty
  uint64_t b_dirtyseq = 0;       // [M] bufcache::dirty_seq when it became dirty (flush-with-wait bound)
  std::atomic<uint32_t> b_flags{0};  // owner (busy holder) or [M]
  int b_error = 0;               // owner
  uint32_t b_bcount = 0;
  daddr64_t b_lblkno = 0;        // identity (with b_vp, b_vb): changes only while busy, under [M], unhashed
  daddr64_t b_blkno = BUF_UNMAPPED;  // owner; set when the buffer is filled (cluster_write maps the run) or read
  vnode* b_vp = nullptr;
  vnode_bufs* b_vb = nullptr;
  char* b_datap = nullptr;
  void* b_fsprivate = nullptr;
  void (*b_iodone)(buf*, void*) = nullptr;
  void* b_iodone_arg = nullptr;
  bufcache* b_cache = nullptr;
  dev::io_request b_io;          // the one request of this buffer's I/O: nothing allocated per I/O
  list_hook b_dep;               // dependency records (issue 15): empty today; see the header comment
  bool b_header = false;         // a cluster header (fixed at create: read without the mutex)
  std::vector<buf*> b_members;   // cluster header: its buffers in block order (capacity reserved once)
};

struct buf_key {
  const vnode* vp;
  daddr64_t lblkno;
};
struct buf_key_hash {
  size_t operator()(const buf_key& k) const {
    uint64_t h = reinterpret_cast<uintptr_t>(k.vp) * 0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(k.lblkno);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return static_cast<size_t>(h ^ (h >> 32));
  }
  size_t operator()(const buf& b) const { return (*this)(buf_key{b.b_vp, b.b_lblkno}); }
};
struct buf_key_eq {
  bool operator()(const buf& a, const buf& b) const { return a.b_vp == b.b_vp && a.b_lblkno == b.b_lblkno; }
  bool operator()(const buf_key& k, const buf& b) const { return k.vp == b.b_vp && k.lblkno == b.b_lblkno; }
  bool operator()(const buf& b, const buf_key& k) const { return k.vp == b.b_vp && k.lblkno == b.b_lblkno; }
};

using buf_freelist = bi::list<buf, bi::member_hook<buf, list_hook, &buf::b_freelist>, bi::constant_time_size<true>>;
using buf_vnlist = bi::list<buf, bi::member_hook<buf, list_hook, &buf::b_vnbufs>, bi::constant_time_size<true>>;
using buf_hash = bi::unordered_set<buf, bi::member_hook<buf, hash_hook, &buf::b_hash>, bi::hash<buf_key_hash>,
                                   bi::equal<buf_key_eq>, bi::power_2_buckets<true>, bi::constant_time_size<true>>;

// A write-behind cluster: dirty logical blocks [start, end) written sequentially.
struct wcluster {
  daddr64_t start, end;
};

// Per-vnode state, vnode::v_bufs. Created on first use under the cache mutex, freed by buf_vnode_reclaim.
struct vnode_bufs {
  vnode* vp = nullptr;
  list_hook vb_link;             // [M] bufcache::vnodes
  list_hook vb_dirtylink;        // [M] bufcache::dirty_vnodes while `dirty` is not empty
  buf_vnlist clean, dirty;       // [M] dirty: in the order the buffers became dirty (front = oldest)
  uint32_t numoutput = 0;        // [M] writes in flight (one per I/O: a cluster header counts once)
  std::condition_variable cv;    // [M] numoutput fell or pushing ended; notified only when waiters > 0
  uint32_t waiters = 0;          // [M]
  int error = 0;                 // [M] recorded write error, reported once by a flush with wait
  bool sticky = false;           // [M] data was dropped: every later flush with wait reports EIO
  uint32_t nfailed = 0;          // [M] buffers whose last write failed and that are kept (B_LOCKED)
  bool held = false;             // [M] the cache holds vp (vnode_hold) while nfailed > 0: no reclaim
  bool reclaiming = false;       // [M] buf_vnode_reclaim runs: the flusher keeps away
  bool pushing = false;          // [M] a push of this vnode runs (pushes are serialised)
  off_t size = INT64_MAX;        // [M] cluster_setsize
  // write-behind [M]
  wcluster cl[kMaxClustersPerVnode];
  uint32_t ncl = 0;
  bool sparse = false;
  // read-ahead [M]
  daddr64_t ra_last = -1;        // last block of the previous read (a read from 0 is sequential)
  daddr64_t ra_next = 0;         // first block not yet read ahead
  uint32_t ra_window = 0;        // blocks
};
using vb_list = bi::list<vnode_bufs, bi::member_hook<vnode_bufs, list_hook, &vnode_bufs::vb_link>,
                         bi::constant_time_size<true>>;
using vb_dirtylist = bi::list<vnode_bufs, bi::member_hook<vnode_bufs, list_hook, &vnode_bufs::vb_dirtylink>,
                              bi::constant_time_size<true>>;

// Counters, relaxed atomics so hot paths count without the mutex.
struct cache_counters {
  using C = std::atomic<uint64_t>;
  C misses{0}, evictions{0}, throttle_waits{0}, bdwrite_to_async{0};  // hits: per hash shard (hash_shard::hits)
  C reads{0}, writes{0}, read_errors{0}, write_errors{0}, dropped_dirty{0};
  C readahead_issued{0}, readahead_used{0}, cluster_pushes{0}, sparse_pushes{0};
  C flusher_runs{0}, flusher_writes{0};
  C write_hist[bufcache_stats::kSizeBuckets]{}, read_hist[bufcache_stats::kSizeBuckets]{};
  // decisions of the named policies
  C wb_grow{0}, wb_new{0}, wb_full_push{0}, wb_go_sparse{0};
  C ra_sequential{0}, ra_random{0}, ra_skipped{0};
  C flush_age{0}, flush_highwater{0}, flush_throttle{0};
  // metadata passes: skipped (an Age pass that could not take the allocation gate), unordered (a pressure
  // pass that wrote the metadata without it)
  C meta_gate_skipped{0}, meta_gate_unordered{0};
  C meta_data_left{0};  // age passes that left the metadata because a data buffer could not be written
  C failed_throttle{0};  // writers refused (EIO): failed writes alone filled the dirty allowance
};

// The allocation gate (buf.h, buf_alloc_hold; cache/alloc_gate.cpp). Its own mutex, a leaf.
class alloc_gate {
 public:
  void enter();  // shared: waits while the flusher holds or wants it
  void leave();
  // Exclusive, waiting at most timeout for the holders to leave (false: not taken, holders let in again).
  bool lock_exclusive(std::chrono::milliseconds timeout);
  void unlock_exclusive();

 private:
  std::mutex mtx_;
  std::condition_variable cv_;
  uint32_t holders_ = 0;
  bool wanted_ = false, exclusive_ = false;
};

class bufcache {
 public:
  mount* mp = nullptr;
  dev::device* device = nullptr;
  bufcache_config cfg;
  uint32_t bs = 0, bshift = 0, max_io_blocks = 0;
  size_t nbufs = 0;
  uint32_t highwater = 0, lowwater = 0;  // in buffers
  vnode* devvp = nullptr;

  std::mutex mtx;
  std::condition_variable free_cv;  // [M] a clean buffer became free, or the dirty count fell
  std::condition_variable hdr_cv;   // [M] a cluster header came back
  uint32_t free_waiters = 0, hdr_waiters = 0;  // [M]
  char* pool = nullptr;
  size_t pool_bytes = 0;
  bool pool_mapped = false;      // mmap'ed (huge pages advised) rather than aligned_alloc'ed
  std::unique_ptr<buf[]> bufs;
  std::unique_ptr<buf[]> hdrs;
  size_t nhdrs = 0;
  // The hash, split in kHashShards by the high bits of the key's hash, each with its own lock [S].
  struct alignas(64) hash_shard {
    std::mutex mtx;
    std::unique_ptr<buf_hash::bucket_type[]> buckets;
    std::unique_ptr<buf_hash> hash;  // [S]
    // Hits, counted in the line the hit has just locked: a cache-wide counter would be the one line
    // every hit writes. Summed by bufcache_getstats.
    std::atomic<uint64_t> hits{0};
  };
  hash_shard shards[kHashShards];
  // The wait table [W]: busy releases and synchronous I/O completions, by buffer address.
  struct alignas(64) wait_slot {
    std::mutex mtx;
    std::condition_variable cv;
  };
  wait_slot waits[kWaitSlots];
  buf_freelist q[BQ_COUNT];      // [M]
  buf_freelist hdr_free;         // [M]
  vb_list vnodes;                // [M] every vnode_bufs
  vb_dirtylist dirty_vnodes;     // [M] the vnode_bufs with dirty buffers, in the order they became dirty
  std::atomic<uint64_t> ndirty{0};  // written under [M]; read without it as a hint (throttling)
  // Buffers kept dirty after a failed write (B_LOCKED), in flight again or not; written under [M], read
  // without it as a hint. When they alone reach the high-water mark, writers get EIO instead of waiting
  // (dirty_throttle_policy, getblk_run).
  std::atomic<uint64_t> nfailed{0};
  bool holds_released = false;   // [M] unmount let the vnodes with failed writes go: no new holds
  uint64_t dirty_max = 0, dirty_seq = 0;  // [M]
  cache_counters n;
  alloc_gate gate;  // held shared by VNOP_WRITE's allocation and copy, exclusive by the flusher's metadata pass

  // flusher [M]
  std::thread flusher;
  std::condition_variable flusher_cv;
  bool flusher_stop = false;
  bool flusher_kick = false;

  ~bufcache();
};

inline bufcache* cache_of(const vnode* vp) { return vp->v_mount->mnt_cache; }
uint64_t now_ms();
int size_bucket(uint32_t blocks);

// ---- buf.cpp internals (L: called with the cache mutex held)
vnode_bufs* vb_get_locked(bufcache* c, vnode* vp);            // L; nullptr on ENOMEM
// Looks (vp, lblkno) up under its shard's [S]. Without [M] the answer is only a hint: take busy
// (lookup_busy) before trusting the identity. With [M] held it stays true until [M] is dropped.
buf* incore_locked(bufcache* c, vnode* vp, daddr64_t lblkno);
// The lock-free hit: looks up (vp, lblkno) and takes busy by CAS, both under [S]. Got: *bpp is busy with
// that identity. Busy: *bpp is the buffer another owner holds (wait with buf_wait_unbusy, then look up
// again: it may have a new identity by then). Miss: not in core.
enum class lookup_result { Got, Busy, Miss };
lookup_result lookup_busy(bufcache* c, vnode* vp, daddr64_t lblkno, buf** bpp);
// Sleeps until bp is not busy (returns at once if it is not); may wake spuriously. Hold no lock but busy
// buffers of no run ([M] and [S] must not be held: the holder may need them to release).
void buf_wait_unbusy(bufcache* c, buf* bp);
void vb_wait_locked(vnode_bufs* vb, std::unique_lock<std::mutex>& g);  // sleeps on vb->cv
void vb_notify_locked(vnode_bufs* vb);                                  // L: wakes vb->cv sleepers, if any
void free_notify_locked(bufcache* c);                                   // L: wakes free_cv sleepers, if any
// Takes a buffer for (vp, lblkno) without sleeping: an in-core one only if not busy and valid is wanted
// by the caller (*found = true), else a fresh one if a clean buffer is free. nullptr when it would sleep.
buf* getblk_nowait_locked(bufcache* c, vnode* vp, daddr64_t lblkno, bool* found);
void brelse_locked(bufcache* c, buf* bp);                      // L: releases busy
// Releases busy without [M] when the buffer stays on the queue it is on (not invalidated, B_DELWRI unchanged
// since it was taken). false: nothing done, release it with brelse_locked.
bool brelse_fast(bufcache* c, buf* bp);
// Run operations: one acquisition of [M] for a whole request.
// Takes busy buffers for the blocks [lbn, lbn + n) of vp in ascending order (n <= max_io_blocks) and returns
// how many it took, a prefix: it stops at a block another owner holds busy, or when no clean buffer can be
// reclaimed -- except for the first block, for which it waits as buf_getblk does, so the result is >= 1
// (0 only for ENOMEM, with RUN_ONLYVALID, or when no clean buffer is left and failed writes fill the dirty
// allowance: nfailed >= highwater, which cluster_write reports as EIO). Hits get B_CACHE; misses come back with B_DONE clear and
// b_blkno BUF_UNMAPPED. RUN_ONLYVALID: stops at the first block not in core with valid (B_DONE) data and
// never waits. Never sleeps while holding a buffer of the run.
enum : int { RUN_ONLYVALID = 0x1 };
size_t getblk_run(bufcache* c, vnode* vp, daddr64_t lbn, size_t n, int flags, buf** out);
// Releases n busy buffers, without [M] for those that stay on their queue (already dirty, or clean and
// back to LRU/AGE), else under one acquisition of [M]; dirty: marks each delayed-write (B_DELWRI|B_DONE).
void release_run(bufcache* c, buf** bps, size_t n, bool dirty);
void markclean_locked(bufcache* c, buf* bp);                   // L: a write starts: DELWRI off
void markdirty_locked(bufcache* c, buf* bp);                   // L: DELWRI on
void invalidate_locked(bufcache* c, buf* bp);                  // L: busy bp loses its identity
bool bbusy(buf* bp);  // takes busy by CAS if free (leaves it on its queue); any lock or none
// Starts a write of busy bp (a buffer or a cluster header) through VNOP_STRATEGY, counting it in flight.
void buf_startwrite(buf* bp);
// Waits until vp has fewer than max_async_per_vnode writes in flight (write throttling).
void vnode_async_throttle(bufcache* c, vnode_bufs* vb);
// Cluster headers: a pool fixed at bufcache_create.
buf* hdr_get(bufcache* c, vnode* vp, uint32_t flags);          // may sleep for one
void hdr_put_locked(bufcache* c, buf* h);                      // L
// A reference the flusher and bufcache_destroy take on a vnode they push: an iocount on a vnode in use, a
// hold on an idle one (kept by the cache's own hold for its failed writes): putting the iocount of an idle
// vnode could reclaim it in the flusher's thread. Never one being terminated. L.
enum class vnode_take { None, Ref, Hold };
vnode_take vnode_tryget_locked(vnode* vp);
void vnode_untake(vnode* vp, vnode_take how);  // vnode_put or vnode_drop; no cache lock held
struct taken_vnode {
  vnode* vp;
  vnode_take how;
};

int vnode_take_error(vnode* vp);  // the recorded write error, as a flush with wait reports it

// ---- push.cpp: writing a vnode's dirty buffers in sorted runs
enum class push_wait { Yes, No };
// Which dirty buffers a push takes: all, only those marked B_EARLY, or only the others (the flusher's
// ordered pass writes the device vnode's B_EARLY buffers, flushes, then the rest).
enum class push_class { All, Early, Late };
// Writes vp's dirty buffers (those dirtied before the call) of the class in logical order as one I/O per
// physical run of at most max_io_blocks. push_wait::Yes waits for busy dirty buffers and then for every
// write in flight. Serialised per vnode. Returns 0 or ENOMEM (write errors are recorded on the vnode).
// *found (if given) is false only when vp certainly had no dirty buffer of the class to push: an async
// push skipped because another push of vp runs, or one that failed with ENOMEM, sets it true.
// *incomplete (if given) is true when an async push left dirty buffers of the class behind: busy ones, or
// all of them because another push of vp was running (whose snapshot may be older).
int push_vnode(bufcache* c, vnode* vp, push_wait wait, push_class which = push_class::All, bool* found = nullptr,
               bool* incomplete = nullptr);
// Writes the given busy buffers (consecutive logical blocks of one vnode) as few I/Os as the mapping
// allows; completion releases them.
void write_run(bufcache* c, vnode* vp, buf** bps, size_t n);
// Reads the given busy, invalid buffers (consecutive logical blocks of one file vnode): maps them with
// VNOP_BLOCKMAP(VNODE_READ), zero-fills holes, issues one read per physical run. async: completion
// releases them; else waits and leaves them busy with the caller. Returns the first error (sync).
int read_run(bufcache* c, vnode* vp, buf** bps, size_t n, bool async, bool readahead);

// ---- flusher.cpp
void flusher_start(bufcache* c);
void flusher_stop(bufcache* c);
void flusher_wake_locked(bufcache* c);  // L

// ---- spec.cpp
int spec_create_devvp(bufcache* c);

// ---- cluster.cpp / readahead.cpp
void cluster_vnode_forget_locked(vnode_bufs* vb);  // L: drops write-behind and read-ahead state
void readahead_policy(bufcache* c, vnode* vp, daddr64_t first, daddr64_t last, off_t filesize, int ioflag);

}  // namespace vnopfs

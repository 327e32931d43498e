// buf.h: the buffer cache (cache/buf.cpp), after XNU bsd/vfs/vfs_bio.c.
//
// One cache per mount holds every block: file data by (file vnode, logical block), metadata by (the mount's
// device vnode mnt_devvp, physical block). All buffers are the mount's block size. The struct is private
// to cache/ (cache/buf_internal.h); everyone else uses the accessors below, as XNU's KPI does.
//
// Ownership
// - A buffer is either free (on a free list: LRU, AGE or EMPTY), or busy: owned by exactly one BufRef or
//   by exactly one I/O in flight. buf_getblk/buf_bread return a BufRef (move-only) that owns the busy
//   state; buf_brelse/buf_bdwrite/buf_bawrite/buf_bwrite consume it; a BufRef destroyed while still owning
//   its buffer releases it (buf_brelse) — no path can forget a release.
// - An async write (buf_bawrite, or a B_CALL buf) belongs to the I/O until buf_biodone, which releases it
//   (async) or hands it to the callback (B_CALL: the callback owns it and must release it).
// - Locks: a hit (buf_getblk of a block in core) takes no cache-wide lock: the lookup takes one of 64
//   hash-shard locks and the busy state is taken by CAS; a release that puts the buffer back where it was
//   (clean, or dirty and already dirty) is a CAS too. The cache mutex guards the free queues, the
//   per-vnode lists and the dirty accounting: a miss, the first dirtying of a buffer, an invalidation and
//   each I/O completion take it, once per run of blocks in the cluster layer. No cache lock is held across
//   I/O, a copy of data, a VNOP call or a callback. A buffer's identity (vnode, lblkno) changes only while
//   it is busy, so a pointer found without busy is re-checked after busy is taken. Everything else in a
//   busy buffer (data, b_blkno, b_error, flags other than B_DELWRI) belongs to its owner and changes
//   without any lock. Waiting is addressed: for a busy buffer or a sync I/O in a wait table hashed by
//   buffer address, for a vnode's writes on that vnode, for free buffers on the cache
//   (cache/buf_internal.h has the full rules and the lock order inside the cache).
//   Lock order (docs/design.md, "Lock order"): vnode lock -> filesystem locks -> buffer busy -> cache mutex
//   -> hash-shard / wait-slot locks (leaves). So a thread holding a busy buffer may take no vnode lock, and
//   no filesystem lock may be taken by a VNOP_STRATEGY/BLOCKMAP that the cache calls while a caller holds
//   that lock... blockmap takes the filesystem's own short locks only.
//
// Errors
// - buf_bread: EIO (device) or the strategy's error; no half-valid buffer stays behind (invalidated).
// - Writes nobody waits for (bdwrite, bawrite, flusher): a failed write leaves the data dirty (retried by
//   the next push) and records EIO on the vnode; the next buf_flushdirtyblks/cluster_push with a wait, and
//   so the next VNOP_FSYNC of that vnode, returns EIO. After max_write_retries (bufcache_config) failures
//   (failures closer together than write_retry_interval_ms count once) a buffer is dropped
//   and the vnode's error becomes sticky: every later fsync returns EIO (the data is lost; we never say it
//   is safe).
// - Failed writes keep their vnode (FreeBSD keeps B_DELWRI buffers on their vnode, whose hold count keeps it
//   from being recycled): while a file vnode has buffers kept dirty after a failed write (B_LOCKED), the
//   cache holds the vnode (vnode_hold, vnode.h). Its last reference still runs VNOP_INACTIVE, but not
//   VNOP_RECLAIM: the vnode stays idle in the mount's hash, a lookup finds it and reads the new bytes from
//   the cache, and the flusher (every flush_age), a sync or an fsync retries the writes. The hold goes when
//   the last such buffer is written, dropped after max_write_retries, or invalidated (truncate, an unlinked
//   file's end); the idle vnode is then reclaimed at its next vnode_put (the syncer's pass). Unmount gives
//   up: bufcache_release_holds, then vfs_reclaim_idle, whose VNOP_RECLAIM discards the data and reports it
//   (buf_vnode_reclaim returns EIO). Memory stays bounded: failed buffers are cache buffers (cache_bytes),
//   and a held vnode has at least one. When failed buffers alone reach the dirty high-water mark, cluster_write
//   refuses further delayed writes with EIO instead of waiting for the device (counted failed_throttle);
//   buf_getblk cannot fail, so a getblk waiting for a clean buffer is freed by the flusher's retries, at
//   worst when they drop the data after max_write_retries.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "vnopfs/vnops.h"

namespace vnopfs {

namespace dev { class device; }
struct mount;

// b_flags, XNU's names and values.
enum : uint32_t {
  B_READ = 0x1,        // read I/O (clear: write)
  B_ASYNC = 0x2,       // nobody waits: biodone releases the buffer
  B_NOCACHE = 0x4,     // do not keep after release (IO_NOCACHE)
  B_DELWRI = 0x8,      // dirty: delayed write pending
  B_LOCKED = 0x10,     // kept dirty after an error (never dropped silently)
  B_CLUSTER = 0x40,    // a cluster I/O header over several buffers (cache internal)
  B_META = 0x100,      // metadata (device vnode)
  B_PHYS = 0x2000,     // a header moving a uio's memory (buf_physio), no cached buffer (cache internal)
  B_FUA = 0x400,       // the write is stable at completion
  B_EARLY = 0x1000,    // metadata the flusher writes, and flushes, before other metadata (allocation bitmaps)
  B_CACHE = 0x10000,   // getblk found it in the cache
  B_DONE = 0x20000,    // data valid / I/O complete
  B_INVAL = 0x40000,   // contents invalid; released to EMPTY
  B_ERROR = 0x80000,   // the last I/O failed (buf_error says how)
  B_AGE = 0x200000,    // release to the AGE queue (reused first)
  B_CALL = 0x800000,   // biodone calls the callback, which owns the buffer
};

// buf_getblk operations
enum : int {
  BLK_READ = 0x1,
  BLK_WRITE = 0x2,
  BLK_META = 0x10,
  BLK_ONLYVALID = 0x100,  // only if in core: otherwise an empty BufRef
};

// buf_invalidateblks flags
enum : int { BUF_WRITE_DATA = 0x1, BUF_SKIP_META = 0x2, BUF_WAIT = 0x4 };

constexpr daddr64_t BUF_UNMAPPED = INT64_MIN;  // b_blkno of a file buffer not yet mapped by VNOP_BLOCKMAP

struct buf;

// ---- accessors (XNU KPI names)
char* buf_dataptr(const buf* bp);
uint32_t buf_count(const buf* bp);        // bytes of this I/O (block size; a cluster header: the run)
daddr64_t buf_lblkno(const buf* bp);      // logical block in its vnode (physical for the device vnode)
// physical block, or BUF_UNMAPPED. cluster_write sets it when it fills a buffer (one VNOP_BLOCKMAP(VNODE_READ)
// per run; holes stay unmapped), so a strategy must not assume a dirty file buffer arrives unmapped.
daddr64_t buf_blkno(const buf* bp);
void buf_setblkno(buf* bp, daddr64_t blkno);
uint32_t buf_flags(const buf* bp);
void buf_setflags(buf* bp, uint32_t flags);    // only B_NOCACHE, B_AGE, B_FUA, B_META, B_EARLY may be set this way
void buf_clearflags(buf* bp, uint32_t flags);
int buf_error(const buf* bp);
void buf_seterror(buf* bp, int error);    // sets B_ERROR too (0 clears both)
void buf_clear(buf* bp);                  // zero the data
void* buf_fsprivate(const buf* bp);
void buf_setfsprivate(buf* bp, void* p);
// vnode* buf_vnode(const buf* bp) is declared in vnops.h (VNOP dispatch needs it).

// ---- BufRef: owns a busy buffer
class BufRef {
 public:
  BufRef() = default;
  explicit BufRef(buf* bp) : bp_(bp) {}
  BufRef(BufRef&& o) noexcept : bp_(std::exchange(o.bp_, nullptr)) {}
  BufRef& operator=(BufRef&& o) noexcept;
  BufRef(const BufRef&) = delete;
  BufRef& operator=(const BufRef&) = delete;
  ~BufRef();  // buf_brelse if still owned

  buf* get() const { return bp_; }
  buf* operator->() const { return bp_; }
  explicit operator bool() const { return bp_ != nullptr; }
  char* data() const { return buf_dataptr(bp_); }
  // Gives up ownership without releasing: the caller hands the buffer to I/O (strategy) or a callback.
  buf* release() { return std::exchange(bp_, nullptr); }

 private:
  buf* bp_ = nullptr;
};

// ---- the cache
struct bufcache_config {
  uint32_t block_size = 4096;
  size_t cache_bytes = 256u << 20;      // bound on buffer memory (min 1 MiB); never exceeded
  // Dirty high-water mark, percent of buffers: past it buf_bdwrite starts the write at once (XNU: 3/4 of
  // headers turns bdwrite into bawrite) and the flusher pushes early.
  uint32_t dirty_highwater_pct = 75;
  uint32_t dirty_lowwater_pct = 50;     // the flusher's early push stops here
  uint32_t max_async_per_vnode = 15;    // async writes in flight per vnode (XNU VNODE_ASYNC_THROTTLE)
  uint32_t flush_age_ms = 30000;        // the flusher writes delayed buffers older than this
  uint32_t flusher_period_ms = 1000;
  uint32_t max_write_retries = 3;       // failed writes of one buffer before its data is dropped (buf.h Errors)
  // Failures of one buffer less than this apart count once toward max_write_retries: a burst of fsyncs,
  // or the write-back of each last reference, must not use up in milliseconds the retries meant to wait
  // for a device to come back (with the defaults the flusher's retries, flush_age_ms apart, drop the data
  // after about a minute). 0: every failure counts.
  uint32_t write_retry_interval_ms = 5000;
  // cluster layer
  uint32_t max_io_bytes = 1u << 20;     // largest single device I/O; a full write cluster is pushed at once
  uint32_t clusters_per_vnode = 8;      // write-behind clusters tracked per vnode before going sparse
  uint32_t readahead_max_bytes = 2u << 20;  // read-ahead window cap
};

struct bufcache_stats {
  uint64_t buffers = 0, block_size = 0;
  uint64_t hits = 0, misses = 0, evictions = 0;
  uint64_t dirty = 0, dirty_max = 0, busy = 0;
  uint64_t throttle_waits = 0;          // writers that had to wait for clean buffers or async slots
  uint64_t bdwrite_to_async = 0;        // delayed writes started early past the high-water mark
  uint64_t reads = 0, writes = 0;       // device I/Os issued by the cache and cluster layer
  uint64_t read_errors = 0, write_errors = 0, dropped_dirty = 0;
  uint64_t failed = 0;                  // buffers kept dirty after a failed write (B_LOCKED), now
  uint64_t failed_throttle = 0;         // writes refused with EIO: failed buffers filled the dirty allowance
  uint64_t readahead_issued = 0, readahead_used = 0;  // blocks
  uint64_t cluster_pushes = 0, sparse_pushes = 0, flusher_runs = 0, flusher_writes = 0;
  uint64_t meta_gate_skipped = 0, meta_gate_unordered = 0;  // flusher metadata passes (buf_alloc_hold)
  uint64_t meta_data_left = 0;  // age passes that left the metadata: a dirty data buffer could not be written
  // write I/O size histogram: bucket i = sizes in [2^i, 2^(i+1)) blocks, i < 12
  static constexpr int kSizeBuckets = 12;
  uint64_t write_size_hist[kSizeBuckets] = {};
  uint64_t read_size_hist[kSizeBuckets] = {};
};

class bufcache;

// Creates mp->mnt_cache over `device` and the device vnode mp->mnt_devvp (VSYSTEM; its table's strategy
// submits to the device, bwrite is vn_bwrite, fsync flushes its dirty metadata), and starts the flusher.
// Errors: EINVAL (block size not a power of two in [512, 64 KiB], cache smaller than 1 MiB or than 64
// buffers), ENOMEM.
int bufcache_create(mount* mp, dev::device* device, const bufcache_config& cfg);
// Flushes everything dirty (waits), stops the flusher, frees the device vnode and the cache. Returns the
// first write error met (the cache is freed anyway). Every other vnode must be reclaimed before.
int bufcache_destroy(mount* mp);
// Unmount, after its last sync: lets go of every vnode the cache holds for its failed writes (buf.h,
// "Errors"), logging each, and takes no new hold. The filesystem then calls vfs_reclaim_idle, whose
// VNOP_RECLAIMs discard the data (buf_vnode_reclaim returns EIO). Takes the cache mutex; hold no busy buffer.
void bufcache_release_holds(mount* mp);
bufcache_stats bufcache_getstats(const mount* mp);
const bufcache_config& bufcache_getconfig(const mount* mp);

// ---- XNU's buffer API
// Returns the buffer for (vp, blkno), busy, waiting while another owner has it. Found in core: B_CACHE
// set, data valid if B_DONE. Not found: a reclaimed buffer, B_DONE clear (contents undefined), b_blkno
// BUF_UNMAPPED for a file vnode and == blkno for the device vnode. Never fails except with BLK_ONLYVALID
// (empty when not in core). May wait for clean buffers (write throttling) when the cache is full of dirty
// ones: it pushes dirty buffers itself.
BufRef buf_getblk(vnode* vp, daddr64_t blkno, int operation);
// getblk + read if not valid, waiting. On error returns the errno, *bpp empty, nothing half-valid kept.
int buf_bread(vnode* vp, daddr64_t blkno, BufRef* bpp);
int buf_meta_bread(vnode* vp, daddr64_t blkno, BufRef* bpp);
// bread of blkno, plus async read-ahead of the listed blocks that are not in core.
int buf_breadn(vnode* vp, daddr64_t blkno, const daddr64_t* rablks, int nrablks, BufRef* bpp);
// Synchronous write: returns the I/O error; the buffer is released either way (clean on success; on error
// it stays dirty with B_LOCKED so the data is not lost and the error is recorded on the vnode).
int buf_bwrite(BufRef bp);
// Asynchronous write via VNOP_BWRITE; waits first if the vnode has max_async_per_vnode writes in flight.
int buf_bawrite(BufRef bp);
// Delayed write: marks dirty (B_DELWRI, B_DONE) and releases; past the high-water mark starts it now.
void buf_bdwrite(BufRef bp);
void buf_brelse(BufRef bp);
// Waits for the buffer's I/O to finish: 0, b_error, or EIO.
int buf_biowait(buf* bp);
// I/O completion: exactly once per strategy. Runs the B_CALL callback (which then owns the buffer), or
// releases an async buffer, or wakes the waiter. Called on device completion threads (or inside buf_strategy).
void buf_biodone(buf* bp);
// Sets B_CALL (and B_ASYNC): biodone calls fn(bp, arg) which owns bp and must buf_brelse it (BufRef(bp)).
void buf_setcallback(buf* bp, void (*fn)(buf* bp, void* arg), void* arg);

// Submits bp to the mount's device at b_blkno * block size (XNU buf_strategy): what VNOP_STRATEGY calls after
// mapping; a cluster header goes out as one vectored request. Returns 0; completion (errors too) ends in
// buf_biodone, for a sync read (no B_ASYNC/B_CALL: IO_ATTR_INLINE) maybe before return: hold no cache lock.
int buf_strategy(vnode* devvp, buf* bp);
// Direct I/O (XNU cluster_io's direct path; the DO_DIRECT_IO of an IRP): moves len bytes (a multiple of the
// block size) between the uio's memory and the device at physical block blkno, through VNOP_STRATEGY of vp
// (a B_PHYS header of vp's, logical block lblkno), and waits. No buffer of the cache holds the data, and
// nothing is looked up or invalidated: keeping cached copies of the range coherent is the caller's job.
// The uio advances by len on success and not at all on error. A device that refuses the memory's alignment
// (O_DIRECT: EINVAL) gets the I/O again through an aligned bounce buffer. Errors: EIO (device), ENOMEM.
// The caller holds no cache lock and no busy buffer (it may wait for a header).
int buf_physio(vnode* vp, daddr64_t lblkno, daddr64_t blkno, uio* u, size_t len);

// The allocation gate, held shared (RAII) by a filesystem from the moment it points metadata at a newly
// allocated data block until that block's data is dirty in the cache or written (buf_physio): in ext2,
// VNOP_WRITE's allocation and copy of each round. The flusher holds it exclusive from its data step until
// its metadata writes are issued, so no pointer it writes can reach the image before the data it points
// at (docs/durability.md, "Ordering"). A holder may do I/O and wait for busy buffers; it waits to enter at
// most one metadata pass. Never nest two holds in one thread (a waiting flusher would stop the second).
// No cache lock may be held when it is constructed. A vnode without a cache (none mounted) holds nothing.
class buf_alloc_hold {
 public:
  explicit buf_alloc_hold(vnode* vp);
  ~buf_alloc_hold();
  buf_alloc_hold(const buf_alloc_hold&) = delete;
  buf_alloc_hold& operator=(const buf_alloc_hold&) = delete;

 private:
  bufcache* c_;
};

// The default VNOP_BWRITE: buf_bwrite (sync) or the async start for B_ASYNC. Name it in tables that use the
// cache (XNU vn_bwrite).
int vn_bwrite(vnop_bwrite_args* ap);

// Invalidates vp's buffers. BUF_WRITE_DATA writes dirty ones first (else dirty data is discarded);
// BUF_SKIP_META leaves B_META buffers. Waits for busy buffers. Returns the first write error.
int buf_invalidateblks(vnode* vp, int flags);
// Discards buffers of vp with first <= lblkno < last (dirty data dropped, in-flight I/O waited for):
// truncate calls it before freeing the blocks.
void buf_invalidate_range(vnode* vp, daddr64_t first, daddr64_t last);
// Discards the one buffer (vp, blkno) if present: the filesystem calls it on mnt_devvp for every block it
// frees, so a stale metadata buffer can never be written over the block's next owner.
void buf_invalblkno(vnode* vp, daddr64_t blkno);
// Writes vp's dirty buffers (async); with wait (MNT_WAIT) waits for all of them and for every write in
// flight, then returns the vnode's recorded write error (EIO) if any since the last report, else 0.
int buf_flushdirtyblks(vnode* vp, int wait);
// Waits until vp has no writes in flight.
void buf_vnode_waitforwrites(vnode* vp);
// True when vp has dirty buffers.
bool buf_vnode_isdirty(vnode* vp);
// Called from VNOP_RECLAIM: writes nothing (the filesystem flushed, or the file is deleted), discards every
// buffer of vp, frees vp->v_bufs. Returns EIO when that lost something a caller was still owed: dirty data
// (its writes failed, so the filesystem's flush could not clean it) or a write error no flush has reported
// yet; else 0. A filesystem keeps that error for the inode's next vnode (buf_vnode_set_lost). Since the
// cache holds a vnode with failed writes (see "Errors"), dirty data reaches a reclaim only at unmount
// (bufcache_release_holds) or when a write failed after the vnode's VNOP_INACTIVE had returned.
int buf_vnode_reclaim(vnode* vp);
// Marks vp as having lost written data: every later buf_flushdirtyblks(MNT_WAIT) of it returns EIO, as
// after a write dropped for good (max_write_retries). For a new vnode of an inode whose previous vnode's
// reclaim returned EIO. Returns ENOMEM when the per-vnode state cannot be allocated (nothing changed).
int buf_vnode_set_lost(vnode* vp);
// True when a write of vp's buffers failed and no flush with wait has reported it yet, or vp lost written
// data for good (a write dropped after max_write_retries, or buf_vnode_set_lost). Takes nothing: the
// next buf_flushdirtyblks(MNT_WAIT) of vp still reports it.
bool buf_vnode_write_failed(vnode* vp);

}  // namespace vnopfs

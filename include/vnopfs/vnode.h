// vnode.h: the in-memory file, after XNU bsd/sys/vnode_internal.h, and the ioflag bits of VNOP_READ/WRITE.
//
// Ownership
// - A vnode is created by a filesystem (vnode_create) and freed by the VFS core after VNOP_RECLAIM.
// - Two reference counts, each with one kind of owner, both guarded by the mount's vnode mutex:
//     v_iocount  short-term: held across a call (vnode_get/vnode_put, vfs_hash_get, vnode_create);
//     v_usecount long-term: held by whoever keeps the vnode between calls (vnode_ref/vnode_rele): the FUSE
//                frontend holds one per inode-table entry (its lookup count is its own business, not ours),
//                a tool or test holds its own.
//   When both reach zero the vnode is marked VL_TERMINATE, VNOP_INACTIVE runs (an unlinked inode is freed
//   there), then VNOP_RECLAIM (the filesystem drops v_data and the cache drops its buffers), then the vnode
//   is removed from the mount's hash and deleted. vfs_hash_get waits for a terminating vnode to go.
// - A third count, v_holdcount (vnode_hold/vnode_drop, XNU's names; FreeBSD's vhold/vdrop), keeps a vnode
//   from being reclaimed, not from going inactive: the buffer cache holds a vnode whose dirty data failed to
//   be written, so the data stays cached and is retried instead of being discarded by VNOP_RECLAIM
//   (include/vnopfs/buf.h, "Errors"). When iocount and usecount reach zero VNOP_INACTIVE runs as always;
//   if the vnode is held then, it is not reclaimed but kept *idle* (VL_INACTIVE, still in the hash, no
//   references). vfs_hash_get returns an idle vnode like any other (the filesystem's lookups see its cached
//   data), and its next last reference runs VNOP_INACTIVE again. vnode_drop never reclaims (it may be called
//   under the cache's locks and on device completion threads): an idle vnode whose last hold went is
//   reclaimed by the next vnode_put of it (a sync's or the syncer's pass over the mount's vnodes takes and
//   puts one) or by vfs_reclaim_idle (unmount).
// - v_lock is the vnode lock of the VNOP lock protocol (vnop.def): a reader/writer lock taken by callers of
//   VNOP_* as each op's entry column says. It plays the role of HFS's truncate lock: shared for I/O inside
//   EOF, exclusive for size changes. It is never held while waiting on another vnode's lock unless taken
//   with vn_lock_pair (address order).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <shared_mutex>
#include <thread>

namespace vnopfs {

struct mount;
struct vnop_table;
struct vnode_bufs;  // the buffer cache's per-vnode state (cache/), opaque here

enum class vtype : uint8_t { VNON, VREG, VDIR, VBLK, VCHR, VLNK, VSOCK, VFIFO };
vtype vtype_from_mode(mode_t mode);
const char* vtype_name(vtype t);

// ioflag bits for VNOP_READ / VNOP_WRITE, XNU's names and values (bsd/sys/vnode.h); only the bits vnopfs
// sets or reads are defined (XNU's others: IO_NDELAY, IO_NOZEROFILL, IO_NOZEROVALID, IO_CLOSE, IO_DEFWRITE, ...).
enum : int {
  IO_UNIT = 0x0001,         // all or nothing: on error, size and uio are restored
  IO_APPEND = 0x0002,       // write at end of file (offset taken under the exclusive vnode lock)
  IO_SYNC = 0x0004,         // data and the metadata needed to reach it are stable before return
  IO_TAILZEROFILL = 0x0040, // zero [end of write, tailOff) in the last block
  IO_HEADZEROFILL = 0x0080, // zero [headOff, start of write) in the first block
  IO_NOCACHE = 0x0800,      // the data does not stay in the cache (written through, buffers released)
  IO_RAOFF = 0x1000,        // no read-ahead for this read
  IO_DSYNC = 0x4000,        // IO_SYNC for the data and only the metadata needed to read it (O_DSYNC)
};

// fsync / VFS_SYNC waitfor, XNU's values. MNT_LAZY (VFS_SYNC only, FreeBSD's name for what its syncer
// asks): only in-core metadata (inodes changed in memory, the superblock's counts) is copied into its
// buffers as delayed writes, which the flusher writes once they are older than the flush age; no file data
// is pushed and nothing is waited for.
enum : int { MNT_WAIT = 1, MNT_NOWAIT = 2, MNT_DWAIT = 4, MNT_LAZY = 8 };

// The vnode lock: a shared_mutex that also knows its exclusive owner and how many hold it shared, so
// the VNOP_* wrappers can check the protocol. "held shared" cannot tell *which* threads hold it.
class vnode_lock {
 public:
  void lock() { m_.lock(); owner_.store(std::this_thread::get_id(), std::memory_order_relaxed); }
  void unlock() { owner_.store(std::thread::id(), std::memory_order_relaxed); m_.unlock(); }
  bool try_lock() {
    if (!m_.try_lock()) return false;
    owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    return true;
  }
  void lock_shared() { m_.lock_shared(); shared_.fetch_add(1, std::memory_order_relaxed); }
  void unlock_shared() { shared_.fetch_sub(1, std::memory_order_relaxed); m_.unlock_shared(); }
  bool try_lock_shared() {
    if (!m_.try_lock_shared()) return false;
    shared_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  bool held_exclusive() const { return owner_.load(std::memory_order_relaxed) == std::this_thread::get_id(); }
  bool held_shared() const { return shared_.load(std::memory_order_relaxed) > 0; }
  bool held() const { return held_exclusive() || held_shared(); }

 private:
  std::shared_mutex m_;
  std::atomic<std::thread::id> owner_{};
  std::atomic<int> shared_{0};
};

enum : uint32_t {  // v_flag
  VROOT = 0x1,    // the root directory of its mount
  VSYSTEM = 0x2,  // the device vnode: metadata buffers by physical block
};
enum : uint32_t {  // v_facts: what the filesystem knows about the file, for answers without a VNOP
  VX_NOSECXATTR = 0x1,  // no security.* extended attribute: getxattr of any security.* name is ENODATA
  VX_NOCAPXATTR = 0x2,  // no security.capability: a write, truncate or chown has no capability to remove
};
enum : uint32_t {  // v_lflag, guarded by the mount's vnode mutex
  VL_TERMINATE = 0x1,
  VL_DEAD = 0x2,
  VL_INACTIVE = 0x4,  // idle: VNOP_INACTIVE ran, no reference came back since, kept by v_holdcount
  VL_RECYCLE = 0x8,   // vnode_recycle: reclaimed at the end of this VNOP_INACTIVE, held or not
};

struct vnode {
  vtype v_type = vtype::VNON;
  uint32_t v_flag = 0;
  mount* v_mount = nullptr;
  const vnop_table* v_op = nullptr;  // the top of its layer stack; changed only by vfs_set_vnops (atomically)
  void* v_data = nullptr;      // the filesystem's node (ext2: its in-core inode); freed in VNOP_RECLAIM
  uint64_t v_id = 0;           // the key in the mount's vnode hash (ext2: the inode number)
  vnode_lock v_lock;
  vnode_bufs* v_bufs = nullptr;  // owned by the buffer cache; created on first use, freed at reclaim
  // VX_* facts (Linux's S_NOSEC idea: the VFS skips a question the filesystem has answered once). Only the
  // filesystem changes them: it sets a fact from what it has just read while holding the vnode lock (at
  // least shared), and clears it (release) before a change that ends it can be seen, under the exclusive
  // lock. Anyone may read them without a lock (acquire); 0 means "unknown, ask the VNOP".
  std::atomic<uint32_t> v_facts{0};

  // guarded by mount::mnt_vnode_mutex
  uint32_t v_lflag = 0;
  int32_t v_iocount = 0;
  int32_t v_usecount = 0;
  int32_t v_holdcount = 0;  // holds: no VNOP_RECLAIM while > 0 (vnode_hold)
};

// Parameters for vnode_create. The new vnode has v_iocount 1 and is not yet in the hash.
struct vnode_param {
  vtype type;
  const vnop_table* ops;
  void* fsnode;
  uint64_t id;
  uint32_t flags = 0;
};
int vnode_create(mount* mp, const vnode_param& p, vnode** vpp);

void vnode_get(vnode* vp);   // +iocount; vp must already be referenced by the caller
void vnode_put(vnode* vp);   // -iocount; may run inactive/reclaim (caller must not hold vp's lock)
void vnode_ref(vnode* vp);   // +usecount; caller holds an iocount
void vnode_rele(vnode* vp);  // -usecount; may run inactive/reclaim
// +holdcount: vp is not reclaimed while held (an idle vnode stays in the hash). The caller knows vp is not
// freed meanwhile: it holds a reference or a hold, or vp has I/O in flight (reclaim waits for it). Any
// thread, under any lock that mnt_vnode_mutex may nest in (the cache's mutex); a vnode already being
// reclaimed is not saved by it.
void vnode_hold(vnode* vp);
// -holdcount. Never runs inactive or reclaim (same callers as vnode_hold): an idle vnode left without holds
// is reclaimed by its next vnode_put or by vfs_reclaim_idle.
void vnode_drop(vnode* vp);
// Called by a filesystem's VNOP_INACTIVE that ended the file (an unlinked inode freed: its number may serve
// another file next): vp is reclaimed when inactive returns, never kept idle; the terminating thread waits
// for the holds of others (the flusher's, for the length of a push) to go first (XNU's vnode_recycle).
void vnode_recycle(vnode* vp);
// Reclaims every idle vnode of mp that has no hold left (VNOP_RECLAIM in this thread). Unmount calls it after
// the cache let its holds go (bufcache_release_holds). Hold no vnode lock or filesystem lock.
void vfs_reclaim_idle(mount* mp);
// How many vnodes of mp are in use: referenced, or being terminated. Idle vnodes (VL_INACTIVE) do not count.
size_t vfs_busy_vnodes(mount* mp);

// The mount's vnode hash, keyed by v_id (FreeBSD vfs_hash). get returns the vnode with +iocount, or ENOENT.
// insert adds vp; if another vnode with the same id got there first, *existing gets it (+iocount), vp is
// left out of the hash and the caller drops it (vnode_put). Returns 0 either way.
int vfs_hash_get(mount* mp, uint64_t id, vnode** vpp);
int vfs_hash_insert(vnode* vp, vnode** existing);

// Locks two vnodes exclusive in address order (nullptr and duplicates allowed): the only way to hold more
// than one vnode lock. vn_unlock_pair releases what vn_lock_pair took.
void vn_lock_pair(vnode* a, vnode* b);
void vn_unlock_pair(vnode* a, vnode* b);

// Holds one iocount (vnode_get/vnode_put) for a scope: what a lookup or vget returned is put when the
// holder goes. out() hands the slot to a call that returns a vnode with +iocount. Not FreeBSD's vref(),
// which takes a usecount.
class iocount_ref {
 public:
  iocount_ref() = default;
  explicit iocount_ref(vnode* vp) : vp_(vp) {}
  ~iocount_ref() { reset(); }
  iocount_ref(const iocount_ref&) = delete;
  iocount_ref& operator=(const iocount_ref&) = delete;
  iocount_ref(iocount_ref&& o) noexcept : vp_(o.vp_) { o.vp_ = nullptr; }
  vnode* get() const { return vp_; }
  vnode** out() { reset(); return &vp_; }
  void reset() { if (vp_) vnode_put(vp_); vp_ = nullptr; }
  explicit operator bool() const { return vp_ != nullptr; }
 private:
  vnode* vp_ = nullptr;
};

// RAII guards for the vnode lock.
class vn_exclusive {
 public:
  explicit vn_exclusive(vnode* vp) : vp_(vp) { vp_->v_lock.lock(); }
  ~vn_exclusive() { if (vp_) vp_->v_lock.unlock(); }
  vn_exclusive(const vn_exclusive&) = delete;
  vn_exclusive& operator=(const vn_exclusive&) = delete;
 private:
  vnode* vp_;
};
class vn_shared {
 public:
  explicit vn_shared(vnode* vp) : vp_(vp) { vp_->v_lock.lock_shared(); }
  ~vn_shared() { if (vp_) vp_->v_lock.unlock_shared(); }
  vn_shared(const vn_shared&) = delete;
  vn_shared& operator=(const vn_shared&) = delete;
 private:
  vnode* vp_;
};

}  // namespace vnopfs

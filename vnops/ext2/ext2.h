// ext2.h: the internal API of vnops/ext2, shared by its files.
//
// Objects
// - ext2_mount (mount::mnt_data): the in-core superblock and group descriptors, geometry, per-group locks.
// - ext2_inode_info (vnode::v_data): the in-core copy of one on-disk inode plus its lock. One vnode per
//   inode: ext2_iget goes through the mount's vnode hash (vfs_hash_get / vfs_hash_insert).
//
// Locks, outermost first (docs/design.md, "Lock order"):
//   vnode lock (v_lock, taken by VNOP callers per vnop.def)
//   -> ext2_inode_info::i_lock (metadata of that inode: the on-disk copy, block map, size)
//   -> ext2_group::g_lock (bitmaps and counts of one group; taken inside balloc/ialloc/bfree/ifree only)
//   -> ext2_mount::m_sb_lock (superblock counters; leaf)
//   -> buffer busy -> cache internals.
// Rules:
// - Never hold i_lock across cluster_write/cluster_read/cluster_push/buf_invalidate_range or a buf_getblk of
//   a *file* vnode's buffer: the cluster layer calls VNOP_BLOCKMAP, which takes i_lock. Metadata buffers
//   (mnt_devvp) may be taken under i_lock.
// - Never take two i_locks at once, except with ext2_ilock_pair (address order).
// - Fields marked [i_lock] are read and written under i_lock; [const] never change after iget.
//
// VNOP_WRITE locking for callers (the FUSE frontend): VNOP_WRITE accepts the vnode lock shared or
// exclusive (vnop.def: L). Take it SHARED only for a write that stays inside EOF without IO_APPEND; take it
// EXCLUSIVE for IO_APPEND and for writes that may extend the file. A write called with the lock shared that
// finds it would extend the file (EOF moved, or the caller guessed wrong) moves nothing and returns
// ERESTART: retake the lock exclusive and call again. Reads (VNOP_READ) take it shared.
//
// Errors are errno values; nothing throws out of vnops/ext2 (std::bad_alloc is caught at VNOP boundaries
// and becomes ENOMEM). Corruption: ext2_corrupt() logs one line and returns EIO.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "vnopfs/buf.h"
#include "vnopfs/mount.h"
#include "vnopfs/result.h"
#include "vnopfs/vnops.h"
#include "vnops/ext2/acl.h"
#include "vnops/ext2/format.h"

namespace vnopfs::ext2 {

// ---------------------------------------------------------------------------------------------------------
// Mount

struct ext2_group {
  std::mutex g_lock;
  ext2_group_desc g_desc{};    // [g_lock] in-core copy; written back to the GDT block at sync
                               // (location fields bg_*_bitmap/bg_inode_table are [const] after mount)
  bool g_dirty = false;        // [g_lock] g_desc differs from the GDT buffer
  bool g_bitmap_checked = false;  // [g_lock] the block bitmap was checked to cover the group's metadata
};

// The write path of a mount: which table it was mounted as (vnops/registry.h; docs/experiments.md). The
// rest of vnops/ext2 is the same for all four; the branches are:
//   cluster  (table "ext2") file data through the cluster layer: cluster_write/cluster_read (write.cpp,
//            read.cpp), write-behind clusters, read-ahead, runs coalesced at push.
//   buf      ("ext2-buf") the classic BSD buffer path (bufpath.cpp): VNOP_WRITE/VNOP_READ bread, copy and
//            bdwrite one block at a time; the mount's cache is made with max_io_bytes = one block and no
//            read-ahead, so every push, fsync and flusher write is one block per device write.
//   direct   ("ext2-direct") file data never cached (direct.cpp): VNOP_WRITE/VNOP_READ do buf_physio from
//            the uio; partial blocks are read-modify-written through a bounce block, which needs the vnode
//            lock exclusive (a shared write with a partial block returns ERESTART, as an extending one does).
//            Metadata is cached as usual.
//   sync     ("ext2-sync") the cluster path, and the table (syncpath.cpp) makes every op that changed
//            something write the data and every metadata block it dirtied, waited for, then flush the device,
//            before it returns.
enum class ext2_wpath : uint8_t { cluster, buf, direct, sync };

// One table of the registry: the vfsops that mount it (its name is the table's), the VNOP table its vnodes
// get, the write path the mount records.
struct ext2_variant {
  const vfsops* vfs;
  const vnop_table* vnops;
  ext2_wpath wpath;
  const char* description;
};
// The four, "ext2" first. ext2_table_init() must have run (it builds the tables).
const std::vector<ext2_variant>& ext2_variants();

struct ext2_mount {
  mount* m_mp = nullptr;
  ext2_wpath m_wpath = ext2_wpath::cluster;  // [const] set by the vfsops the mount was made with
  uint64_t m_direct_min = 0;  // [const] mount_args::direct_min: cluster-path writes this large go direct
  vnode* m_devvp = nullptr;

  // Geometry [const after mount]
  uint32_t m_block_size = 0;       // bytes
  uint32_t m_log_block_size = 0;   // log2(m_block_size)
  uint32_t m_blocks_count = 0;
  uint32_t m_first_data_block = 0;
  uint32_t m_blocks_per_group = 0;
  uint32_t m_inodes_per_group = 0;
  uint32_t m_inodes_count = 0;
  uint32_t m_groups_count = 0;
  uint32_t m_inode_size = 0;       // bytes on disk (128 for revision 0)
  uint32_t m_inodes_per_block = 0;
  uint32_t m_itb_per_group = 0;    // inode-table blocks per group
  uint32_t m_first_ino = 0;        // first non-reserved inode
  uint32_t m_addr_per_block = 0;   // block numbers per indirect block
  uint32_t m_desc_per_block = 0;
  uint32_t m_gdt_blocks = 0;       // blocks of the descriptor table
  uint32_t m_reserved_gdt = 0;     // s_reserved_gdt_blocks (resize_inode)
  uint32_t m_rev = 0;
  bool m_filetype = false;         // incompat filetype: dirents carry a type byte
  bool m_large_file = false;
  bool m_sparse_super = false;
  bool m_ext_attr = false;
  bool m_posix_acl = false;        // [const] ACLs on: mounted with posix_acl and the image has ext_attr
  bool m_dir_index = false;        // compat dir_index: keep hashed dirs intact, clear EXT2_INDEX_FL on change
  uint64_t m_max_file_size = 0;    // bytes: min(block-map limit, 2^32 - 1 without large_file, i_blocks limit)

  bool m_sparse_super2 = false;

  // State
  bool m_mounted_rw = false;           // [const] mounted read-write: unmount writes the clean state
  std::atomic<bool> m_rdonly{false};   // set at mount or by s_errors=remount-ro after corruption
  std::mutex m_sb_lock;
  ext2_super_block m_sb{};             // [m_sb_lock] in-core superblock; counts recomputed at sync
  std::unique_ptr<ext2_group[]> m_groups;  // m_groups_count entries
  // Allocatable counts: the groups' free counts minus outstanding reservations (ext2_reserve_blocks).
  std::atomic<int64_t> m_free_blocks{0};
  std::atomic<int64_t> m_free_inodes{0};
  uint64_t m_overhead_blocks = 0;      // [const] metadata blocks (statfs f_blocks excludes them)
  std::atomic<uint32_t> m_gen_seed{0}; // i_generation of new inodes
  std::atomic<uint32_t> m_last_group{0};  // rotor for inode allocation of new directories
  // Serializes VNOP_RENAME (and the ancestor walk of its subtree check); taken before any vnode lock:
  // m_rename_lock -> vnode locks -> i_lock. rename.cpp takes it; nothing else does. (R1)
  std::mutex m_rename_lock;
  // Deferred frees (docs/durability.md, rule 6): blocks and inodes whose last on-disk pointer or name was
  // removed by a synchronous write that has completed, but is not yet known stable (no device flush since).
  // Their bitmap bits stay set until ext2_release_deferred has issued a device flush, so a power loss can
  // never leave a block or inode reachable from its old owner after its new owner wrote it. Leaf lock.
  std::mutex m_pending_lock;
  std::vector<std::pair<uint32_t, bool>> m_pending_ifree;        // [m_pending_lock] (ino, was a directory)
  std::vector<std::pair<uint32_t, uint32_t>> m_pending_bfree;    // [m_pending_lock] (first block, count)
  std::atomic<uint64_t> m_pending_nblocks{0};  // blocks in m_pending_bfree: statfs counts them as free
  // New names whose in-core inode is reclaimed before an fsync wrote their entries (fsync.cpp): reclaim
  // keeps the inode's i_new_parent in m_names_kept, and iget gives it back. Beyond m_names_kept_max
  // entries (or without memory) the trail is lost instead: reclaim bumps m_names_lost; a VFS_SYNC that
  // started after the bump has written every entry, and stores the count it saw in m_names_synced. While
  // they differ, fsync of a file with a new name syncs the whole mount instead of walking up. A VFS_SYNC
  // also empties m_names_kept of what it wrote. m_names_lock is a leaf.
  std::mutex m_names_lock;
  std::unordered_map<uint32_t, uint32_t> m_names_kept;  // [m_names_lock] ino -> i_new_parent
  size_t m_names_kept_max = 65536;                      // [const after mount; tests lower it]
  std::atomic<uint64_t> m_names_lost{0};
  std::atomic<uint64_t> m_names_synced{0};
  // Inodes whose reclaimed vnode lost written data (buf_vnode_reclaim returned EIO: its writes failed):
  // iget marks the next vnode with buf_vnode_set_lost, so every later fsync of the file says EIO instead
  // of 0. Beyond m_names_kept_max entries the loss is only logged. [m_names_lock]
  std::unordered_set<uint32_t> m_lost_writes;
};

inline ext2_mount* ext2_mount_of(const mount* mp) { return static_cast<ext2_mount*>(mp->mnt_data); }

// The vfsops named "ext2", "ext2-buf", "ext2-direct", "ext2-sync" (registered by vnops/registry.cpp), and
// the VNOP tables new vnodes get: ext2_vnop_table for the first three, ext2_sync_vnop_table (over it) for
// ext2-sync.
extern const vfsops ext2_vfsops;
extern const vfsops ext2_buf_vfsops;
extern const vfsops ext2_direct_vfsops;
extern const vfsops ext2_sync_vfsops;
extern vnop_table ext2_vnop_table;
extern vnop_table ext2_sync_vnop_table;
// Builds the tables (idempotent; registry.cpp calls it before registering the vfsops).
void ext2_table_init();

// Writes the in-core superblock (with free counts summed from the groups) and dirty group descriptors to
// their buffers; wait: synchronously. Read-only mounts write nothing and return 0.
int ext2_sbupdate(ext2_mount* m, bool wait);
// Waits for nothing itself: issues a device flush (fdatasync of the backing store) and waits for it.
int ext2_dev_flush(ext2_mount* m);
// Writes only the superblock (its s_state with EXT2_ERROR_FS), synchronously, even on a mount that has just
// become read-only because of corruption. Used by ext2_corrupt; 0 or the write error.
int ext2_write_super_error(ext2_mount* m);

// ---------------------------------------------------------------------------------------------------------
// Corruption and validation (check.cpp)

// Logs ONE line "ext2 <from>: inode <ino>, block <blk>: <field>: <detail>" (ino/blk 0 = not applicable),
// marks the superblock EXT2_ERROR_FS, applies s_errors (continue, or remount read-only), and returns EIO.
// Use as `return ext2_corrupt(m, ino, blk, "i_block[3]", "block %u outside the filesystem", b);`.
int ext2_corrupt(ext2_mount* m, uint32_t ino, uint64_t blk, const char* field, const char* fmt, ...)
    __attribute__((format(printf, 5, 6)));
// True when blk may hold file data, a directory, an indirect or an xattr block: inside
// [first_data_block, blocks_count) and not superblock/GDT/reserved-GDT, bitmap or inode-table space.
bool ext2_data_block_ok(const ext2_mount* m, uint32_t blk);
// True for an inode number that can name a file: root, or in [first_ino, inodes_count].
bool ext2_ino_ok(const ext2_mount* m, uint32_t ino);
// EROFS when the mount is (or became) read-only.
inline int ext2_check_writable(const ext2_mount* m) { return m->m_rdonly.load() ? EROFS : 0; }

// Geometry helpers.
inline uint32_t ext2_group_of_block(const ext2_mount* m, uint32_t blk) {
  return (blk - m->m_first_data_block) / m->m_blocks_per_group;
}
inline uint32_t ext2_group_first_block(const ext2_mount* m, uint32_t g) {
  return m->m_first_data_block + g * m->m_blocks_per_group;
}
inline uint32_t ext2_group_of_ino(const ext2_mount* m, uint32_t ino) { return (ino - 1) / m->m_inodes_per_group; }
// True when group g carries a superblock + GDT copy (sparse_super rule).
bool ext2_group_has_super(const ext2_mount* m, uint32_t g);

// ---------------------------------------------------------------------------------------------------------
// In-core inode (inode.cpp)

// The name index of a large directory (dirindex.h, ext2-namespace): freed with its inode.
struct dir_index;
struct dir_index_deleter { void operator()(dir_index* ix) const; };

// ext2_note_meta_dirty sorts duplicates out of i_meta_dirty when it outgrows this (or twice its size after
// the last time).
inline constexpr size_t kMetaDirtyDedupe = 4096;

struct ext2_inode_info {
  ext2_mount* i_mnt = nullptr;      // [const]
  vnode* i_vnode = nullptr;         // [const] the vnode whose v_data this is
  uint32_t i_ino = 0;               // [const]
  std::mutex i_lock;
  ext2_inode_large i_di{};          // [i_lock] the on-disk inode (extra fields valid if m_inode_size > 128)
  std::vector<uint8_t> i_tail;      // [i_lock] on-disk bytes [160, inode_size): in-inode xattr space
  bool i_dirty = false;             // [i_lock] i_di differs from the inode-table buffer
  bool i_data_dirty = false;        // [i_lock] size or block map changed since the inode was last written
  // [i_lock] Under MNT_LAZYTIME, only timestamps differ from the inode-table buffer (i_dirty stays false
  // for them): MNT_LAZY syncs leave the inode alone until i_time_dirty_ms is kLazytimeExpireMs old; fsync,
  // sync, the last reference and any other change write them (ext2_iupdate copies all of i_di).
  bool i_time_dirty = false;
  uint64_t i_time_dirty_ms = 0;     // [i_lock] steady-clock ms when i_time_dirty was set
  uint32_t i_next_alloc_goal = 0;   // [i_lock] physical block after the last one allocated (0: none yet)
  std::vector<uint32_t> i_meta_dirty;  // [i_lock] metadata blocks (indirect, bitmap, directory) this inode
                                       // dirtied since its last fsync: fsync writes them
  size_t i_meta_dirty_dedupe = kMetaDirtyDedupe;  // [i_lock] i_meta_dirty's size that sorts out duplicates
  // The directory in which this inode last got a name (create, mknod, mkdir, symlink, link, rename into
  // it) whose entry an fsync has not yet written; 0: none. fsync of this inode writes that directory's
  // noted blocks and inode, then goes on with the directory's own i_new_parent (fsync.cpp). A reclaim
  // while it is set leaves it in m_names_kept for the next iget.
  uint32_t i_new_parent = 0;           // [i_lock]
  // Extents of the block map already known (lbn -> {pbn, length}; pbn 0: a hole), so VNOP_BLOCKMAP answers
  // a run without i_lock: a writer holding i_lock while it waits for clean buffers can never block the
  // flusher that would clean them. Guarded by i_extent_lock (a leaf: never held across anything) and
  // changed only under i_lock too. Entries are added when blocks are looked up or allocated and removed
  // (ext2_extent_forget) before blocks are freed.
  std::mutex i_extent_lock;
  std::map<uint64_t, std::pair<uint32_t, uint32_t>> i_extents;
  // Directories: the name index (dirindex.h), created on first use [pointer: i_lock; contents: its own lock].
  std::unique_ptr<dir_index, dir_index_deleter> i_dirindex;
  // The access ACL (m_posix_acl mounts), loaded at iget and kept by setxattr/removexattr/chmod: empty when
  // the inode has none. ext2_access_check consults it for callers other than the owner. [i_lock]
  posix_acl i_acl;
};

inline ext2_inode_info* VTOI(const vnode* vp) { return static_cast<ext2_inode_info*>(vp->v_data); }
inline vnode* ITOV(const ext2_inode_info* ip) { return ip->i_vnode; }

// Field accessors over i_di, [i_lock] (or the caller knows nobody else can see the inode yet).
inline mode_t ext2_i_mode(const ext2_inode_info* ip) { return ip->i_di.base.i_mode; }
inline uint64_t ext2_i_size(const ext2_inode_info* ip) {
  uint64_t s = ip->i_di.base.i_size;
  if (S_ISREG(ip->i_di.base.i_mode) || ip->i_mnt->m_rev > EXT2_GOOD_OLD_REV)
    s |= static_cast<uint64_t>(ip->i_di.base.i_size_high) << 32;
  return s;
}
void ext2_i_set_size(ext2_inode_info* ip, uint64_t size);  // sets i_size/i_size_high, large_file, dirty
inline uid_t ext2_i_uid(const ext2_inode_info* ip) {
  return ip->i_di.base.i_uid | (static_cast<uid_t>(ip->i_di.base.l_i_uid_high) << 16);
}
inline gid_t ext2_i_gid(const ext2_inode_info* ip) {
  return ip->i_di.base.i_gid | (static_cast<gid_t>(ip->i_di.base.l_i_gid_high) << 16);
}
void ext2_i_set_uid(ext2_inode_info* ip, uid_t uid);
void ext2_i_set_gid(ext2_inode_info* ip, gid_t gid);
inline uint32_t ext2_i_nlink(const ext2_inode_info* ip) { return ip->i_di.base.i_links_count; }
// Records that metadata block blk (indirect, bitmap, directory, xattr block) was dirtied for ip, so fsync of
// ip writes it. [i_lock]
void ext2_note_meta_dirty(ext2_inode_info* ip, uint32_t blk);
// Records that ip got a name in directory dp (i_new_parent), so an fsync of ip also writes that entry and
// those of new directories above it. [i_lock] taken inside: the caller holds none.
void ext2_note_new_name(ext2_inode_info* ip, const ext2_inode_info* dp);
// True when i_block holds block pointers: not a device/fifo/socket, not a fast symlink (target in i_block).
bool ext2_has_blockmap(const ext2_inode_info* ip);
// Device numbers in i_block (old 16-bit encoding in i_block[0], new 32-bit in i_block[1], as Linux).
void ext2_encode_dev(ext2_inode* di, dev_t rdev);
dev_t ext2_decode_dev(const ext2_inode* di);
// Adds n blocks (negative: removes) of the mount's block size to i_blocks (512-byte units).
void ext2_i_blocks_add(ext2_inode_info* ip, int64_t nblocks);

// Timestamps. flags: which times become "now" (ctime/mtime/atime), written with nanoseconds when the
// inode is large enough. Marks the inode dirty. [i_lock]
enum : int { EXT2_ICHG = 0x1, EXT2_IUPD = 0x2, EXT2_IACC = 0x4 };
void ext2_itimes(ext2_inode_info* ip, int flags);
// The same for an update that changes nothing but times (an atime, or mtime/ctime of an overwrite): under
// MNT_LAZYTIME the inode becomes i_time_dirty instead of i_dirty (Linux's I_DIRTY_TIME). [i_lock]
void ext2_itimes_lazy(ext2_inode_info* ip, int flags);
void ext2_set_time_lazy(ext2_inode_info* ip, int which, const struct timespec& ts);
// Linux's dirtytime_expire_interval: a lazy timestamp waits at most this long for a sync to write it.
inline constexpr uint64_t kLazytimeExpireMs = 12ull * 3600 * 1000;
void ext2_set_time(ext2_inode_info* ip, int which /* one EXT2_I* flag */, const struct timespec& ts);
struct timespec ext2_get_time(const ext2_inode_info* ip, int which);
struct timespec ext2_now();

// Returns the vnode of inode `ino` with an iocount (vnode_put to drop), creating and hashing it on first use.
// Errors: EINVAL for a number that cannot name a file (not root, not in [first_ino, inodes_count]: a
// caller that read it from disk reports corruption itself), ESTALE for an unused inode (links 0 and mode 0
// or dtime set) not live in core, EIO + log line for a corrupt inode (bad type, extents flag...).
int ext2_iget(ext2_mount* m, uint32_t ino, vnode** vpp);
// Allocates an inode near `dir` (Orlov-lite: directories spread over groups, files in the parent's group),
// initialises it (mode, uid, gid as given; the chattr flags dir passes down; links 0; times now; generation;
// i_extra_isize for large inodes), writes it to its inode-table buffer, and returns its vnode with an
// iocount, i_dirty false. [i_lock] of dir: not held by the caller.
// The caller sets i_links_count and calls ext2_iupdate; if it gives up instead, vnode_put frees the inode
// (inactive sees links 0). ENOSPC when no inode is free. dir may be nullptr (then group 0's rotor).
int ext2_ialloc(ext2_mount* m, ext2_inode_info* dir, mode_t mode, uid_t uid, gid_t gid, vnode** vpp);
// Copies i_di (and i_tail) into the inode-table buffer: bdwrite, or bwrite when wait. Clears i_dirty and
// i_time_dirty.
// [i_lock held by caller]
int ext2_iupdate(ext2_inode_info* ip, bool wait);
// Makes the inode stable: iupdate(wait) when dirty in core (i_dirty or i_time_dirty), else writes its inode-table buffer if that is
// still dirty from an earlier delayed iupdate. [i_lock held by caller]
int ext2_iflush(ext2_inode_info* ip);

// ---------------------------------------------------------------------------------------------------------
// Block allocation (alloc.cpp). Per-group locks inside; callers hold i_lock of the inode the block is for.

// Allocates one block, preferring `goal` then its group then the rest; the bitmap bit, group and
// superblock counts change together. The block's old contents are NOT cleared (the caller initialises
// it before pointing to it). ENOSPC when none is free (or only the root reserve is left and `use_reserve`
// is false). The reserve is s_r_blocks_count for callers that are not root (uid 0) or s_def_resuid/gid.
int ext2_balloc(ext2_mount* m, uint32_t goal, bool use_reserve, uint32_t* blkp);
// Reservations: ENOSPC is decided before anything changes. ext2_reserve_blocks takes n blocks off the
// allocatable count (or fails with ENOSPC and takes nothing); ext2_balloc_reserved then allocates one of
// them (it cannot fail for lack of space, only EIO on a corrupt bitmap); ext2_unreserve_blocks gives back
// what was not used.
int ext2_reserve_blocks(ext2_mount* m, uint64_t n, bool use_reserve);
void ext2_unreserve_blocks(ext2_mount* m, uint64_t n);
int ext2_balloc_reserved(ext2_mount* m, uint32_t goal, uint32_t* blkp);
// A reservation held by one operation: gives back what is left at destruction.
struct ext2_reservation {
  ext2_mount* m;
  uint64_t count = 0;
  explicit ext2_reservation(ext2_mount* mm) : m(mm) {}
  ext2_reservation(const ext2_reservation&) = delete;
  ext2_reservation& operator=(const ext2_reservation&) = delete;
  ~ext2_reservation() { if (count) ext2_unreserve_blocks(m, count); }
  int take(uint64_t n, bool use_reserve) {
    TRY(ext2_reserve_blocks(m, n, use_reserve));
    count += n;
    return 0;
  }
};
// Frees `count` contiguous blocks starting at blk at once (all in range and allocated, else EIO + log line
// and nothing freed), and drops their metadata buffers (buf_invalblkno on mnt_devvp). Only for blocks no
// on-disk pointer has ever named (an allocation given back); blocks that lost a written pointer go through
// ext2_bfree_deferred.
int ext2_bfree(ext2_mount* m, uint32_t blk, uint32_t count);
// Inode bitmap halves of ialloc/ifree: take a free inode number (directories spread over groups, files
// near parent_group) with the group's free/dirs counts, or give one back. ENOSPC / EIO + log line.
int ext2_ialloc_bit(ext2_mount* m, uint32_t parent_group, bool is_dir, uint32_t* inop);
int ext2_ifree_bit(ext2_mount* m, uint32_t ino, bool is_dir);
// Deferred frees (m_pending_bfree, m_pending_ifree): the caller has written, synchronously and completed,
// every on-disk pointer to the blocks (the inode, the indirect blocks) or every name of the inode (the
// directory blocks). ext2_bfree_deferred drops the blocks' cached copies at once and queues them;
// ext2_defer_ifree queues the inode. Neither can fail.
void ext2_bfree_deferred(ext2_mount* m, uint32_t blk, uint32_t count);
void ext2_defer_ifree(ext2_mount* m, uint32_t ino, bool is_dir);
// Issues a device flush (which makes every completed write stable, the pointer-clearing ones among them),
// then clears the queued bitmap bits. On a failed flush the queues keep their items (a leak if the daemon
// dies, never a reuse) and the error is returned. Called by every syncer pass that finds a queue, by
// VFS_SYNC(MNT_WAIT) (unmount, remount), by an allocation that would fail with ENOSPC, and when a queue
// reaches 65536 items. Takes group locks: the caller holds none, and no bitmap buffer busy.
int ext2_release_deferred(ext2_mount* m);
size_t ext2_pending_inodes(ext2_mount* m);
bool ext2_pending_frees(ext2_mount* m);
// Free blocks available to a caller (reserve excluded unless may use it).
uint64_t ext2_free_blocks(ext2_mount* m, bool use_reserve);
// statfs's f_bavail (super.cpp): the data blocks one new file can take from bfree free blocks, of which
// `reserved` are root's, after the indirect blocks that map them. A fallocate or write of that much succeeds
// for anyone (generic/103); df's Avail is therefore a little below free - reserved.
uint64_t ext2_statfs_avail(const ext2_mount* m, uint64_t bfree, uint64_t reserved);
// May this caller dip into the root reserve?
bool ext2_may_use_reserve(const ext2_mount* m, const vfs_context& ctx);

// ---------------------------------------------------------------------------------------------------------
// Block map (bmap.cpp)

enum : int {
  EXT2_BMAP_ALLOC = 0x1,   // allocate a hole (data block plus missing indirect blocks)
  EXT2_BMAP_ZERO = 0x2,    // with ALLOC: zero a newly allocated data block on disk (metadata/dir blocks)
  EXT2_BMAP_RESERVE = 0x4, // with ALLOC: may use the root reserve
};
// Maps logical block lbn of ip to a physical block. *pbn = 0 for a hole (without ALLOC). With ALLOC,
// allocates (goal: after the previous logical block, then the inode's group); *isnew tells whether the
// data block is new. Indirect blocks are zeroed and written before the pointer to them is set; the data
// block is not initialised unless EXT2_BMAP_ZERO. *run (optional) = physically contiguous mapped blocks
// from lbn (1 .. maxrun). Every block number read from disk is validated (EIO + log line).
// [i_lock held by caller]
// res (optional): draw the new blocks from this reservation instead of reserving them here.
int ext2_bmap_locked(ext2_inode_info* ip, uint64_t lbn, int flags, uint32_t* pbn, uint32_t maxrun,
                     uint32_t* run, bool* isnew, ext2_reservation* res = nullptr);
// How many blocks (data + indirect) allocating every hole of [first, last) would take. [i_lock]
int ext2_bmap_count_missing(ext2_inode_info* ip, uint64_t first, uint64_t last, uint64_t* count);
// For directories: ext2_bmap_locked under i_lock. Read a directory block with
// buf_meta_bread(m->m_devvp, pbn, &bp); after changing it, buf_bdwrite (or buf_bwrite). A new directory
// block comes back zeroed on disk when flags has EXT2_BMAP_ZERO; size changes are the caller's
// (ext2_i_set_size under i_lock).
int ext2_bmap(ext2_inode_info* ip, uint64_t lbn, int flags, uint32_t* pbn, bool* isnew);
// Like ext2_bmap_locked without allocation, but also says how far the answer holds: *span = logical blocks
// from lbn that are all mapped contiguously (pbn != 0) or all holes (pbn == 0), at least 1.
// [i_lock held by caller]
int ext2_bmap_extent_locked(ext2_inode_info* ip, uint64_t lbn, uint32_t* pbn, uint64_t* span);
// The extent cache of mapped blocks (i_extents): forget [first, last) before freeing those blocks.
void ext2_extent_forget(ext2_inode_info* ip, uint64_t first, uint64_t last);
// Extent-wise I/O (ext2-core):
// - ext2_extent_mapped: true when the extent cache knows every block of [first, last) to be mapped. No
//   i_lock needed; the answer stays true while the caller keeps blocks from being freed (vnode lock).
// - ext2_bmap_alloc_range: allocates every hole of [first, last), data blocks in physically contiguous
//   runs near the goal (ext2_balloc_run_reserved), indirect blocks as the runs need them (zeroed and written
//   before they are pointed to), each block of pointers written once; blocks come from res (ENOSPC when
//   it runs dry). flags: EXT2_BMAP_ZERO zeroes every new data block. *done = the first block not
//   allocated (every hole before it is, also on error); fresh (optional) gets the new data blocks, unless
//   zeroed. [i_lock]
// - ext2_balloc_run_reserved: like ext2_balloc_reserved, but takes up to max blocks contiguous from the
//   first free one at or after goal (*count >= 1 of them, all out of the caller's reservation).
struct ext2_range {
  uint64_t lbn;
  uint64_t count;
};
bool ext2_extent_mapped(ext2_inode_info* ip, uint64_t first, uint64_t last);
int ext2_bmap_alloc_range(ext2_inode_info* ip, uint64_t first, uint64_t last, int flags, ext2_reservation* res,
                          uint64_t* done, std::vector<ext2_range>* fresh);
int ext2_balloc_run_reserved(ext2_mount* m, uint32_t goal, uint32_t max, uint32_t* blkp, uint32_t* count);
// The largest logical block number + 1 the block map can address.
uint64_t ext2_max_lblocks(const ext2_mount* m);

// ---------------------------------------------------------------------------------------------------------
// Size changes (truncate.cpp)

// Sets the file size: shrinking invalidates cached data past the new EOF, frees data and indirect blocks
// wholly past it (pointers cleared and written first), zeroes the tail of the last block; growing leaves a
// hole. Updates mtime/ctime when the size changes. Works for regular files, directories and slow symlinks.
// The caller holds the vnode lock exclusive and NOT i_lock.
int ext2_truncate(vnode* vp, uint64_t newsize, const vfs_context& ctx);
// Writes zeros over [off, off + len) of a regular file through the cluster layer (dirty cached data), with
// oldEOF/newEOF as cluster_write takes them. Use only on allocated blocks (it does not allocate itself, but
// the push would). The caller holds the vnode lock exclusive and no i_lock.
int ext2_zero_range_cached(vnode* vp, off_t off, size_t len, off_t oldEOF, off_t newEOF);
// Frees the data and indirect blocks of logical blocks [first, last) (last = UINT64_MAX: to the end),
// indirect blocks that no longer map anything, after writing the cleared pointers. Cached file buffers in
// the range must already be invalidated. Does not change the size. [i_lock held by caller]
int ext2_free_range_locked(ext2_inode_info* ip, uint64_t first, uint64_t last);
// Drops the inode's reference to its xattr block (i_file_acl): refcount - 1, or frees the block at the last
// reference; clears i_file_acl. [i_lock held by caller]
int ext2_xattr_block_release(ext2_inode_info* ip);

// ---------------------------------------------------------------------------------------------------------
// Permissions (perm.cpp), the kernel's rules (generic_permission, inode_owner_or_capable, setattr_prepare)

enum : int { EXT2_VREAD = 04, EXT2_VWRITE = 02, EXT2_VEXEC = 01 };  // R_OK/W_OK/X_OK values
// 0 or EACCES: owner/group(incl. supplementary)/other bits; root passes read/write always, exec if any x
// bit is set or it is a directory. [i_lock] (mode/uid/gid read consistently)
int ext2_access_check(const ext2_inode_info* ip, int want, const vfs_context& ctx);
bool ext2_owner_or_root(const ext2_inode_info* ip, const vfs_context& ctx);
// Sticky directory rule for remove/rename: EPERM unless root, owner of the file or of the directory.
int ext2_sticky_check(const ext2_inode_info* dir, const ext2_inode_info* ip, const vfs_context& ctx);
// chattr flags (flags.cpp). may_*: EPERM when an immutable or append-only inode forbids the change;
// [i_lock] taken inside, so the caller holds none. getflags/setflags: FIOGETFLAGS/FIOSETFLAGS, with
// Linux's rules (owner or root; only root changes immutable/append-only; ctime updated).
int ext2_flags_may_create(ext2_inode_info* dp);
int ext2_flags_may_delete(ext2_inode_info* dp, ext2_inode_info* ip);
int ext2_flags_may_link(ext2_inode_info* ip);
int ext2_getflags(ext2_inode_info* ip, uint32_t* flagsp);
int ext2_setflags(ext2_inode_info* ip, uint32_t flags, const vfs_context& ctx);
// The flags a new inode of type mode gets from dir (Linux's ext2_mask_flags over EXT2_FL_INHERITED).
// [i_lock] of dir taken inside.
uint32_t ext2_inherited_flags(ext2_inode_info* dir, mode_t mode);
// Owner and gid of a new inode in dir (setgid directories pass on their group and, to subdirectories,
// S_ISGID); mode_strip_sgid for a setgid+group-exec non-directory created by a non-member. Returns mode.
mode_t ext2_inherit_owner(const ext2_inode_info* dir, mode_t mode, const vfs_context& ctx, uid_t* uid,
                          gid_t* gid);
// Linux's setattr_should_drop_sgid: S_ISGID if it is set and group-exec is set too, or the caller is
// neither in the file's group nor has CAP_FSETID; else 0. [i_lock]
mode_t ext2_should_drop_sgid(const ext2_inode_info* ip, const vfs_context& ctx);
// Linux's setattr_should_drop_suidgid, what a write, truncate or fallocate by ctx removes: S_ISUID and
// ext2_should_drop_sgid, only on a regular file and only for a caller without CAP_FSETID; else 0. [i_lock]
mode_t ext2_should_drop_suidgid(const ext2_inode_info* ip, const vfs_context& ctx);
// Clears the ext2_should_drop_suidgid bits. Returns true if the mode changed (inode dirty, ctime). [i_lock]
bool ext2_kill_suid(ext2_inode_info* ip, const vfs_context& ctx);
// Removes security.capability if the inode has one (Linux removes it on every write, truncate, fallocate
// and chown, whoever the caller). VX_NOCAPXATTR answers without reading; the first call on a vnode reads
// the attributes once and sets it. ERESTART (nothing changed) when one must go and the vnode lock is held
// only shared: retake it exclusive. [vnode lock held; no i_lock] (xattr.cpp)
int ext2_xattr_kill_caps(vnode* vp, const vfs_context& ctx);

// ---------------------------------------------------------------------------------------------------------
// POSIX ACLs in system.posix_acl_access / _default, ext2's on-disk form (xattr.cpp; rules in acl.h)

// Reads ip's access ACL into i_acl (iget, m_posix_acl mounts). A damaged attribute leaves it empty (the
// read logged it). [nobody else sees ip yet]
void ext2_acl_load(ext2_inode_info* ip);
// The default ACL of directory dp into *acl (empty: none). [dp's vnode lock held]
int ext2_acl_get_default(ext2_inode_info* dp, posix_acl* acl);
// Stores the ACLs a new inode inherits (either may be empty: not stored). [ip not yet named]
int ext2_acl_init(ext2_inode_info* ip, const posix_acl& access, const posix_acl& dflt, const vfs_context& ctx);
// After a chmod: the access ACL's owner, group-or-mask and other entries follow the new mode
// (__posix_acl_chmod). [vnode lock exclusive; no i_lock]
int ext2_acl_chmod(ext2_inode_info* ip, const vfs_context& ctx);

// ---------------------------------------------------------------------------------------------------------
// fsync (fsync.cpp)

// Writes vp's dirty data, the metadata blocks it noted (ext2_note_meta_dirty) and its inode. waitfor:
// MNT_WAIT (everything, waited for), MNT_DWAIT (data and what reading it needs: skips a timestamp-only
// inode), MNT_NOWAIT (starts the writes). flush_device: end with a device flush (VNOP_FSYNC does; VFS_SYNC
// flushes once at the end); with MNT_WAIT or MNT_DWAIT it first writes the new names of vp and of the
// directories above it (i_new_parent: the directory blocks holding the entries, the directories' inodes
// and the bitmaps they noted), each after the inode it names, as ext4's fsync of a new file does.
// Ordered (docs/durability.md, rule 7): with MNT_WAIT or MNT_DWAIT, when pointers, a size or names follow
// the data, a device flush separates them, unless data_stable says the caller has just pushed every
// file's data and flushed (VFS_SYNC) and vp has no dirty data since.
// Returns the first error, EIO for an earlier failed write of vp. Caller holds no i_lock. Vnode locks
// may be held (dirsync calls it inside a namespace op, under its directory locks): it takes none, and the
// directories the walk visits are reached by iget with an iocount only.
int ext2_fsync_vnode(vnode* vp, int waitfor, bool flush_device, bool data_stable = false);

// ---------------------------------------------------------------------------------------------------------
// dirsync (dirsync.cpp)

// Linux's IS_DIRSYNC for the op whose vnodes are vps[0..n): the mount has MNT_DIRSYNC or MNT_SYNCHRONOUS,
// or one of the directories among them has chattr +D or +S. Then writes what the op changed in them and
// the inode it made (made: nullptr for none), new names up to the root, with a device flush, and waits
// (ext2_fsync_vnode MNT_WAIT); otherwise 0 at once. Returns the first error. Caller: the op, after it
// succeeded, with the vnode locks it was called with and no i_lock.
int ext2_dirsync(vnode* const* vps, size_t n, vnode* made);

// The table's slot for a namespace op F: F, then ext2_dirsync over its vnode arguments and the vnode it
// made. When the op succeeded and the wait failed, the op's error is the wait's, and a vnode made is put
// (the name stays, as Linux's ext2 leaves an entry whose page write failed).
template <class A, int (*F)(A*)>
int ext2_dirsync_op(A* ap) {
  int err = F(ap);
  if (err) return err;
  vnode* vps[5];
  const size_t n = vnop_arg_vnodes(*ap->a_desc, ap, vps, 5);
  vnode** made = nullptr;
  if constexpr (requires { ap->a_vpp; }) {
    if (ap->a_vpp && *ap->a_vpp) made = ap->a_vpp;
  }
  err = ext2_dirsync(vps, n, made ? *made : nullptr);
  if (err && made) {
    vnode_put(*made);
    *made = nullptr;
  }
  return err;
}

// ---------------------------------------------------------------------------------------------------------
// VNOPs of files (table.cpp names them)
int ext2_vnop_read(vnop_read_args* ap);
// The data movers of the write paths other than the cluster layer, called by VNOP_READ/VNOP_WRITE with the
// vnode lock as those hold it and no i_lock. The blocks of [uio offset, + len) are allocated already
// (write.cpp), oldEOF is the size before this round; a block at or past oldEOF reads as zeros. They move
// exactly len bytes of the uio or return the errno (the uio shows what moved).
// bufpath.cpp (ext2_wpath::buf): one buffer per block, buf_bread (a partial block below oldEOF) or
// buf_getblk, copy, buf_bdwrite (IO_SYNC: buf_bwrite).
int ext2_buf_write(vnode* vp, uio* u, size_t len, uint64_t oldEOF, int ioflag);
// Reads up to filesize, one buf_bread per block (a hole reads as zeros), no read-ahead.
int ext2_buf_read(vnode* vp, uio* u, uint64_t filesize);
// direct.cpp (ext2_wpath::direct): whole blocks by buf_physio straight from the uio, partial blocks
// read-modify-written through a bounce block (the caller holds the vnode lock exclusive for those). Cached
// buffers of the file are written first and those of the range dropped after, so nothing stale survives.
int ext2_direct_write(vnode* vp, uio* u, size_t len, uint64_t oldEOF);
// The ext2 table's large aligned writes (write.cpp, direct_len): len bytes of whole, allocated blocks from
// the uio's block-aligned offset straight to the device, then the range's cached copies invalidated. The
// caller checked that the file has no dirty buffer. On error the uio has advanced by what was written.
int ext2_direct_write_blocks(vnode* vp, uio* u, size_t len);
int ext2_direct_read(vnode* vp, uio* u, uint64_t filesize);
// Updates ip's atime after a read or readdir, by the mount's atime rules (read.cpp). [i_lock] taken inside.
void ext2_touch_atime(ext2_inode_info* ip);
int ext2_vnop_write(vnop_write_args* ap);
int ext2_vnop_fsync(vnop_fsync_args* ap);
int ext2_vnop_strategy(vnop_strategy_args* ap);
int ext2_vnop_blockmap(vnop_blockmap_args* ap);
int ext2_vnop_getattr(vnop_getattr_args* ap);
int ext2_vnop_setattr(vnop_setattr_args* ap);
int ext2_vnop_access(vnop_access_args* ap);
int ext2_vnop_allocate(vnop_allocate_args* ap);
int ext2_vnop_ioctl(vnop_ioctl_args* ap);
int ext2_vnop_open(vnop_open_args* ap);  // flags.cpp: immutable / append-only opens
int ext2_vnop_inactive(vnop_inactive_args* ap);
int ext2_vnop_reclaim(vnop_reclaim_args* ap);

// ---------------------------------------------------------------------------------------------------------
// VNOPs of the namespace (table.cpp names them)
// namei.cpp: names. Every op that takes a name refuses one longer than EXT2_NAME_LEN with ENAMETOOLONG.
int ext2_vnop_lookup(vnop_lookup_args* ap);
int ext2_vnop_create(vnop_create_args* ap);
int ext2_vnop_mknod(vnop_mknod_args* ap);
int ext2_vnop_mkdir(vnop_mkdir_args* ap);
int ext2_vnop_symlink(vnop_symlink_args* ap);
int ext2_vnop_readlink(vnop_readlink_args* ap);
int ext2_vnop_link(vnop_link_args* ap);
int ext2_vnop_remove(vnop_remove_args* ap);
int ext2_vnop_rmdir(vnop_rmdir_args* ap);
int ext2_vnop_readdir(vnop_readdir_args* ap);
// rename.cpp
int ext2_vnop_rename(vnop_rename_args* ap);
// xattr.cpp
int ext2_vnop_getxattr(vnop_getxattr_args* ap);
int ext2_vnop_setxattr(vnop_setxattr_args* ap);
int ext2_vnop_listxattr(vnop_listxattr_args* ap);
int ext2_vnop_removexattr(vnop_removexattr_args* ap);

}  // namespace vnopfs::ext2

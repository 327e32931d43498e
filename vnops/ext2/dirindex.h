// dirindex.h: an in-memory name index per large directory, so lookup, add and remove touch one block
// instead of scanning every block of the directory.
//
// What it holds: for each live entry, a 32-bit hash of its name and the logical block it is in (an
// open-addressing table, 8 bytes a slot, at most 3/4 full), and for each block the largest entry it has
// room for (2 bytes a block). A lookup reads only the blocks whose entries share the name's hash (almost
// always one) and finds the record with dirblock_find there; an add takes the first block with room, the
// same block the linear scan would pick. The disk format is untouched: the index is built by reading the
// directory (validated by ext2_dir_bread like any read) the first time a directory of at least
// kDirIndexMinBlocks blocks is searched, kept up to date by dir.cpp's add and remove, and simply forgotten
// (next use rebuilds it) after any failed change, on eviction, or when the vnode is reclaimed. "." and ".."
// never go through it (they are in block 0, and rename looks up ".." of directories it has not locked).
//
// Locking: the directory's contents are protected by its vnode lock (shared for lookups, exclusive for
// changes), so the index only changes with the vnode lock exclusive, or when it is (re)built under a shared
// one. Its own mutex (dir_index_lock) serialises builders and lookups of one directory, and the pool's
// evictor, which runs on another directory's thread, only ever try-locks it. Order: vnode lock -> index
// mutex -> i_lock -> buffers; the pool lock is taken inside an index mutex and then only try-locks others.
//
// Memory: every index's bytes are charged to one process-wide pool with a budget (kDirIndexDefaultBudget,
// ext2_dirindex_set_budget). Growing an index past the budget first evicts the least recently used other
// indexes; an index that cannot fit alone is refused, and its directory is scanned linearly until its size
// has doubled or halved. So the pool stays within its budget, plus the one table being rehashed, plus
// whatever other indexes were busy (in use by another thread) when it had to evict.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

constexpr uint64_t kDirIndexMinBlocks = 3;                 // smaller directories are scanned
constexpr size_t kDirIndexDefaultBudget = size_t(32) << 20;  // bytes, all indexes of the process

// An index opened for one operation: the directory's index with its mutex held, ready to use; or empty
// (scan the directory instead), with nothing held.
struct dir_index_lock {
  dir_index* ix = nullptr;
  std::unique_lock<std::mutex> held;
  explicit operator bool() const { return ix != nullptr; }
};

// Opens dp's index for a directory of nblocks blocks (from its size, checked by the caller), building it
// when missing or stale. Empty *out for a small directory, a refused one, ENOMEM while building, or a
// block that could not be read while building (EIO and its log line came from ext2_dir_bread): the scan
// then finds what it can reach, as without an index, and the build is not retried until the directory's
// size has doubled or halved. Never fails: returns 0. Caller: the directory's vnode lock (shared or
// exclusive), no i_lock.
int ext2_dirindex_open(ext2_inode_info* dp, uint64_t nblocks, dir_index_lock* out);

// The logical blocks that may hold name (entries with the same hash), in no particular order.
void ext2_dirindex_lookup(const dir_index_lock& l, std::string_view name, std::vector<uint64_t>* lbns);

// The first block with room for an entry of rec_len bytes (ext2_dir_rec_len), or nullopt: grow.
std::optional<uint64_t> ext2_dirindex_room(const dir_index_lock& l, uint32_t rec_len);

// After a change to block lbn (its new dirblock_largest_room given): an entry added / removed. Adding to
// lbn == the indexed block count records a block appended to the directory. On ENOMEM the index is
// dropped (next use rebuilds). Caller: the vnode lock exclusive.
void ext2_dirindex_added(dir_index_lock& l, std::string_view name, uint64_t lbn, uint32_t largest_room);
void ext2_dirindex_removed(dir_index_lock& l, std::string_view name, uint64_t lbn, uint32_t largest_room);

// Forgets the index's contents (a change failed half way; the next use rebuilds). Keeps the mutex held.
void ext2_dirindex_drop(dir_index_lock& l);

// A directory inode begins again (ext2_dir_make): whatever index an earlier life left is forgotten.
void ext2_dirindex_forget(ext2_inode_info* dp);

// The pool: budget in bytes (tests shrink it), and counters for tests and stats.
void ext2_dirindex_set_budget(size_t bytes);
struct dirindex_stats {
  size_t budget;
  size_t bytes;       // charged now
  size_t indexes;     // built now
  uint64_t builds;    // since start
  uint64_t evictions; // indexes dropped to make room for others
  uint64_t refusals;  // builds given up because one index alone would not fit
};
dirindex_stats ext2_dirindex_stats();

}  // namespace vnopfs::ext2

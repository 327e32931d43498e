// dirindex.cpp: the per-directory name index and the process-wide pool that bounds its memory.
#include "vnops/ext2/dirindex.h"

#include <algorithm>
#include <atomic>
#include <list>
#include <new>

#include "vnops/ext2/dir.h"

namespace vnopfs::ext2 {

struct dir_index {
  std::mutex lock;
  // [lock]
  bool built = false;
  uint64_t nblocks = 0;          // the directory size (blocks) the index describes
  uint64_t refused_nblocks = 0;  // did not fit the budget at this size (0: never refused)
  std::vector<uint64_t> slots;   // hash << 32 | (lbn + 1); 0 = empty. Power-of-two size, linear probing.
  size_t count = 0;
  std::vector<uint16_t> room;    // per block: dirblock_largest_room / 4
  // [lock and the pool's lock to change; either to read]
  size_t charged = 0;
  bool listed = false;
  std::list<dir_index*>::iterator pos;
  std::atomic<uint64_t> last_use{0};
};

namespace {

struct pool_state {
  std::mutex lock;
  std::list<dir_index*> members;  // [lock] indexes with bytes charged
  size_t used = 0;                // [lock]
  std::atomic<size_t> budget{kDirIndexDefaultBudget};
  std::atomic<uint64_t> tick{0};
  std::atomic<uint64_t> builds{0}, evictions{0}, refusals{0};
};

pool_state& pool() {
  static pool_state p;  // outlives every mount: an inode's index may be freed at any reclaim
  return p;
}

constexpr uint64_t kEmpty = 0;

uint32_t name_hash(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, then a final mix so the low bits pick slots well
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return uint32_t(h);
}

size_t bytes_of(const dir_index* ix) {
  return sizeof(dir_index) + ix->slots.capacity() * sizeof(uint64_t) + ix->room.capacity() * sizeof(uint16_t);
}

// Frees the tables of ix. [ix->lock and pool lock held]
void clear_tables(pool_state& p, dir_index* ix) {
  std::vector<uint64_t>().swap(ix->slots);
  std::vector<uint16_t>().swap(ix->room);
  ix->count = 0;
  ix->built = false;
  p.used -= ix->charged;
  ix->charged = 0;
  if (ix->listed) {
    p.members.erase(ix->pos);
    ix->listed = false;
  }
}

// Brings ix's charge up to date, evicting least recently used other indexes while the pool is over its
// budget. False when ix alone would not fit. [ix->lock held]
bool charge(dir_index* ix) {
  pool_state& p = pool();
  std::lock_guard g(p.lock);
  size_t now = bytes_of(ix);
  p.used = p.used - ix->charged + now;
  ix->charged = now;
  if (!ix->listed) {
    p.members.push_front(ix);
    ix->pos = p.members.begin();
    ix->listed = true;
  }
  const size_t budget = p.budget.load();
  if (p.used <= budget) return true;
  if (now > budget) return false;
  // Sort a snapshot of last_use: other threads bump it without the pool lock, and std::sort with keys that
  // change under it is undefined (it ran past the vector's end and crashed the threaded dirindex test).
  std::vector<std::pair<uint64_t, dir_index*>> victims;
  for (dir_index* o : p.members)
    if (o != ix) victims.emplace_back(o->last_use.load(), o);
  std::sort(victims.begin(), victims.end());
  for (auto [use, o] : victims) {
    if (p.used <= budget) break;
    std::unique_lock ol(o->lock, std::try_to_lock);  // busy: in use right now, not a good victim anyway
    if (!ol.owns_lock()) continue;
    clear_tables(p, o);
    p.evictions++;
  }
  return true;  // over budget only while the others are busy: the next charge evicts again
}

void drop(dir_index* ix) {
  pool_state& p = pool();
  std::lock_guard g(p.lock);
  clear_tables(p, ix);
}

void slot_insert(dir_index* ix, uint64_t v) {
  const size_t mask = ix->slots.size() - 1;
  for (size_t i = (v >> 32) & mask;; i = (i + 1) & mask) {
    if (ix->slots[i] == kEmpty) {
      ix->slots[i] = v;
      return;
    }
  }
}

// Grows the table when one more entry would make it more than 3/4 full. bad_alloc escapes.
void reserve_one(dir_index* ix) {
  if ((ix->count + 1) * 4 <= ix->slots.size() * 3) return;
  std::vector<uint64_t> old(std::max<size_t>(64, ix->slots.size() * 2), kEmpty);
  old.swap(ix->slots);
  for (uint64_t v : old)
    if (v != kEmpty) slot_insert(ix, v);
}

uint64_t slot_value(std::string_view name, uint64_t lbn) { return uint64_t(name_hash(name)) << 32 | (lbn + 1); }

// Adds one entry; false when the index no longer fits the budget (the caller drops it). bad_alloc escapes.
bool add_entry(dir_index* ix, uint64_t v) {
  size_t cap = ix->slots.size();
  reserve_one(ix);
  slot_insert(ix, v);
  ix->count++;
  return ix->slots.size() == cap || charge(ix);
}

// Removes the slot holding v (backward-shift deletion keeps every probe run unbroken). False if absent.
bool remove_entry(dir_index* ix, uint64_t v) {
  if (ix->slots.empty()) return false;
  const size_t mask = ix->slots.size() - 1;
  size_t i = (v >> 32) & mask;
  while (ix->slots[i] != v) {
    if (ix->slots[i] == kEmpty) return false;
    i = (i + 1) & mask;
  }
  for (size_t j = (i + 1) & mask; ix->slots[j] != kEmpty; j = (j + 1) & mask) {
    size_t home = (ix->slots[j] >> 32) & mask;
    // Move slot j back into the hole at i unless its home lies cyclically in (i, j].
    bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (stays) continue;
    ix->slots[i] = ix->slots[j];
    i = j;
  }
  ix->slots[i] = kEmpty;
  ix->count--;
  return true;
}

uint16_t room_units(uint32_t largest_room) { return uint16_t(largest_room / 4); }

// Reads the whole directory into ix. ENOSPC stands for "does not fit the budget". [ix->lock]
int build(ext2_inode_info* dp, dir_index* ix, uint64_t nblocks) {
  ext2_mount* m = dp->i_mnt;
  ix->room.reserve(nblocks);
  for (uint64_t lbn = 0; lbn < nblocks; lbn++) {
    BufRef bp;
    TRY(ext2_dir_bread(dp, lbn, &bp));
    const uint8_t* blk = reinterpret_cast<const uint8_t*>(bp.data());
    for (dirblock_iter it(blk, m->m_block_size, m->m_filetype); it.valid(); it.next()) {
      if (it->ino == 0) continue;
      if (!add_entry(ix, slot_value(it->name, lbn))) return ENOSPC;
    }
    ix->room.push_back(room_units(dirblock_largest_room(blk, m->m_block_size, m->m_filetype)));
  }
  if (!charge(ix)) return ENOSPC;
  ix->nblocks = nblocks;
  ix->built = true;
  return 0;
}

}  // namespace

void dir_index_deleter::operator()(dir_index* ix) const {
  {
    pool_state& p = pool();
    std::lock_guard g(p.lock);  // an evictor holding the pool lock may be looking at ix
    p.used -= ix->charged;
    if (ix->listed) p.members.erase(ix->pos);
  }
  delete ix;
}

int ext2_dirindex_open(ext2_inode_info* dp, uint64_t nblocks, dir_index_lock* out) {
  if (nblocks < kDirIndexMinBlocks || nblocks >= UINT32_MAX) return 0;
  dir_index* ix;
  {
    std::lock_guard g(dp->i_lock);
    if (!dp->i_dirindex) {
      ix = new (std::nothrow) dir_index;
      if (!ix) return 0;
      dp->i_dirindex.reset(ix);
    }
    ix = dp->i_dirindex.get();
  }
  std::unique_lock l(ix->lock);
  ix->last_use = ++pool().tick;
  if (ix->built && ix->nblocks == nblocks) {
    *out = dir_index_lock{ix, std::move(l)};
    return 0;
  }
  if (ix->built) drop(ix);  // the directory changed size behind the index: never trust it
  if (ix->refused_nblocks && nblocks < ix->refused_nblocks * 2 && nblocks * 2 > ix->refused_nblocks) return 0;
  int err;
  try {
    err = build(dp, ix, nblocks);
  } catch (const std::bad_alloc&) {
    err = ENOMEM;
  }
  if (err) {
    // Too big, no memory, or a block that cannot be read (already logged): the scan still finds what it
    // can reach, exactly as without an index, so a damaged block costs only the names it holds.
    drop(ix);
    ix->refused_nblocks = nblocks;
    if (err == ENOSPC) pool().refusals++;
    return 0;
  }
  ix->refused_nblocks = 0;
  pool().builds++;
  *out = dir_index_lock{ix, std::move(l)};
  return 0;
}

void ext2_dirindex_lookup(const dir_index_lock& l, std::string_view name, std::vector<uint64_t>* lbns) {
  const dir_index* ix = l.ix;
  if (ix->slots.empty()) return;
  const uint64_t h = name_hash(name);
  const size_t mask = ix->slots.size() - 1;
  for (size_t i = h & mask; ix->slots[i] != kEmpty; i = (i + 1) & mask) {
    if ((ix->slots[i] >> 32) == h) lbns->push_back((ix->slots[i] & 0xffffffffULL) - 1);
  }
}

std::optional<uint64_t> ext2_dirindex_room(const dir_index_lock& l, uint32_t rec_len) {
  const auto& room = l.ix->room;
  const uint16_t need = room_units(rec_len);
  auto it = std::find_if(room.begin(), room.end(), [need](uint16_t r) { return r >= need; });
  if (it == room.end()) return std::nullopt;
  return uint64_t(it - room.begin());
}

void ext2_dirindex_added(dir_index_lock& l, std::string_view name, uint64_t lbn, uint32_t largest_room) {
  dir_index* ix = l.ix;
  if (!ix->built) return;
  try {
    if (lbn == ix->nblocks) {
      ix->room.push_back(0);
      ix->nblocks++;
    }
    if (lbn >= ix->nblocks) return drop(ix);
    ix->room[lbn] = room_units(largest_room);
    if (!add_entry(ix, slot_value(name, lbn))) drop(ix);
  } catch (const std::bad_alloc&) {
    drop(ix);
  }
}

void ext2_dirindex_removed(dir_index_lock& l, std::string_view name, uint64_t lbn, uint32_t largest_room) {
  dir_index* ix = l.ix;
  if (!ix->built) return;
  if (lbn >= ix->nblocks || !remove_entry(ix, slot_value(name, lbn))) return drop(ix);
  ix->room[lbn] = room_units(largest_room);
}

void ext2_dirindex_drop(dir_index_lock& l) { drop(l.ix); }

void ext2_dirindex_forget(ext2_inode_info* dp) {
  dir_index* ix;
  {
    std::lock_guard g(dp->i_lock);
    ix = dp->i_dirindex.get();
  }
  if (!ix) return;
  std::lock_guard l(ix->lock);
  drop(ix);
  ix->refused_nblocks = 0;
}

void ext2_dirindex_set_budget(size_t bytes) { pool().budget = bytes; }

dirindex_stats ext2_dirindex_stats() {
  pool_state& p = pool();
  std::lock_guard g(p.lock);
  return {p.budget.load(), p.used, p.members.size(), p.builds.load(), p.evictions.load(), p.refusals.load()};
}

}  // namespace vnopfs::ext2

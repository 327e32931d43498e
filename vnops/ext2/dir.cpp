// dir.cpp: directories over the block map. Every block is validated as it is read; edits go through
// dirblock.h, which keeps a valid block valid, so a block we write is always one e2fsck accepts.
#include "vnops/ext2/dir.h"

#include "vnops/ext2/dirindex.h"

#include <dirent.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace vnopfs::ext2 {

namespace {

dirblock_geom geom_of(const ext2_mount* m) { return {m->m_block_size, m->m_inodes_count, m->m_filetype}; }

// The directory's size in blocks, after checking it is a whole number of blocks the map can address.
int dir_nblocks(ext2_inode_info* dp, uint64_t* nblocks) {
  ext2_mount* m = dp->i_mnt;
  uint64_t size;
  {
    std::lock_guard g(dp->i_lock);
    size = ext2_i_size(dp);
  }
  if (size % m->m_block_size != 0 || size / m->m_block_size > ext2_max_lblocks(m))
    return ext2_corrupt(m, dp->i_ino, 0, "i_size", "directory size %llu is not a whole number of blocks",
                        static_cast<unsigned long long>(size));
  *nblocks = size / m->m_block_size;
  return 0;
}

// A changed directory block goes out now (sync) or later; a delayed one is noted on the directory so its
// fsync writes it (a new name is durable after fsync of its directory).
int write_block(ext2_inode_info* dp, uint32_t pbn, BufRef bp, bool sync) {
  if (sync) return buf_bwrite(std::move(bp));
  buf_bdwrite(std::move(bp));
  std::lock_guard g(dp->i_lock);
  ext2_note_meta_dirty(dp, pbn);
  return 0;
}

// Directory mtime/ctime after a change of its entries; the inode goes out with bdwrite.
int dir_touch(ext2_inode_info* dp) {
  std::lock_guard g(dp->i_lock);
  ext2_itimes(dp, EXT2_ICHG | EXT2_IUPD);
  return ext2_iupdate(dp, false);
}

// Before the first change to a hashed directory: drop the index flag, synchronously, so no image on disk
// ever has an htree index that misses one of our entries.
int clear_index(ext2_inode_info* dp) {
  std::lock_guard g(dp->i_lock);
  if (!(dp->i_di.base.i_flags & EXT2_INDEX_FL)) return 0;
  dp->i_di.base.i_flags &= ~EXT2_INDEX_FL;
  dp->i_dirty = true;
  return ext2_iupdate(dp, true);
}

int grow(ext2_inode_info* dp, uint64_t lbn, const vfs_context& ctx, BufRef* bpp, uint32_t* pbnp) {
  ext2_mount* m = dp->i_mnt;
  if (lbn >= ext2_max_lblocks(m)) return EFBIG;
  int flags = EXT2_BMAP_ALLOC | (ext2_may_use_reserve(m, ctx) ? EXT2_BMAP_RESERVE : 0);
  bool isnew = false;
  TRY(ext2_bmap(dp, lbn, flags, pbnp, &isnew));
  *bpp = buf_getblk(m->m_devvp, *pbnp, BLK_META);
  dirblock_init_empty(reinterpret_cast<uint8_t*>(bpp->data()), m->m_block_size);
  return 0;
}

// The new last block is written; now the inode may cover it.
int set_size_blocks(ext2_inode_info* dp, uint64_t nblocks, bool wait) {
  std::lock_guard g(dp->i_lock);
  ext2_i_set_size(dp, nblocks * dp->i_mnt->m_block_size);
  ext2_itimes(dp, EXT2_ICHG | EXT2_IUPD);
  return ext2_iupdate(dp, wait);
}

}  // namespace

int ext2_dir_bread(ext2_inode_info* dp, uint64_t lbn, BufRef* bpp, uint32_t* pbnp) {
  ext2_mount* m = dp->i_mnt;
  uint32_t pbn = 0;
  TRY(ext2_bmap(dp, lbn, 0, &pbn, nullptr));
  if (pbn == 0)
    return ext2_corrupt(m, dp->i_ino, 0, "i_block", "hole at directory block %llu",
                        static_cast<unsigned long long>(lbn));
  BufRef bp;
  TRY(buf_meta_bread(m->m_devvp, pbn, &bp));
  const uint8_t* blk = reinterpret_cast<const uint8_t*>(bp.data());
  dirblock_fault f;
  if (!dirblock_check(blk, geom_of(m), &f))
    return ext2_corrupt(m, dp->i_ino, pbn, f.field, "bad directory entry at offset %u (value %llu)", f.offset,
                        static_cast<unsigned long long>(f.value));
  for (dirblock_iter it(blk, m->m_block_size, m->m_filetype); it.valid(); it.next()) {
    if (it->ino != 0 && !ext2_ino_ok(m, it->ino))
      return ext2_corrupt(m, dp->i_ino, pbn, "inode", "entry at offset %u names reserved inode %u", it->offset,
                          it->ino);
  }
  *bpp = std::move(bp);
  if (pbnp) *pbnp = pbn;
  return 0;
}

namespace {

// Looks for name in block lbn: 0 and *ino/*pos when there, ENOENT when not.
int find_in_block(ext2_inode_info* dp, uint64_t lbn, std::string_view name, uint32_t* ino, dir_pos* pos) {
  ext2_mount* m = dp->i_mnt;
  BufRef bp;
  uint32_t pbn;
  TRY(ext2_dir_bread(dp, lbn, &bp, &pbn));
  auto slot = dirblock_find(reinterpret_cast<const uint8_t*>(bp.data()), m->m_block_size, m->m_filetype, name);
  if (!slot) return ENOENT;
  *ino = slot->ent.ino;
  if (pos) *pos = dir_pos{lbn, pbn, *slot};
  return 0;
}

}  // namespace

int ext2_dir_lookup(ext2_inode_info* dp, std::string_view name, uint32_t* ino, dir_pos* pos) {
  uint64_t nblocks;
  TRY(dir_nblocks(dp, &nblocks));
  // "." and ".." are in block 0, and rename looks up ".." in directories it has not locked: never the index.
  if (name != "." && name != "..") {
    dir_index_lock ix;
    TRY(ext2_dirindex_open(dp, nblocks, &ix));
    if (ix) {
      std::vector<uint64_t> lbns;
      ext2_dirindex_lookup(ix, name, &lbns);
      ix.held.unlock();  // the vnode lock keeps the blocks as indexed
      std::sort(lbns.begin(), lbns.end());  // the first match in directory order, as the scan finds it
      for (uint64_t lbn : lbns) {
        int err = find_in_block(dp, lbn, name, ino, pos);
        if (err != ENOENT) return err;
      }
      return ENOENT;
    }
  }
  for (uint64_t lbn = 0; lbn < nblocks; lbn++) {
    int err = find_in_block(dp, lbn, name, ino, pos);
    if (err != ENOENT) return err;
  }
  return ENOENT;
}

int ext2_dir_add(ext2_inode_info* dp, std::string_view name, uint32_t ino, mode_t mode, const vfs_context& ctx,
                 bool sync) {
  ext2_mount* m = dp->i_mnt;
  if (name.empty()) return ENOENT;
  if (name.size() > EXT2_NAME_LEN) return ENAMETOOLONG;
  TRY(ext2_check_writable(m));
  uint64_t nblocks;
  TRY(dir_nblocks(dp, &nblocks));
  TRY(clear_index(dp));
  const uint8_t ft = ft_from_mode(uint16_t(mode));
  const uint32_t bs = m->m_block_size;
  dir_index_lock ix;
  TRY(ext2_dirindex_open(dp, nblocks, &ix));
  // Any failure once a block may have changed leaves the index behind: forget it, the next use rebuilds.
  auto fail = [&ix](int err) {
    if (ix) ext2_dirindex_drop(ix);
    return err;
  };
  // Inserts into block lbn if it has room: 0, ENOSPC (no room), or an error.
  auto try_block = [&](uint64_t lbn) -> int {
    BufRef bp;
    uint32_t pbn;
    TRY(ext2_dir_bread(dp, lbn, &bp, &pbn));
    uint8_t* blk = reinterpret_cast<uint8_t*>(bp.data());
    auto room = dirblock_room(blk, bs, m->m_filetype, uint32_t(name.size()));
    if (!room) return ENOSPC;
    dirblock_insert(blk, bs, m->m_filetype, *room, name, ino, ft);
    if (ix) ext2_dirindex_added(ix, name, lbn, dirblock_largest_room(blk, bs, m->m_filetype));
    TRY(write_block(dp, pbn, std::move(bp), sync));
    return 0;
  };
  if (ix) {
    if (auto lbn = ext2_dirindex_room(ix, ext2_dir_rec_len(uint32_t(name.size())))) {
      int err = try_block(*lbn);
      if (err == 0) return dir_touch(dp);
      ext2_dirindex_drop(ix);  // the index said room and the block disagrees, or the write failed
      if (err != ENOSPC) return err;
      ix = dir_index_lock{};
      for (uint64_t lbn = 0; lbn < nblocks; lbn++) {  // the scan decides
        err = try_block(lbn);
        if (err == 0) return dir_touch(dp);
        if (err != ENOSPC) return err;
      }
    }
  } else {
    for (uint64_t lbn = 0; lbn < nblocks; lbn++) {
      int err = try_block(lbn);
      if (err == 0) return dir_touch(dp);
      if (err != ENOSPC) return err;
    }
  }
  BufRef bp;
  uint32_t pbn;
  TRY(grow(dp, nblocks, ctx, &bp, &pbn));
  uint8_t* blk = reinterpret_cast<uint8_t*>(bp.data());
  dirblock_insert(blk, bs, m->m_filetype, 0, name, ino, ft);
  uint32_t left = dirblock_largest_room(blk, bs, m->m_filetype);
  if (int err = buf_bwrite(std::move(bp))) return fail(err);
  if (int err = set_size_blocks(dp, nblocks + 1, sync)) return fail(err);
  if (ix) ext2_dirindex_added(ix, name, nblocks, left);
  return 0;
}

int ext2_dir_remove(ext2_inode_info* dp, const dir_pos& pos) {
  ext2_mount* m = dp->i_mnt;
  TRY(ext2_check_writable(m));
  TRY(clear_index(dp));
  uint64_t nblocks;
  TRY(dir_nblocks(dp, &nblocks));
  dir_index_lock ix;
  TRY(ext2_dirindex_open(dp, nblocks, &ix));
  BufRef bp;
  uint32_t pbn;
  TRY(ext2_dir_bread(dp, pos.lbn, &bp, &pbn));
  uint8_t* blk = reinterpret_cast<uint8_t*>(bp.data());
  // The lock held since the lookup guarantees the record is still there; check anyway, cheaply.
  auto now = dirblock_find(blk, m->m_block_size, m->m_filetype, pos.slot.ent.name);
  if (pbn != pos.pbn || !now || now->ent.offset != pos.slot.ent.offset) return ENOENT;
  const std::string name(now->ent.name);  // a view into the block, which is about to change
  dirblock_remove(blk, m->m_block_size, *now);
  if (ix) ext2_dirindex_removed(ix, name, pos.lbn, dirblock_largest_room(blk, m->m_block_size, m->m_filetype));
  if (int err = buf_bwrite(std::move(bp))) {
    if (ix) ext2_dirindex_drop(ix);
    return err;
  }
  return dir_touch(dp);
}

int ext2_dir_retarget(ext2_inode_info* dp, const dir_pos& pos, uint32_t ino, mode_t mode, bool sync) {
  ext2_mount* m = dp->i_mnt;
  TRY(ext2_check_writable(m));
  TRY(clear_index(dp));
  BufRef bp;
  uint32_t pbn;
  TRY(ext2_dir_bread(dp, pos.lbn, &bp, &pbn));
  uint8_t* blk = reinterpret_cast<uint8_t*>(bp.data());
  dirent_view now = dirblock_at(blk, m->m_block_size, pos.slot.ent.offset, m->m_filetype);
  if (pbn != pos.pbn || now.ino == 0 || now.name != pos.slot.ent.name) return ENOENT;
  dirblock_set_ino(blk, pos.slot.ent.offset, ino, ft_from_mode(uint16_t(mode)), m->m_filetype);
  TRY(write_block(dp, pbn, std::move(bp), sync));
  return dir_touch(dp);
}

int ext2_dir_is_empty(ext2_inode_info* dp, bool* empty) {
  ext2_mount* m = dp->i_mnt;
  uint64_t nblocks;
  TRY(dir_nblocks(dp, &nblocks));
  *empty = true;
  for (uint64_t lbn = 0; lbn < nblocks && *empty; lbn++) {
    BufRef bp;
    TRY(ext2_dir_bread(dp, lbn, &bp));
    *empty = dirblock_only_dots(reinterpret_cast<const uint8_t*>(bp.data()), m->m_block_size, m->m_filetype);
  }
  return 0;
}

int ext2_dir_make(ext2_inode_info* dp, uint32_t parent, const vfs_context& ctx) {
  ext2_mount* m = dp->i_mnt;
  ext2_dirindex_forget(dp);
  BufRef bp;
  uint32_t pbn;
  TRY(grow(dp, 0, ctx, &bp, &pbn));
  dirblock_init_dots(reinterpret_cast<uint8_t*>(bp.data()), m->m_block_size, m->m_filetype, dp->i_ino, parent);
  TRY(buf_bwrite(std::move(bp)));
  return set_size_blocks(dp, 1, true);
}

namespace {

uint8_t entry_dtype(ext2_mount* m, const dirent_view& e) {
  if (m->m_filetype && e.file_type != EXT2_FT_UNKNOWN) return dtype_from_ft(e.file_type);
  vnode* vp = nullptr;  // revision 0 / no filetype: ask the inode
  if (ext2_iget(m, e.ino, &vp) != 0) return DT_UNKNOWN;
  uint8_t t;
  {
    std::lock_guard g(VTOI(vp)->i_lock);
    t = dtype_from_mode(uint16_t(ext2_i_mode(VTOI(vp))));
  }
  vnode_put(vp);
  return t;
}

}  // namespace

int ext2_dir_readdir(ext2_inode_info* dp, uint64_t cookie, readdir_filler filler, void* fctx, int* eof) {
  ext2_mount* m = dp->i_mnt;
  const uint32_t bs = m->m_block_size;
  uint64_t nblocks;
  TRY(dir_nblocks(dp, &nblocks));
  *eof = 0;
  std::vector<uint8_t> copy(bs);
  for (uint64_t lbn = cookie / bs; lbn < nblocks; lbn++) {
    {
      // The filler (and, without filetype, ext2_iget) run with no buffer held busy.
      BufRef bp;
      TRY(ext2_dir_bread(dp, lbn, &bp));
      std::memcpy(copy.data(), bp.data(), bs);
    }
    const uint8_t* blk = copy.data();
    uint32_t start = lbn == cookie / bs ? dirblock_resync(blk, bs, m->m_filetype, uint32_t(cookie % bs)) : 0;
    for (dirblock_iter it(blk, bs, m->m_filetype, start); it.valid(); it.next()) {
      if (it->ino == 0) continue;
      dirent_entry e{it->name, it->ino, entry_dtype(m, *it), lbn * bs + it->offset + it->rec_len};
      if (filler(fctx, e) != 0) return 0;
    }
  }
  *eof = 1;
  return 0;
}

}  // namespace vnopfs::ext2

// dir.h: ext2 directories as a whole: lookup, add, remove and retarget entries, the empty check, new
// directories, and readdir. Built on dirblock.h (one block in memory) and ext2.h (block map, buffers).
//
// Locking: the caller holds the directory's vnode lock (shared for lookup/readdir/is_empty, exclusive for
// anything that changes it) and no i_lock; these functions take the directory's i_lock only briefly (size,
// flags) and never across ext2_bmap, which takes it itself. Directory blocks are metadata buffers of the
// device vnode, by physical block.
//
// Searching: a directory of kDirIndexMinBlocks blocks or more gets an in-memory name index on first use
// (dirindex.h: hash of each name -> its block, and the room left in each block), so lookup, add and remove
// read one block whatever the directory's size; smaller ones, "." and "..", and directories whose index the
// memory budget refuses are scanned block by block. Either way the blocks decide: the index only says where
// to look, and the same block is chosen for an insert as the scan would choose.
//
// Validation: every block is checked with dirblock_check before its records are used, and every live entry
// must name a usable inode (ext2_ino_ok); a directory size that is not a multiple of the block size, a hole,
// or a block number outside the data area is corruption too. Each gives EIO after one log line naming the
// directory inode, the block and the field (ext2_corrupt).
//
// Write order (docs/design.md, "Durability without a journal"): a new directory block is written (bwrite)
// before the inode that points to it grows over it; an added entry is written with bdwrite by default, or
// bwrite when the caller asks (rename writes the new name synchronously before removing the old); a removed
// entry is written synchronously (the freed inode may not be reused while a name for it is still on disk).
// EXT2_INDEX_FL is cleared (and the inode written) before the first change to a hashed directory: we read
// htree directories linearly (their interior blocks look like empty records) but do not maintain the on-disk
// htree (our own index is in memory only; e2fsck -fD rebuilds an htree offline).
//
// Readdir cookies: a cookie is the byte offset, inside the directory, of the next record to return (0 =
// the start; "." and ".." are real records at offsets 0 and 12 of block 0). Records never move in ext2:
// an insert takes an unused record or the slack at the end of a live one, a removal merges into the
// previous record (or zeroes the inode of a block's first record). So a cookie names a record boundary
// forever, unless the record it named was merged away; then it falls inside the previous record and we
// resynchronise by scanning the block from its start to the first live record at or after the cookie.
// Entries present for the whole listing come back exactly once; entries added or removed meanwhile may
// or may not appear. A cookie past the directory size is end of directory.
#pragma once

#include <cstdint>
#include <string_view>

#include "vnopfs/buf.h"
#include "vnops/ext2/dirblock.h"
#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

// Where an entry was found: enough to remove or retarget it while the directory stays locked.
struct dir_pos {
  uint64_t lbn = 0;       // logical block of the directory
  uint32_t pbn = 0;       // its physical block
  dirent_slot slot{};     // the record and its predecessor in the block
};

// Reads logical block lbn of directory dp (a validated block). EIO on a hole or any bad record.
int ext2_dir_bread(ext2_inode_info* dp, uint64_t lbn, BufRef* bpp, uint32_t* pbnp = nullptr);

// Finds name: *ino and, when pos is given, where it is. ENOENT when absent.
int ext2_dir_lookup(ext2_inode_info* dp, std::string_view name, uint32_t* ino, dir_pos* pos = nullptr);

// Adds (name -> ino, file type from mode). The name must be absent (the caller looked it up under the
// same exclusive lock). Grows the directory by a block when no record has room (ENOSPC, EFBIG at the
// block-map limit). sync: write the block with bwrite. Updates the directory's mtime/ctime.
int ext2_dir_add(ext2_inode_info* dp, std::string_view name, uint32_t ino, mode_t mode,
                 const vfs_context& ctx, bool sync = false);

// Removes the entry at pos (from ext2_dir_lookup under the same lock). Updates mtime/ctime.
int ext2_dir_remove(ext2_inode_info* dp, const dir_pos& pos);

// Points the entry at pos to another inode (rename over an existing name, ".." of a moved directory).
int ext2_dir_retarget(ext2_inode_info* dp, const dir_pos& pos, uint32_t ino, mode_t mode, bool sync);

// *empty = true when only "." and ".." are live.
int ext2_dir_is_empty(ext2_inode_info* dp, bool* empty);

// Gives a new directory inode (links, mode set by the caller; size 0, no blocks) its first block with
// "." and "..", written before the inode is updated to size one block. Caller holds no i_lock.
int ext2_dir_make(ext2_inode_info* dp, uint32_t parent, const vfs_context& ctx);

// Lists entries from cookie through filler (see the cookie scheme above). *eof = 1 at the end.
int ext2_dir_readdir(ext2_inode_info* dp, uint64_t cookie, readdir_filler filler, void* fctx, int* eof);

}  // namespace vnopfs::ext2

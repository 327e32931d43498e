// dirblock.h: one ext2 directory block in memory: validation, iteration and editing of its entries.
//
// On disk a directory is a sequence of blocks; each block is a chain of variable-length records
//   u32 inode | u16 rec_len | u8 name_len | u8 file_type | name[name_len] | padding to rec_len
// (file_type is the high byte of a 16-bit name_len on revision 0 / without the filetype feature: there we
// read it as 0 and never write it). The records of a block tile it exactly: the first starts at 0, each
// next one at offset + rec_len, and the last one ends at the block end. inode 0 marks an unused record
// (a whole empty block, or the first record of a block whose entry was removed).
//
// Contract: dirblock_check validates a whole block before anything else here touches it; every other
// function assumes a block that passed (or that it built itself) and keeps it valid. Nothing here does
// I/O, takes locks or logs: the directory code (dir.cpp) owns the buffers and reports corruption.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "vnops/ext2/format.h"

namespace vnopfs::ext2 {

uint8_t ft_from_mode(uint16_t mode);   // S_IFMT bits -> FT_*; EXT2_FT_UNKNOWN for anything else
uint8_t dtype_from_ft(uint8_t ft);     // FT_* -> DT_* of <dirent.h>
uint8_t dtype_from_mode(uint16_t mode);

// What validation needs to know about the filesystem.
struct dirblock_geom {
  uint32_t block_size;     // bytes, a power of two in [1024, 65536]
  uint32_t inodes_count;   // s_inodes_count: entry inode numbers must be <= this
  bool filetype;           // INCOMPAT_FILETYPE: file_type byte is meaningful (< EXT2_FT_MAX)
};

// One record as parsed from a block.
struct dirent_view {
  uint32_t offset;    // of the record within the block
  uint32_t ino;       // 0: unused record
  uint32_t rec_len;
  uint32_t name_len;
  uint8_t file_type;  // 0 without the filetype feature
  std::string_view name;
  uint32_t used() const { return ino ? ext2_dir_rec_len(name_len) : 0; }  // bytes the entry needs
};

// Why a block failed validation: the record offset, the field and its value (for the log line).
struct dirblock_fault {
  uint32_t offset = 0;
  const char* field = "";
  uint64_t value = 0;
};

// Validates every record: rec_len >= 8, a multiple of 4, >= ext2_dir_rec_len(name_len) when in use, inside
// the block; the last record ends at the block end; name_len <= rec_len - 8; inode <= inodes_count (and not
// 1..first_ino-reserved special cases: that is the caller's business); file_type < EXT2_FT_MAX with filetype.
// A used entry with name_len 0 is bad. Returns true when valid, else false with *f describing the first fault.
bool dirblock_check(const uint8_t* blk, const dirblock_geom& g, dirblock_fault* f);

// Reads the record at offset off of a valid block.
dirent_view dirblock_at(const uint8_t* blk, uint32_t block_size, uint32_t off, bool filetype);

// Iterates the records of a valid block: for (auto it = dirblock_iter(...); it.valid(); it.next()).
class dirblock_iter {
 public:
  dirblock_iter(const uint8_t* blk, uint32_t block_size, bool filetype, uint32_t start = 0)
      : blk_(blk), bs_(block_size), ft_(filetype), off_(start) { load(); }
  bool valid() const { return off_ < bs_; }
  const dirent_view& operator*() const { return cur_; }
  const dirent_view* operator->() const { return &cur_; }
  void next() { off_ += cur_.rec_len; load(); }

 private:
  void load() { if (valid()) cur_ = dirblock_at(blk_, bs_, off_, ft_); }
  const uint8_t* blk_;
  uint32_t bs_;
  bool ft_;
  uint32_t off_;
  dirent_view cur_{};
};

// A found entry: its record and the record before it in the block (nullopt for the first).
struct dirent_slot {
  dirent_view ent;
  std::optional<uint32_t> prev_offset;
};
std::optional<dirent_slot> dirblock_find(const uint8_t* blk, uint32_t block_size, bool filetype,
                                         std::string_view name);

// The record offset of the first live entry at or after byte `pos` of the block (readdir resynchronisation:
// a cookie that falls inside a record, because the entry it named was merged away, resumes at the next
// record boundary). block_size when none.
uint32_t dirblock_resync(const uint8_t* blk, uint32_t block_size, bool filetype, uint32_t pos);

// Where an entry of name_len would go: the offset of a record that has room, either an unused record
// (ino 0) with rec_len >= need, or a live record with rec_len - used >= need (split). nullopt when full.
std::optional<uint32_t> dirblock_room(const uint8_t* blk, uint32_t block_size, bool filetype,
                                      uint32_t name_len);

// The largest entry size (ext2_dir_rec_len of a name) that dirblock_room would find room for in this block:
// the most slack of any record (rec_len - used). An entry of name_len fits iff ext2_dir_rec_len(name_len)
// <= this. 0 when no record has slack.
uint32_t dirblock_largest_room(const uint8_t* blk, uint32_t block_size, bool filetype);

// Inserts (name, ino, ft) into the record at `off` returned by dirblock_room. Returns the new entry's
// offset. ft is written only with filetype.
uint32_t dirblock_insert(uint8_t* blk, uint32_t block_size, bool filetype, uint32_t off,
                         std::string_view name, uint32_t ino, uint8_t ft);

// Removes the live entry of slot: merged into the previous record's rec_len, or, as the first record of
// the block, its inode zeroed (rec_len kept, so the records after it do not move).
void dirblock_remove(uint8_t* blk, uint32_t block_size, const dirent_slot& slot);

// Points an existing entry at another inode (rename over an existing name).
void dirblock_set_ino(uint8_t* blk, uint32_t off, uint32_t ino, uint8_t ft, bool filetype);

// Formats an empty block: one unused record spanning it.
void dirblock_init_empty(uint8_t* blk, uint32_t block_size);
// Formats the first block of a new directory: "." -> self, ".." -> parent, the rest one record.
void dirblock_init_dots(uint8_t* blk, uint32_t block_size, bool filetype, uint32_t self, uint32_t parent);

// True when the block has no live entry other than "." and "..".
bool dirblock_only_dots(const uint8_t* blk, uint32_t block_size, bool filetype);

}  // namespace vnopfs::ext2

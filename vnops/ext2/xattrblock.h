// xattrblock.h: the ext2 extended-attribute block and in-inode area in memory (decode, encode, hashes).
//
// The block (i_file_acl names it; Linux fs/ext2/xattr.h, e2fsprogs lib/ext2fs/ext_attr.c):
//   header  u32 h_magic 0xEA020000 | u32 h_refcount | u32 h_blocks (1) | u32 h_hash | u32 h_checksum | u32[3]
//   entries from byte 32, each 4-aligned:
//           u8 e_name_len | u8 e_name_index | u16 e_value_offs | u32 e_value_inum (0) | u32 e_value_size |
//           u32 e_hash | name[e_name_len] | pad to 4
//   a 4-byte zero word ends the entry list; values live at the end of the block, each padded to 4 bytes
//   with zeros, e_value_offs counted from the block start.
// The in-inode area of a large inode (ext4 places it; ext2 only reads it): at 128 + i_extra_isize, u32
// magic 0xEA020000, then entries as above whose e_value_offs count from the first entry; up to the inode end.
//
// Entries are kept sorted as the kernel sorts them (name_index, then name_len, then the name bytes), the
// entry hash and block hash computed as ext2_xattr_hash_entry / ext2_xattr_rehash do. Decoding validates
// every offset and size before use; encoding always produces a block that decodes. No I/O, no locks here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vnops/ext2/format.h"

namespace vnopfs::ext2 {

// Name indexes beyond format.h's: ext4's "system." (system.data) and richacl, read and listed, never written.
enum : uint8_t { EXT2_XATTR_INDEX_SYSTEM = 7, EXT2_XATTR_INDEX_RICHACL = 8 };

struct xattr_item {
  uint8_t index;
  std::string name;   // without the prefix of its index
  std::string value;
  bool operator==(const xattr_item&) const = default;
};

// Why a decode failed: the byte offset, the field and its value (for the corruption log line).
struct xattr_fault {
  uint32_t offset = 0;
  const char* field = "";
  uint64_t value = 0;
};

// Splits "user.foo" into (EXT2_XATTR_INDEX_USER, "foo"); "system.posix_acl_access" into (2, ""). nullopt for
// a name in no namespace ext2 stores.
struct xattr_name {
  uint8_t index;
  std::string_view suffix;
};
std::optional<xattr_name> xattr_split_name(std::string_view full);
// The full name of an item ("user." + name). Empty for an index we do not know.
std::string xattr_full_name(uint8_t index, std::string_view name);

// The kernel's entry hash over the name and the value padded to 4 bytes. signed_chars: the hash as
// computed with char signed (x86 kernels before 6.2 and ext2 still); e2fsck accepts both.
uint32_t xattr_hash_entry(uint8_t name_len, const char* name, const uint8_t* value, uint32_t value_size,
                          bool signed_chars = true);

// Header fields of a block (valid after a successful decode).
uint32_t xattr_block_refcount(const uint8_t* blk);
void xattr_block_set_refcount(uint8_t* blk, uint32_t refcount);

// Decodes a block of block_size bytes into items (block order). False with *f on any bad header, entry,
// offset, size or overlap (entries and values may not overlap each other or the header).
bool xattr_block_decode(const uint8_t* blk, uint32_t block_size, std::vector<xattr_item>* out, xattr_fault* f);

// Bytes a block holding items needs (header + entries + end word + values).
size_t xattr_block_need(const std::vector<xattr_item>& items);

// Sorts items the kernel's way and writes a whole block (header with refcount, entries with hashes, zeroed
// gaps, values at the end). False (block untouched) when they do not fit: ENOSPC for the caller.
bool xattr_block_encode(uint8_t* blk, uint32_t block_size, std::vector<xattr_item> items, uint32_t refcount);

// Decodes the in-inode area: region = inode bytes from 128 + i_extra_isize to the inode end. No magic
// there means no attributes (true, empty). False with *f when the magic is present and the entries are bad.
bool xattr_ibody_decode(const uint8_t* region, uint32_t len, std::vector<xattr_item>* out, xattr_fault* f);

// Writes the in-inode area (region as for decode): magic, sorted entries, values at the region end; all
// zeros when items is empty. False (region untouched) when they do not fit.
bool xattr_ibody_encode(uint8_t* region, uint32_t len, std::vector<xattr_item> items);

// Orders items as the kernel sorts entries.
bool xattr_item_less(const xattr_item& a, const xattr_item& b);

}  // namespace vnopfs::ext2

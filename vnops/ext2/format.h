// format.h: the ext2 on-disk format (revisions 0 and 1), and nothing else.
//
// Every struct is the exact on-disk layout: little-endian fields at fixed offsets, proven by the
// static_asserts under each struct. vnopfs runs on little-endian hosts only (asserted below), so fields are
// read and written directly; a big-endian port would put le16/le32 accessors here and nowhere else.
// Names follow the Linux/e2fsprogs headers (ext2_fs.h) so a reader can cross-check.
//
// Notes (invariants the rest of vnops/ext2 relies on, validated at mount or at use):
// - The superblock is at byte 1024, 1024 bytes long, whatever the block size. Block size is
//   1024 << s_log_block_size, 1 KiB .. 64 KiB. s_first_data_block is 1 for 1 KiB blocks, else 0.
// - Group g covers blocks [first_data_block + g * blocks_per_group, ... + blocks_per_group).
//   Groups holding a superblock copy (all of them, or 0, 1 and powers of 3, 5, 7 with sparse_super) begin
//   with the superblock, the descriptor table and s_reserved_gdt_blocks reserved descriptor blocks.
// - Inode numbers start at 1; inode n lives in group (n-1) / inodes_per_group at index
//   (n-1) % inodes_per_group of that group's inode table. Inodes 1..first_ino-1 are reserved
//   (2 = root, 7 = resize inode, 11 = first normal inode in revision 0).
// - Directory entries are 4-aligned, rec_len >= 8 + name_len, never crossing a block; the last entry of a
//   block reaches its end.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace vnopfs::ext2 {

// Little-endian loads and stores at any alignment, for code that walks raw blocks (dirents, xattrs).
inline uint16_t le_get16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap16(v);
  return v;
}
inline uint32_t le_get32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  return v;
}
inline void le_put16(uint8_t* p, uint16_t v) {
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap16(v);
  std::memcpy(p, &v, 2);
}
inline void le_put32(uint8_t* p, uint32_t v) {
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  std::memcpy(p, &v, 4);
}

static_assert(std::endian::native == std::endian::little, "format.h assumes a little-endian host");

// ---- constants
constexpr uint32_t EXT2_SUPER_OFFSET = 1024;  // bytes from the start of the device
constexpr uint32_t EXT2_SUPER_SIZE = 1024;
constexpr uint16_t EXT2_SUPER_MAGIC = 0xEF53;
constexpr uint32_t EXT2_MIN_BLOCK_LOG_SIZE = 10;  // 1 KiB
constexpr uint32_t EXT2_MAX_BLOCK_LOG_SIZE = 16;  // 64 KiB
constexpr uint32_t EXT2_MIN_BLOCK_SIZE = 1u << EXT2_MIN_BLOCK_LOG_SIZE;
constexpr uint32_t EXT2_MAX_BLOCK_SIZE = 1u << EXT2_MAX_BLOCK_LOG_SIZE;

constexpr uint32_t EXT2_GOOD_OLD_REV = 0;  // fixed inode size, no feature flags
constexpr uint32_t EXT2_DYNAMIC_REV = 1;
constexpr uint16_t EXT2_GOOD_OLD_INODE_SIZE = 128;
constexpr uint32_t EXT2_GOOD_OLD_FIRST_INO = 11;

// Reserved inode numbers
constexpr uint32_t EXT2_BAD_INO = 1;
constexpr uint32_t EXT2_ROOT_INO = 2;
constexpr uint32_t EXT2_RESIZE_INO = 7;

// s_state
constexpr uint16_t EXT2_VALID_FS = 0x0001;  // unmounted cleanly
constexpr uint16_t EXT2_ERROR_FS = 0x0002;  // errors detected
// s_errors: what to do when corruption is found
constexpr uint16_t EXT2_ERRORS_CONTINUE = 1;
constexpr uint16_t EXT2_ERRORS_RO = 2;
constexpr uint16_t EXT2_ERRORS_PANIC = 3;  // vnopfs treats it as RO: a daemon never panics the host

// s_creator_os
constexpr uint32_t EXT2_OS_LINUX = 0;

// Feature flags, named as in ext2_fs.h.
constexpr uint32_t EXT2_FEATURE_COMPAT_DIR_PREALLOC = 0x0001;
constexpr uint32_t EXT2_FEATURE_COMPAT_IMAGIC_INODES = 0x0002;
constexpr uint32_t EXT3_FEATURE_COMPAT_HAS_JOURNAL = 0x0004;
constexpr uint32_t EXT2_FEATURE_COMPAT_EXT_ATTR = 0x0008;
constexpr uint32_t EXT2_FEATURE_COMPAT_RESIZE_INODE = 0x0010;
constexpr uint32_t EXT2_FEATURE_COMPAT_DIR_INDEX = 0x0020;
constexpr uint32_t EXT2_FEATURE_COMPAT_LAZY_BG = 0x0040;
constexpr uint32_t EXT2_FEATURE_COMPAT_EXCLUDE_BITMAP = 0x0100;
constexpr uint32_t EXT4_FEATURE_COMPAT_SPARSE_SUPER2 = 0x0200;
constexpr uint32_t EXT4_FEATURE_COMPAT_FAST_COMMIT = 0x0400;
constexpr uint32_t EXT4_FEATURE_COMPAT_STABLE_INODES = 0x0800;
constexpr uint32_t EXT4_FEATURE_COMPAT_ORPHAN_FILE = 0x1000;

constexpr uint32_t EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER = 0x0001;
constexpr uint32_t EXT2_FEATURE_RO_COMPAT_LARGE_FILE = 0x0002;
constexpr uint32_t EXT2_FEATURE_RO_COMPAT_BTREE_DIR = 0x0004;
constexpr uint32_t EXT4_FEATURE_RO_COMPAT_HUGE_FILE = 0x0008;
constexpr uint32_t EXT4_FEATURE_RO_COMPAT_GDT_CSUM = 0x0010;
constexpr uint32_t EXT4_FEATURE_RO_COMPAT_DIR_NLINK = 0x0020;
constexpr uint32_t EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE = 0x0040;
constexpr uint32_t EXT4_FEATURE_RO_COMPAT_HAS_SNAPSHOT = 0x0080;
constexpr uint32_t EXT4_FEATURE_RO_COMPAT_QUOTA = 0x0100;
constexpr uint32_t EXT4_FEATURE_RO_COMPAT_BIGALLOC = 0x0200;
constexpr uint32_t EXT4_FEATURE_RO_COMPAT_METADATA_CSUM = 0x0400;
constexpr uint32_t EXT4_FEATURE_RO_COMPAT_REPLICA = 0x0800;
constexpr uint32_t EXT4_FEATURE_RO_COMPAT_READONLY = 0x1000;
constexpr uint32_t EXT4_FEATURE_RO_COMPAT_PROJECT = 0x2000;
constexpr uint32_t EXT4_FEATURE_RO_COMPAT_SHARED_BLOCKS = 0x4000;
constexpr uint32_t EXT4_FEATURE_RO_COMPAT_VERITY = 0x8000;
constexpr uint32_t EXT4_FEATURE_RO_COMPAT_ORPHAN_PRESENT = 0x10000;

constexpr uint32_t EXT2_FEATURE_INCOMPAT_COMPRESSION = 0x0001;
constexpr uint32_t EXT2_FEATURE_INCOMPAT_FILETYPE = 0x0002;
constexpr uint32_t EXT3_FEATURE_INCOMPAT_RECOVER = 0x0004;
constexpr uint32_t EXT3_FEATURE_INCOMPAT_JOURNAL_DEV = 0x0008;
constexpr uint32_t EXT2_FEATURE_INCOMPAT_META_BG = 0x0010;
constexpr uint32_t EXT4_FEATURE_INCOMPAT_EXTENTS = 0x0040;
constexpr uint32_t EXT4_FEATURE_INCOMPAT_64BIT = 0x0080;
constexpr uint32_t EXT4_FEATURE_INCOMPAT_MMP = 0x0100;
constexpr uint32_t EXT4_FEATURE_INCOMPAT_FLEX_BG = 0x0200;
constexpr uint32_t EXT4_FEATURE_INCOMPAT_EA_INODE = 0x0400;
constexpr uint32_t EXT4_FEATURE_INCOMPAT_DIRDATA = 0x1000;
constexpr uint32_t EXT4_FEATURE_INCOMPAT_CSUM_SEED = 0x2000;
constexpr uint32_t EXT4_FEATURE_INCOMPAT_LARGEDIR = 0x4000;
constexpr uint32_t EXT4_FEATURE_INCOMPAT_INLINE_DATA = 0x8000;
constexpr uint32_t EXT4_FEATURE_INCOMPAT_ENCRYPT = 0x10000;
constexpr uint32_t EXT4_FEATURE_INCOMPAT_CASEFOLD = 0x20000;

// What vnopfs implements. Anything else incompat is refused; anything else ro_compat mounts read-only.
// Compat features are safe by definition except has_journal (refused: this is not ext2).
constexpr uint32_t EXT2_FEATURE_INCOMPAT_SUPP = EXT2_FEATURE_INCOMPAT_FILETYPE;
constexpr uint32_t EXT2_FEATURE_RO_COMPAT_SUPP =
    EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER | EXT2_FEATURE_RO_COMPAT_LARGE_FILE;

// ---- superblock (1024 bytes at byte 1024)
struct ext2_super_block {
  uint32_t s_inodes_count;
  uint32_t s_blocks_count;
  uint32_t s_r_blocks_count;      // reserved for the superuser
  uint32_t s_free_blocks_count;
  uint32_t s_free_inodes_count;
  uint32_t s_first_data_block;
  uint32_t s_log_block_size;      // block size = 1024 << this
  uint32_t s_log_frag_size;       // must equal s_log_block_size
  uint32_t s_blocks_per_group;
  uint32_t s_frags_per_group;
  uint32_t s_inodes_per_group;
  uint32_t s_mtime;               // last mount time
  uint32_t s_wtime;               // last write time
  uint16_t s_mnt_count;
  int16_t s_max_mnt_count;
  uint16_t s_magic;
  uint16_t s_state;
  uint16_t s_errors;
  uint16_t s_minor_rev_level;
  uint32_t s_lastcheck;
  uint32_t s_checkinterval;
  uint32_t s_creator_os;
  uint32_t s_rev_level;
  uint16_t s_def_resuid;
  uint16_t s_def_resgid;
  // EXT2_DYNAMIC_REV only
  uint32_t s_first_ino;
  uint16_t s_inode_size;
  uint16_t s_block_group_nr;      // group of this superblock copy
  uint32_t s_feature_compat;
  uint32_t s_feature_incompat;
  uint32_t s_feature_ro_compat;
  uint8_t s_uuid[16];
  char s_volume_name[16];
  char s_last_mounted[64];
  uint32_t s_algorithm_usage_bitmap;
  uint8_t s_prealloc_blocks;
  uint8_t s_prealloc_dir_blocks;
  uint16_t s_reserved_gdt_blocks; // resize_inode: descriptor blocks reserved after the GDT
  uint8_t s_journal_uuid[16];
  uint32_t s_journal_inum;
  uint32_t s_journal_dev;
  uint32_t s_last_orphan;
  uint32_t s_hash_seed[4];        // dir_index
  uint8_t s_def_hash_version;
  uint8_t s_jnl_backup_type;
  uint16_t s_desc_size;           // 64bit only
  uint32_t s_default_mount_opts;
  uint32_t s_first_meta_bg;
  uint32_t s_mkfs_time;
  uint32_t s_jnl_blocks[17];
  uint32_t s_blocks_count_hi;     // 64bit only
  uint32_t s_r_blocks_count_hi;
  uint32_t s_free_blocks_hi;
  uint16_t s_min_extra_isize;
  uint16_t s_want_extra_isize;
  uint32_t s_flags;
  uint16_t s_raid_stride;
  uint16_t s_mmp_interval;
  uint64_t s_mmp_block;
  uint32_t s_raid_stripe_width;
  uint8_t s_log_groups_per_flex;
  uint8_t s_checksum_type;
  uint16_t s_reserved_pad;
  uint64_t s_kbytes_written;
  uint8_t s_reserved_a[204];      // ext4 fields vnopfs neither reads nor changes (kept byte for byte)
  uint32_t s_backup_bgs[2];       // sparse_super2: the only groups with superblock copies
  uint8_t s_reserved_b[424];
  uint32_t s_checksum;
};
static_assert(sizeof(ext2_super_block) == EXT2_SUPER_SIZE);
static_assert(offsetof(ext2_super_block, s_log_block_size) == 24);
static_assert(offsetof(ext2_super_block, s_blocks_per_group) == 32);
static_assert(offsetof(ext2_super_block, s_mnt_count) == 52);
static_assert(offsetof(ext2_super_block, s_magic) == 56);
static_assert(offsetof(ext2_super_block, s_state) == 58);
static_assert(offsetof(ext2_super_block, s_rev_level) == 76);
static_assert(offsetof(ext2_super_block, s_first_ino) == 84);
static_assert(offsetof(ext2_super_block, s_inode_size) == 88);
static_assert(offsetof(ext2_super_block, s_feature_compat) == 92);
static_assert(offsetof(ext2_super_block, s_feature_incompat) == 96);
static_assert(offsetof(ext2_super_block, s_feature_ro_compat) == 100);
static_assert(offsetof(ext2_super_block, s_uuid) == 104);
static_assert(offsetof(ext2_super_block, s_last_mounted) == 136);
static_assert(offsetof(ext2_super_block, s_reserved_gdt_blocks) == 206);
static_assert(offsetof(ext2_super_block, s_journal_inum) == 224);
static_assert(offsetof(ext2_super_block, s_hash_seed) == 236);
static_assert(offsetof(ext2_super_block, s_desc_size) == 254);
static_assert(offsetof(ext2_super_block, s_jnl_blocks) == 268);
static_assert(offsetof(ext2_super_block, s_blocks_count_hi) == 336);
static_assert(offsetof(ext2_super_block, s_min_extra_isize) == 348);
static_assert(offsetof(ext2_super_block, s_kbytes_written) == 376);
static_assert(offsetof(ext2_super_block, s_backup_bgs) == 588);
static_assert(offsetof(ext2_super_block, s_checksum) == 1020);

// ---- group descriptor (32 bytes; the table starts in the block after the superblock's)
struct ext2_group_desc {
  uint32_t bg_block_bitmap;
  uint32_t bg_inode_bitmap;
  uint32_t bg_inode_table;
  uint16_t bg_free_blocks_count;
  uint16_t bg_free_inodes_count;
  uint16_t bg_used_dirs_count;
  uint16_t bg_flags;              // ext4 uninit flags; always 0 on ext2 (checked at mount)
  uint32_t bg_reserved[3];
};
static_assert(sizeof(ext2_group_desc) == 32);
static_assert(offsetof(ext2_group_desc, bg_inode_table) == 8);
static_assert(offsetof(ext2_group_desc, bg_free_blocks_count) == 12);
static_assert(offsetof(ext2_group_desc, bg_used_dirs_count) == 16);

// ---- inode
constexpr int EXT2_NDIR_BLOCKS = 12;
constexpr int EXT2_IND_BLOCK = 12;
constexpr int EXT2_DIND_BLOCK = 13;
constexpr int EXT2_TIND_BLOCK = 14;
constexpr int EXT2_N_BLOCKS = 15;

// i_flags (only those ext2 code looks at)
constexpr uint32_t EXT2_SECRM_FL = 0x00000001;
constexpr uint32_t EXT2_SYNC_FL = 0x00000008;       // writes are synchronous
constexpr uint32_t EXT2_IMMUTABLE_FL = 0x00000010;
constexpr uint32_t EXT2_APPEND_FL = 0x00000020;
constexpr uint32_t EXT2_NODUMP_FL = 0x00000040;
constexpr uint32_t EXT2_NOATIME_FL = 0x00000080;
constexpr uint32_t EXT2_INDEX_FL = 0x00001000;     // hashed directory (dir_index): cleared when we modify it
constexpr uint32_t EXT2_DIRSYNC_FL = 0x00010000;   // directory changes are synchronous
constexpr uint32_t EXT2_TOPDIR_FL = 0x00020000;    // the top of a directory hierarchy (Orlov)
// What a new inode takes from its directory (Linux's EXT2_FL_INHERITED), cut by its type: directories
// take all, regular files all but DIRSYNC and TOPDIR, other types only NODUMP and NOATIME.
constexpr uint32_t EXT2_FL_INHERITED = 0x0001C6CF;  // SECRM UNRM COMPR SYNC NODUMP NOATIME COMPRBLK NOCOMPR
                                                   // JOURNAL_DATA NOTAIL DIRSYNC
constexpr uint32_t EXT2_REG_FLMASK = ~(EXT2_DIRSYNC_FL | EXT2_TOPDIR_FL);
constexpr uint32_t EXT2_OTHER_FLMASK = EXT2_NODUMP_FL | EXT2_NOATIME_FL;
constexpr uint32_t EXT4_EXTENTS_FL = 0x00080000;   // never valid on ext2: refused per inode
constexpr uint32_t EXT4_EA_INODE_FL = 0x00200000;
constexpr uint32_t EXT4_INLINE_DATA_FL = 0x10000000;

// The 128-byte base inode of every revision.
struct ext2_inode {
  uint16_t i_mode;
  uint16_t i_uid;                 // low 16 bits
  uint32_t i_size;                // low 32 bits
  uint32_t i_atime;
  uint32_t i_ctime;
  uint32_t i_mtime;
  uint32_t i_dtime;               // deletion time
  uint16_t i_gid;                 // low 16 bits
  uint16_t i_links_count;
  uint32_t i_blocks;              // 512-byte sectors (data, indirect and xattr blocks)
  uint32_t i_flags;
  uint32_t l_i_version;           // osd1
  uint32_t i_block[EXT2_N_BLOCKS];  // 12 direct, single, double, triple indirect; symlink target if fast
  uint32_t i_generation;
  uint32_t i_file_acl;            // xattr block
  uint32_t i_size_high;           // regular files (large_file); i_dir_acl for directories in rev 0
  uint32_t i_faddr;
  // osd2 (Linux)
  uint16_t l_i_blocks_hi;         // huge_file only
  uint16_t l_i_file_acl_high;     // 64bit only
  uint16_t l_i_uid_high;
  uint16_t l_i_gid_high;
  uint16_t l_i_checksum_lo;
  uint16_t l_i_reserved;
};
static_assert(sizeof(ext2_inode) == EXT2_GOOD_OLD_INODE_SIZE);
static_assert(offsetof(ext2_inode, i_links_count) == 26);
static_assert(offsetof(ext2_inode, i_blocks) == 28);
static_assert(offsetof(ext2_inode, i_block) == 40);
static_assert(offsetof(ext2_inode, i_generation) == 100);
static_assert(offsetof(ext2_inode, i_file_acl) == 104);
static_assert(offsetof(ext2_inode, i_size_high) == 108);
static_assert(offsetof(ext2_inode, l_i_uid_high) == 120);
static_assert(offsetof(ext2_inode, l_i_gid_high) == 122);

// The fields after the base in inodes larger than 128 bytes. i_extra_isize says how many of them are
// valid (counted from byte 128); in-inode xattrs (magic EXT2_XATTR_MAGIC) follow at 128 + i_extra_isize.
struct ext2_inode_large {
  ext2_inode base;
  uint16_t i_extra_isize;
  uint16_t i_checksum_hi;
  uint32_t i_ctime_extra;         // (nanoseconds << 2) | epoch bits
  uint32_t i_mtime_extra;
  uint32_t i_atime_extra;
  uint32_t i_crtime;
  uint32_t i_crtime_extra;
  uint32_t i_version_hi;
  uint32_t i_projid;
};
static_assert(sizeof(ext2_inode_large) == 160);
static_assert(offsetof(ext2_inode_large, i_extra_isize) == 128);
static_assert(offsetof(ext2_inode_large, i_ctime_extra) == 132);
static_assert(offsetof(ext2_inode_large, i_mtime_extra) == 136);
static_assert(offsetof(ext2_inode_large, i_atime_extra) == 140);
static_assert(offsetof(ext2_inode_large, i_crtime) == 144);
// The extra fields a large inode must cover for each nanosecond field (i_extra_isize >= this).
constexpr uint16_t EXT2_EXTRA_ISIZE_CTIME = 8;
constexpr uint16_t EXT2_EXTRA_ISIZE_MTIME = 12;
constexpr uint16_t EXT2_EXTRA_ISIZE_ATIME = 16;
constexpr uint16_t EXT2_EXTRA_ISIZE_CRTIME = 24;
constexpr uint16_t EXT2_EXTRA_ISIZE_DEFAULT = 32;  // what mke2fs and the kernel give new inodes
constexpr uint32_t EXT2_EXTRA_NSEC_SHIFT = 2;
constexpr uint32_t EXT2_EXTRA_EPOCH_MASK = 0x3;

// ---- directory entry (revision 0 has a 16-bit name_len and no file type)
constexpr uint32_t EXT2_NAME_LEN = 255;
constexpr uint32_t EXT2_DIR_ROUND = 4;
struct ext2_dir_entry_2 {
  uint32_t inode;                 // 0 = unused entry
  uint16_t rec_len;               // bytes to the next entry
  uint8_t name_len;
  uint8_t file_type;              // EXT2_FT_* when the filetype feature is on, else high byte of name_len
  char name[];                    // name_len bytes, not NUL-terminated
};
static_assert(sizeof(ext2_dir_entry_2) == 8);
static_assert(offsetof(ext2_dir_entry_2, name_len) == 6);
constexpr uint32_t EXT2_DIR_ENTRY_HEADER = 8;
// rec_len of an entry naming `name_len` bytes.
constexpr uint32_t ext2_dir_rec_len(uint32_t name_len) {
  return (EXT2_DIR_ENTRY_HEADER + name_len + EXT2_DIR_ROUND - 1) & ~(EXT2_DIR_ROUND - 1);
}
static_assert(ext2_dir_rec_len(1) == 12 && ext2_dir_rec_len(4) == 12 && ext2_dir_rec_len(5) == 16);
// Block sizes of 64 KiB store rec_len 65536 as 0xFFFF or 0 (ext4 convention); ext2 code must decode via
// these two helpers.
constexpr uint32_t ext2_rec_len_from_disk(uint16_t dlen, uint32_t block_size) {
  if (block_size < 65536) return dlen;
  if (dlen == 0xFFFF || dlen == 0) return 65536;
  return dlen;
}
constexpr uint16_t ext2_rec_len_to_disk(uint32_t len, uint32_t /*block_size*/) {
  return len >= 65536 ? 0xFFFF : static_cast<uint16_t>(len);
}

enum : uint8_t {
  EXT2_FT_UNKNOWN = 0,
  EXT2_FT_REG_FILE = 1,
  EXT2_FT_DIR = 2,
  EXT2_FT_CHRDEV = 3,
  EXT2_FT_BLKDEV = 4,
  EXT2_FT_FIFO = 5,
  EXT2_FT_SOCK = 6,
  EXT2_FT_SYMLINK = 7,
  EXT2_FT_MAX = 8,
};

// ---- extended attributes (ext_attr): a block of its own, or in the inode after i_extra_isize
constexpr uint32_t EXT2_XATTR_MAGIC = 0xEA020000;
constexpr uint32_t EXT2_XATTR_REFCOUNT_MAX = 1024;
struct ext2_xattr_header {
  uint32_t h_magic;
  uint32_t h_refcount;            // inodes sharing this block
  uint32_t h_blocks;              // always 1
  uint32_t h_hash;
  uint32_t h_checksum;            // metadata_csum only
  uint32_t h_reserved[3];
};
static_assert(sizeof(ext2_xattr_header) == 32);
static_assert(offsetof(ext2_xattr_header, h_hash) == 12);

// In-inode xattrs start with only a magic number (the ibody header).
struct ext2_xattr_ibody_header {
  uint32_t h_magic;
};
static_assert(sizeof(ext2_xattr_ibody_header) == 4);

// Entries are sorted, 4-aligned, and end with 4 zero bytes; values are 4-aligned, packed from the end.
struct ext2_xattr_entry {
  uint8_t e_name_len;
  uint8_t e_name_index;           // EXT2_XATTR_INDEX_*
  uint16_t e_value_offs;          // from the start of the block (or of the first in-inode entry)
  uint32_t e_value_inum;          // ea_inode only; 0 on ext2
  uint32_t e_value_size;
  uint32_t e_hash;
  char e_name[];
};
static_assert(sizeof(ext2_xattr_entry) == 16);
static_assert(offsetof(ext2_xattr_entry, e_value_size) == 8);
constexpr uint32_t EXT2_XATTR_PAD = 4;
constexpr uint32_t ext2_xattr_len(uint32_t name_len) {
  return (name_len + EXT2_XATTR_PAD - 1 + sizeof(ext2_xattr_entry)) & ~(EXT2_XATTR_PAD - 1);
}
constexpr uint32_t ext2_xattr_size(uint32_t value_size) {
  return (value_size + EXT2_XATTR_PAD - 1) & ~(EXT2_XATTR_PAD - 1);
}
enum : uint8_t {
  EXT2_XATTR_INDEX_USER = 1,
  EXT2_XATTR_INDEX_POSIX_ACL_ACCESS = 2,
  EXT2_XATTR_INDEX_POSIX_ACL_DEFAULT = 3,
  EXT2_XATTR_INDEX_TRUSTED = 4,
  EXT2_XATTR_INDEX_LUSTRE = 5,
  EXT2_XATTR_INDEX_SECURITY = 6,
};

}  // namespace vnopfs::ext2

// dirblock.cpp: the record chain of one directory block. Validation first, then trusted walking: every
// walker below relies on dirblock_check having proved that rec_len chains tile the block.
#include "vnops/ext2/dirblock.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <bit>
#include <cstring>

namespace vnopfs::ext2 {

namespace {


// rec_len is 16 bits on disk: a 64 KiB block's single record is 65535 (format.h's helpers).
uint32_t reclen_from_disk(uint16_t raw, uint32_t block_size) { return ext2_rec_len_from_disk(raw, block_size); }
uint16_t reclen_to_disk(uint32_t len) { return ext2_rec_len_to_disk(len, 0); }

void put_header(uint8_t* rec, uint32_t ino, uint32_t rec_len, uint32_t name_len, uint8_t ft, bool filetype) {
  le_put32(rec, ino);
  le_put16(rec + 4, reclen_to_disk(rec_len));
  rec[6] = uint8_t(name_len);
  rec[7] = filetype ? ft : 0;  // without filetype this is the high byte of a 16-bit name_len: keep it 0
}

void set_reclen(uint8_t* rec, uint32_t rec_len) { le_put16(rec + 4, reclen_to_disk(rec_len)); }

bool fault(dirblock_fault* f, uint32_t off, const char* field, uint64_t value) {
  if (f) *f = {off, field, value};
  return false;
}

}  // namespace

uint8_t ft_from_mode(uint16_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return EXT2_FT_REG_FILE;
    case S_IFDIR: return EXT2_FT_DIR;
    case S_IFCHR: return EXT2_FT_CHRDEV;
    case S_IFBLK: return EXT2_FT_BLKDEV;
    case S_IFIFO: return EXT2_FT_FIFO;
    case S_IFSOCK: return EXT2_FT_SOCK;
    case S_IFLNK: return EXT2_FT_SYMLINK;
    default: return EXT2_FT_UNKNOWN;
  }
}

uint8_t dtype_from_ft(uint8_t ft) {
  static constexpr uint8_t map[EXT2_FT_MAX] = {DT_UNKNOWN, DT_REG, DT_DIR, DT_CHR, DT_BLK, DT_FIFO, DT_SOCK, DT_LNK};
  return ft < EXT2_FT_MAX ? map[ft] : uint8_t(DT_UNKNOWN);
}

uint8_t dtype_from_mode(uint16_t mode) { return dtype_from_ft(ft_from_mode(mode)); }

bool dirblock_check(const uint8_t* blk, const dirblock_geom& g, dirblock_fault* f) {
  uint32_t off = 0;
  while (off < g.block_size) {
    if (g.block_size - off < EXT2_DIR_ENTRY_HEADER) return fault(f, off, "rec_len", g.block_size - off);
    const uint8_t* rec = blk + off;
    uint32_t ino = le_get32(rec);
    uint32_t rec_len = reclen_from_disk(le_get16(rec + 4), g.block_size);
    uint32_t name_len = rec[6];
    uint8_t ft = g.filetype ? rec[7] : 0;
    // Without filetype, rec[7] is the high byte of name_len: a nonzero one means a name > 255 bytes.
    if (!g.filetype && rec[7] != 0) return fault(f, off, "name_len", (uint32_t(rec[7]) << 8) | name_len);
    if (rec_len < EXT2_DIR_ENTRY_HEADER || rec_len % 4 != 0) return fault(f, off, "rec_len", rec_len);
    if (rec_len > g.block_size - off) return fault(f, off, "rec_len", rec_len);
    if (name_len > rec_len - EXT2_DIR_ENTRY_HEADER) return fault(f, off, "name_len", name_len);
    if (ino != 0) {
      if (ino > g.inodes_count) return fault(f, off, "inode", ino);
      if (name_len == 0) return fault(f, off, "name_len", 0);
      if (rec_len < ext2_dir_rec_len(name_len)) return fault(f, off, "rec_len", rec_len);
      if (ft >= EXT2_FT_MAX) return fault(f, off, "file_type", ft);
      // A name no path can spell (e2fsck: "illegal characters in its name"); through FUSE the kernel would
      // refuse the whole readdir reply, so the block is damaged, not the one entry. The value is the byte.
      const auto* nm = rec + EXT2_DIR_ENTRY_HEADER;
      for (uint32_t i = 0; i < name_len; i++)
        if (nm[i] == '/' || nm[i] == '\0') return fault(f, off, "name", nm[i]);
    }
    off += rec_len;
  }
  return true;
}

dirent_view dirblock_at(const uint8_t* blk, uint32_t block_size, uint32_t off, bool filetype) {
  const uint8_t* rec = blk + off;
  dirent_view v;
  v.offset = off;
  v.ino = le_get32(rec);
  v.rec_len = reclen_from_disk(le_get16(rec + 4), block_size);
  v.name_len = rec[6];
  v.file_type = filetype ? rec[7] : 0;
  v.name = std::string_view(reinterpret_cast<const char*>(rec + EXT2_DIR_ENTRY_HEADER), v.name_len);
  return v;
}

std::optional<dirent_slot> dirblock_find(const uint8_t* blk, uint32_t block_size, bool filetype,
                                         std::string_view name) {
  std::optional<uint32_t> prev;
  for (dirblock_iter it(blk, block_size, filetype); it.valid(); it.next()) {
    if (it->ino != 0 && it->name == name) return dirent_slot{*it, prev};
    prev = it->offset;
  }
  return std::nullopt;
}

uint32_t dirblock_resync(const uint8_t* blk, uint32_t block_size, bool filetype, uint32_t pos) {
  for (dirblock_iter it(blk, block_size, filetype); it.valid(); it.next()) {
    if (it->offset >= pos && it->ino != 0) return it->offset;
  }
  return block_size;
}

std::optional<uint32_t> dirblock_room(const uint8_t* blk, uint32_t block_size, bool filetype,
                                      uint32_t name_len) {
  const uint32_t need = ext2_dir_rec_len(name_len);
  for (dirblock_iter it(blk, block_size, filetype); it.valid(); it.next()) {
    if (it->rec_len - it->used() >= need) return it->offset;
  }
  return std::nullopt;
}

uint32_t dirblock_largest_room(const uint8_t* blk, uint32_t block_size, bool filetype) {
  uint32_t best = 0;
  for (dirblock_iter it(blk, block_size, filetype); it.valid(); it.next()) best = std::max(best, it->rec_len - it->used());
  return best;
}

uint32_t dirblock_insert(uint8_t* blk, uint32_t block_size, bool filetype, uint32_t off,
                         std::string_view name, uint32_t ino, uint8_t ft) {
  dirent_view host = dirblock_at(blk, block_size, off, filetype);
  uint32_t at = off, rec_len = host.rec_len;
  if (host.ino != 0) {  // split: the host keeps what it uses, the new entry takes the slack
    set_reclen(blk + off, host.used());
    at = off + host.used();
    rec_len = host.rec_len - host.used();
  }
  uint8_t* rec = blk + at;
  put_header(rec, ino, rec_len, uint32_t(name.size()), ft, filetype);
  std::memcpy(rec + EXT2_DIR_ENTRY_HEADER, name.data(), name.size());
  // Zero the tail so stale names never linger on disk (and e2fsck's checks on padding stay quiet).
  std::memset(rec + EXT2_DIR_ENTRY_HEADER + name.size(), 0, rec_len - EXT2_DIR_ENTRY_HEADER - name.size());
  return at;
}

void dirblock_remove(uint8_t* blk, uint32_t block_size, const dirent_slot& slot) {
  if (slot.prev_offset) {
    uint8_t* prev = blk + *slot.prev_offset;
    uint32_t prev_len = reclen_from_disk(le_get16(prev + 4), block_size);
    set_reclen(prev, prev_len + slot.ent.rec_len);
  } else {
    le_put32(blk + slot.ent.offset, 0);
  }
}

void dirblock_set_ino(uint8_t* blk, uint32_t off, uint32_t ino, uint8_t ft, bool filetype) {
  le_put32(blk + off, ino);
  if (filetype) blk[off + 7] = ft;
}

void dirblock_init_empty(uint8_t* blk, uint32_t block_size) {
  std::memset(blk, 0, block_size);
  put_header(blk, 0, block_size, 0, 0, false);
}

void dirblock_init_dots(uint8_t* blk, uint32_t block_size, bool filetype, uint32_t self, uint32_t parent) {
  std::memset(blk, 0, block_size);
  const uint32_t dot_len = ext2_dir_rec_len(1);
  put_header(blk, self, dot_len, 1, EXT2_FT_DIR, filetype);
  blk[EXT2_DIR_ENTRY_HEADER] = '.';
  put_header(blk + dot_len, parent, block_size - dot_len, 2, EXT2_FT_DIR, filetype);
  blk[dot_len + EXT2_DIR_ENTRY_HEADER] = '.';
  blk[dot_len + EXT2_DIR_ENTRY_HEADER + 1] = '.';
}

bool dirblock_only_dots(const uint8_t* blk, uint32_t block_size, bool filetype) {
  for (dirblock_iter it(blk, block_size, filetype); it.valid(); it.next()) {
    if (it->ino != 0 && it->name != "." && it->name != "..") return false;
  }
  return true;
}

}  // namespace vnopfs::ext2

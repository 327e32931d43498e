// xattrblock.cpp: decode/encode of the xattr block and in-inode area. Decoding trusts nothing: every
// offset is checked against the region and entries/values may not overlap (what e2fsck's region
// allocator demands), so a decoded item list is always safe to re-encode.
#include "vnops/ext2/xattrblock.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

namespace vnopfs::ext2 {

namespace {

constexpr uint32_t kHeaderLen = sizeof(ext2_xattr_header);
constexpr uint32_t kEntryLen = sizeof(ext2_xattr_entry);


struct prefix { uint8_t index; std::string_view text; bool whole; };  // whole: the prefix is the full name
constexpr prefix kPrefixes[] = {
    {EXT2_XATTR_INDEX_USER, "user.", false},
    {EXT2_XATTR_INDEX_POSIX_ACL_ACCESS, "system.posix_acl_access", true},
    {EXT2_XATTR_INDEX_POSIX_ACL_DEFAULT, "system.posix_acl_default", true},
    {EXT2_XATTR_INDEX_TRUSTED, "trusted.", false},
    {EXT2_XATTR_INDEX_SECURITY, "security.", false},
    {EXT2_XATTR_INDEX_RICHACL, "system.richacl", true},
    {EXT2_XATTR_INDEX_SYSTEM, "system.", false},  // after the whole-name system.* ones
};

bool whole_name_index(uint8_t index) {
  for (const prefix& p : kPrefixes)
    if (p.index == index) return p.whole;
  return false;
}

bool fault(xattr_fault* f, uint32_t off, const char* field, uint64_t value) {
  if (f) *f = {off, field, value};
  return false;
}

// Decodes the entry list starting at `first` in base[0..len), values counted from value_base (an offset
// into base). used: intervals already taken (the header), checked for overlap with entries and values.
bool decode_entries(const uint8_t* base, uint32_t len, uint32_t first, uint32_t value_base,
                    std::vector<xattr_item>* out, xattr_fault* f) {
  std::vector<std::pair<uint32_t, uint32_t>> values;  // [start, end) of each value
  uint32_t off = first;
  for (;;) {
    if (off > len || len - off < 4) return fault(f, off, "e_name_len", 0);
    if (le_get32(base + off) == 0) break;  // the end word
    if (len - off < kEntryLen) return fault(f, off, "e_name_len", 0);
    const uint8_t* e = base + off;
    uint8_t name_len = e[0], index = e[1];
    uint32_t voffs = le_get16(e + 2), inum = le_get32(e + 4), vsize = le_get32(e + 8);
    // An empty name is how the whole-name indexes are stored (system.posix_acl_access is index 2 with
    // name ""); for a prefix index it would name "user." itself, which Linux never writes.
    if (name_len == 0 && !whole_name_index(index)) return fault(f, off, "e_name_len", 0);
    if (ext2_xattr_len(name_len) > len - off) return fault(f, off, "e_name_len", name_len);
    if (inum != 0) return fault(f, off, "e_value_inum", inum);
    xattr_item item{index, std::string(reinterpret_cast<const char*>(e + kEntryLen), name_len), {}};
    if (vsize != 0) {
      uint64_t start = uint64_t(value_base) + voffs;
      if (vsize > len || start + ext2_xattr_size(vsize) > len) return fault(f, off, "e_value_size", vsize);
      item.value.assign(reinterpret_cast<const char*>(base + start), vsize);
      values.emplace_back(uint32_t(start), uint32_t(start + ext2_xattr_size(vsize)));
    }
    out->push_back(std::move(item));
    off += ext2_xattr_len(name_len);
  }
  const uint32_t entries_end = off + 4;
  std::sort(values.begin(), values.end());
  uint32_t prev_end = entries_end;
  for (auto& [s, e] : values) {
    if (s < prev_end) return fault(f, s, "e_value_offs", s - value_base);
    prev_end = e;
  }
  return true;
}

}  // namespace

std::optional<xattr_name> xattr_split_name(std::string_view full) {
  for (const prefix& p : kPrefixes) {
    if (p.whole) {
      if (full == p.text) return xattr_name{p.index, {}};
    } else if (full.substr(0, p.text.size()) == p.text) {
      return xattr_name{p.index, full.substr(p.text.size())};
    }
  }
  return std::nullopt;
}

std::string xattr_full_name(uint8_t index, std::string_view name) {
  for (const prefix& p : kPrefixes) {
    if (p.index == index) return std::string(p.text) + (p.whole ? std::string() : std::string(name));
  }
  return {};
}

uint32_t xattr_hash_entry(uint8_t name_len, const char* name, const uint8_t* value, uint32_t value_size,
                          bool signed_chars) {
  uint32_t hash = 0;
  for (int n = 0; n < name_len; n++) {
    uint32_t c = signed_chars ? uint32_t(int32_t(static_cast<signed char>(name[n])))
                              : uint32_t(static_cast<unsigned char>(name[n]));
    hash = (hash << 5) ^ (hash >> 27) ^ c;
  }
  for (uint32_t n = 0; n < ext2_xattr_size(value_size) / 4; n++) {
    uint32_t w = 0;  // the padding of the last word reads as zeros, as it is on disk
    uint32_t take = std::min<uint32_t>(4, value_size - n * 4);
    uint8_t word[4] = {0, 0, 0, 0};
    std::memcpy(word, value + n * 4, take);
    w = le_get32(word);
    hash = (hash << 16) ^ (hash >> 16) ^ w;
  }
  return hash;
}

uint32_t xattr_block_refcount(const uint8_t* blk) { return le_get32(blk + 4); }
void xattr_block_set_refcount(uint8_t* blk, uint32_t refcount) { le_put32(blk + 4, refcount); }

bool xattr_block_decode(const uint8_t* blk, uint32_t block_size, std::vector<xattr_item>* out, xattr_fault* f) {
  out->clear();
  if (le_get32(blk) != EXT2_XATTR_MAGIC) return fault(f, 0, "h_magic", le_get32(blk));
  if (le_get32(blk + 8) != 1) return fault(f, 8, "h_blocks", le_get32(blk + 8));
  if (le_get32(blk + 4) == 0) return fault(f, 4, "h_refcount", 0);
  return decode_entries(blk, block_size, kHeaderLen, 0, out, f);
}

bool xattr_ibody_decode(const uint8_t* region, uint32_t len, std::vector<xattr_item>* out, xattr_fault* f) {
  out->clear();
  if (len < 4 || le_get32(region) != EXT2_XATTR_MAGIC) return true;
  return decode_entries(region, len, 4, 4, out, f);
}

bool xattr_item_less(const xattr_item& a, const xattr_item& b) {
  if (a.index != b.index) return a.index < b.index;
  if (a.name.size() != b.name.size()) return a.name.size() < b.name.size();
  return std::memcmp(a.name.data(), b.name.data(), a.name.size()) < 0;
}

size_t xattr_block_need(const std::vector<xattr_item>& items) {
  size_t n = kHeaderLen + 4;
  for (const xattr_item& it : items) n += ext2_xattr_len(uint32_t(it.name.size())) + ext2_xattr_size(uint32_t(it.value.size()));
  return n;
}

namespace {

// Lays sorted items out in base[0..len): entries from `first`, values packed down from len, offsets
// counted from value_base. Returns the block hash (ext2_xattr_rehash). The caller checked the size.
uint32_t encode_entries(uint8_t* base, uint32_t len, uint32_t first, uint32_t value_base,
                        const std::vector<xattr_item>& items) {
  uint32_t off = first, vend = len, block_hash = 0;
  bool unshareable = false;  // ext2_xattr_rehash: an entry hash of 0 makes the block hash 0
  for (const xattr_item& it : items) {
    uint8_t* e = base + off;
    uint32_t vsize = uint32_t(it.value.size());
    uint32_t vpos = 0;
    if (vsize) {
      vend -= ext2_xattr_size(vsize);
      vpos = vend;
      std::memcpy(base + vpos, it.value.data(), vsize);
    }
    e[0] = uint8_t(it.name.size());
    e[1] = it.index;
    le_put16(e + 2, uint16_t(vsize ? vpos - value_base : 0));
    le_put32(e + 4, 0);
    le_put32(e + 8, vsize);
    std::memcpy(e + kEntryLen, it.name.data(), it.name.size());
    uint32_t h = xattr_hash_entry(uint8_t(it.name.size()), it.name.data(), base + vpos, vsize);
    le_put32(e + 12, h);
    if (h == 0) unshareable = true;
    block_hash = (block_hash << 16) ^ (block_hash >> 16) ^ h;
    off += ext2_xattr_len(uint32_t(it.name.size()));
  }
  return unshareable ? 0 : block_hash;
}

bool names_ok(const std::vector<xattr_item>& items) {
  for (const xattr_item& it : items) {
    if ((it.name.empty() && !whole_name_index(it.index)) || it.name.size() > 255) return false;
  }
  return true;
}

}  // namespace

bool xattr_block_encode(uint8_t* blk, uint32_t block_size, std::vector<xattr_item> items, uint32_t refcount) {
  if (!names_ok(items) || xattr_block_need(items) > block_size) return false;
  std::sort(items.begin(), items.end(), xattr_item_less);
  std::memset(blk, 0, block_size);
  le_put32(blk, EXT2_XATTR_MAGIC);
  le_put32(blk + 4, refcount);
  le_put32(blk + 8, 1);
  le_put32(blk + 12, encode_entries(blk, block_size, kHeaderLen, 0, items));
  return true;
}

bool xattr_ibody_encode(uint8_t* region, uint32_t len, std::vector<xattr_item> items) {
  size_t need = xattr_block_need(items) - kHeaderLen + 4;  // the magic instead of the block header
  if (!names_ok(items) || need > len) return false;
  std::sort(items.begin(), items.end(), xattr_item_less);
  std::memset(region, 0, len);
  if (items.empty()) return true;  // no magic: no in-inode attributes
  le_put32(region, EXT2_XATTR_MAGIC);
  encode_entries(region, len, 4, 4, items);
  return true;
}

}  // namespace vnopfs::ext2

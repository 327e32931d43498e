// The xattr block codec against itself (round trips, bad fields) and against e2fsprogs: blocks and
// in-inode areas debugfs wrote decode with the hashes it computed; blocks we encode pass e2fsck and read
// back through debugfs ea_get.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "ext2/support/ext2_fixture.h"
#include "vnops/ext2/xattrblock.h"

using namespace vnopfs::ext2;
using ext2test::debugfs;
using ext2test::debugfs_w;
using ext2test::read_block;
using ext2test::require_fsck_clean;
using ext2test::sh_ok;
using ext2test::tmpdir;
using ext2test::write_block;

namespace {

constexpr uint32_t kHeaderLen = sizeof(ext2_xattr_header);
constexpr uint32_t kEntryLen = sizeof(ext2_xattr_entry);

uint32_t get32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }

uint64_t stat_field(const std::string& img, const std::string& path, const std::string& field) {
  std::string out = debugfs(img, "stat " + path);
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex(field + ":\\s*(\\d+)")));
  return std::stoull(m[1]);
}

}  // namespace

TEST_CASE("names split into the kernel's indexes", "[xattrblock]") {
  CHECK(xattr_split_name("user.foo")->index == EXT2_XATTR_INDEX_USER);
  CHECK(xattr_split_name("user.foo")->suffix == "foo");
  CHECK(xattr_split_name("trusted.x")->index == EXT2_XATTR_INDEX_TRUSTED);
  CHECK(xattr_split_name("security.selinux")->index == EXT2_XATTR_INDEX_SECURITY);
  CHECK(xattr_split_name("system.posix_acl_access")->index == EXT2_XATTR_INDEX_POSIX_ACL_ACCESS);
  CHECK(xattr_split_name("system.posix_acl_default")->index == EXT2_XATTR_INDEX_POSIX_ACL_DEFAULT);
  CHECK(xattr_split_name("system.posix_acl_access")->suffix.empty());
  CHECK_FALSE(xattr_split_name("os2.foo"));
  CHECK(xattr_full_name(EXT2_XATTR_INDEX_POSIX_ACL_DEFAULT, "") == "system.posix_acl_default");
  CHECK(xattr_full_name(EXT2_XATTR_INDEX_USER, "a") == "user.a");
}

TEST_CASE("encode then decode is the identity, sorted the kernel's way", "[xattrblock]") {
  std::mt19937 rng(3);
  for (int round = 0; round < 500; round++) {
    std::vector<xattr_item> items;
    for (int i = 0, n = int(rng() % 12); i < n; i++) {
      uint8_t idx = std::array<uint8_t, 4>{1, 4, 6, 2}[rng() % 4];
      // index 2 (system.posix_acl_access) is stored with an empty name, as the kernel stores it
      std::string name = idx == 2 ? "" : std::string(1 + rng() % 20, char('a' + rng() % 26));
      bool dup = false;
      for (auto& it : items) dup |= it.index == idx && it.name == name;
      if (!dup) items.push_back({idx, name, std::string(rng() % 100, char(rng()))});
    }
    std::vector<uint8_t> b(1024);
    bool fits = xattr_block_encode(b.data(), 1024, items, 1);
    REQUIRE(fits == (xattr_block_need(items) <= 1024));
    if (!fits) continue;
    std::vector<xattr_item> back;
    xattr_fault f;
    REQUIRE(xattr_block_decode(b.data(), 1024, &back, &f));
    std::sort(items.begin(), items.end(), xattr_item_less);
    REQUIRE(back == items);
  }
}

TEST_CASE("bad headers, entries and overlapping values are refused", "[xattrblock]") {
  std::vector<uint8_t> good(1024);
  REQUIRE(xattr_block_encode(good.data(), 1024, {{1, "a", "hello"}, {1, "bb", "world!"}}, 1));
  struct bad { const char* what; size_t at; uint32_t v; const char* field; };
  const bad cases[] = {
      {"magic", 0, 0xEA010000, "h_magic"},
      {"h_blocks", 8, 2, "h_blocks"},
      {"refcount 0", 4, 0, "h_refcount"},
      {"value past the block", 32 + 8, 5000, "e_value_size"},
      {"value_inum", 32 + 4, 7, "e_value_inum"},
  };
  for (const bad& c : cases) {
    INFO(c.what);
    auto b = good;
    std::memcpy(b.data() + c.at, &c.v, 4);
    std::vector<xattr_item> out;
    xattr_fault f;
    CHECK_FALSE(xattr_block_decode(b.data(), 1024, &out, &f));
    CHECK(std::string(f.field) == c.field);
  }
  // the second value moved onto the first
  auto b = good;
  uint16_t first_offs;
  std::memcpy(&first_offs, b.data() + 32 + 2, 2);
  std::memcpy(b.data() + 32 + 20 + 2, &first_offs, 2);
  std::vector<xattr_item> out;
  xattr_fault f;
  CHECK_FALSE(xattr_block_decode(b.data(), 1024, &out, &f));
  CHECK(std::string(f.field) == "e_value_offs");
  // a name running off the block
  b = good;
  b[32] = 255;
  std::vector<uint8_t> small(b.begin(), b.begin() + 64);
  CHECK_FALSE(xattr_block_decode(small.data(), 64, &out, &f));
  // random damage: decode either refuses or yields items that re-encode
  std::mt19937 rng(5);
  for (int i = 0; i < 20000; i++) {
    auto d = good;
    for (int k = 0; k < 3; k++) d[32 + rng() % 64] = uint8_t(rng());
    if (xattr_block_decode(d.data(), 1024, &out, &f)) {
      std::vector<uint8_t> e(1024);
      REQUIRE(xattr_block_encode(e.data(), 1024, out, 1) == (xattr_block_need(out) <= 1024));
    }
  }
}

TEST_CASE("blocks written by debugfs decode with matching hashes; ours pass e2fsck", "[xattrblock][image]") {
  tmpdir tmp;
  for (uint32_t bs : {1024u, 4096u}) {
    std::string img = tmp.path + "/x" + std::to_string(bs);
    sh_ok("mke2fs -q -F -t ext2 -I 128 -b " + std::to_string(bs) + " " + img + " 4M");
    debugfs_w(img, "write /dev/null f");
    debugfs_w(img, "ea_set f user.alpha one");
    debugfs_w(img, "ea_set f user.b two-two");
    debugfs_w(img, "ea_set f trusted.t " + std::string(300, 'v'));
    debugfs_w(img, "ea_set f security.\xe9t\xe9 high");
    uint64_t blk = stat_field(img, "/f", "File ACL");
    REQUIRE(blk != 0);
    auto b = read_block(img, blk, bs);
    std::vector<xattr_item> items;
    xattr_fault f;
    REQUIRE(xattr_block_decode(b.data(), bs, &items, &f));
    REQUIRE(items.size() == 4);
    // every stored entry hash is ours (signed or unsigned chars: e2fsprogs writes unsigned since 1.47)
    for (uint32_t off = kHeaderLen; get32(b.data() + off) != 0;) {
      const uint8_t* e = b.data() + off;
      uint16_t voffs;
      std::memcpy(&voffs, e + 2, 2);
      uint32_t h = xattr_hash_entry(e[0], reinterpret_cast<const char*>(e + 16), b.data() + voffs, get32(e + 8));
      uint32_t hu = xattr_hash_entry(e[0], reinterpret_cast<const char*>(e + 16), b.data() + voffs, get32(e + 8), false);
      CHECK((get32(e + 12) == h || get32(e + 12) == hu));
      off += ext2_xattr_len(e[0]);
    }
    // our own encoding of a changed list, written over the block
    items.erase(items.begin());
    items.push_back({EXT2_XATTR_INDEX_USER, "zeta", std::string(bs / 3, 'z')});
    items.push_back({EXT2_XATTR_INDEX_USER, "empty", ""});
    REQUIRE(xattr_block_encode(b.data(), bs, items, 1));
    write_block(img, blk, b);
    require_fsck_clean(img);
    std::string list = debugfs(img, "ea_list f");
    CHECK(list.find("user.zeta") != std::string::npos);
    CHECK(list.find("user.empty") != std::string::npos);
    CHECK(debugfs(img, "ea_get f user.zeta") .find(std::string(40, 'z')) != std::string::npos);
  }
}

TEST_CASE("in-inode attributes of 256-byte inodes decode", "[xattrblock][image]") {
  tmpdir tmp;
  std::string img = tmp.path + "/i";
  sh_ok("mke2fs -q -F -t ext2 -I 256 -b 1024 " + img + " 4M");
  debugfs_w(img, "write /dev/null f");
  debugfs_w(img, "ea_set f user.small v1");
  debugfs_w(img, "ea_set f user.other v22");
  std::string imap = debugfs(img, "imap f");
  std::smatch m;
  REQUIRE(std::regex_search(imap, m, std::regex("located at block (\\d+), offset 0x([0-9a-f]+)")));
  auto b = read_block(img, std::stoull(m[1]), 1024);
  const uint8_t* inode = b.data() + std::stoul(m[2], nullptr, 16);
  uint16_t extra;
  std::memcpy(&extra, inode + 128, 2);
  std::vector<xattr_item> items;
  xattr_fault f;
  REQUIRE(xattr_ibody_decode(inode + 128 + extra, 256 - 128 - extra, &items, &f));
  REQUIRE(items.size() == 2);
  std::sort(items.begin(), items.end(), xattr_item_less);
  CHECK(items[1] == xattr_item{EXT2_XATTR_INDEX_USER, "small", "v1"});
  CHECK(items[0] == xattr_item{EXT2_XATTR_INDEX_USER, "other", "v22"});  // same length: bytes order
  CHECK(stat_field(img, "/f", "File ACL") == 0);
}

// Directory blocks in memory: validation of every field, iteration, insert/remove/resync, and the same
// code on blocks that mke2fs and debugfs wrote (read back raw from the image, edited, e2fsck'd).
#include <catch2/catch.hpp>

#include <dirent.h>
#include <sys/stat.h>

#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "ext2/support/ext2_fixture.h"
#include "vnops/ext2/dirblock.h"

using namespace vnopfs::ext2;
using namespace ext2test;

namespace {

void put16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
void put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

std::vector<std::pair<std::string, uint32_t>> live(const std::vector<uint8_t>& b, bool ft = true) {
  std::vector<std::pair<std::string, uint32_t>> out;
  for (dirblock_iter it(b.data(), uint32_t(b.size()), ft); it.valid(); it.next()) {
    if (it->ino) out.emplace_back(std::string(it->name), it->ino);
  }
  return out;
}

dirblock_geom geom(uint32_t bs = 1024) { return {bs, 1000, true}; }

}  // namespace

TEST_CASE("a new directory block has . and .. and validates", "[dirblock]") {
  for (uint32_t bs : {1024u, 4096u, 65536u}) {
    std::vector<uint8_t> b(bs);
    dirblock_init_dots(b.data(), bs, true, 12, 2);
    dirblock_fault f;
    REQUIRE(dirblock_check(b.data(), geom(bs), &f));
    auto l = live(b);
    REQUIRE(l.size() == 2);
    CHECK(l[0] == std::make_pair(std::string("."), 12u));
    CHECK(l[1] == std::make_pair(std::string(".."), 2u));
    CHECK(dirblock_only_dots(b.data(), bs, true));
    auto dd = dirblock_at(b.data(), bs, 12, true);
    CHECK(dd.rec_len == bs - 12);
    CHECK(dd.file_type == EXT2_FT_DIR);
  }
}

TEST_CASE("a 64 KiB block's single record is stored as 65535", "[dirblock]") {
  std::vector<uint8_t> b(65536);
  dirblock_init_empty(b.data(), 65536);
  uint16_t raw;
  std::memcpy(&raw, b.data() + 4, 2);
  CHECK(raw == 0xffff);
  CHECK(dirblock_check(b.data(), geom(65536), nullptr));
  CHECK(dirblock_at(b.data(), 65536, 0, true).rec_len == 65536);
}

TEST_CASE("insert fills slack, remove merges, and the block stays valid", "[dirblock]") {
  const uint32_t bs = 1024;
  std::vector<uint8_t> b(bs);
  dirblock_init_dots(b.data(), bs, true, 12, 2);
  std::map<std::string, uint32_t> model{{".", 12}, {"..", 2}};
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; i++) {
    std::string name = "n" + std::to_string(rng() % 60) + std::string(rng() % 40, 'x');
    if (model.count(name)) {
      auto slot = dirblock_find(b.data(), bs, true, name);
      REQUIRE(slot);
      dirblock_remove(b.data(), bs, *slot);
      model.erase(name);
    } else if (auto room = dirblock_room(b.data(), bs, true, uint32_t(name.size()))) {
      uint32_t ino = 20 + uint32_t(rng() % 900);
      uint32_t at = dirblock_insert(b.data(), bs, true, *room, name, ino, EXT2_FT_REG_FILE);
      CHECK(dirblock_at(b.data(), bs, at, true).name == name);
      model[name] = ino;
    }
    dirblock_fault f;
    REQUIRE(dirblock_check(b.data(), geom(bs), &f));
    auto l = live(b);
    REQUIRE(l.size() == model.size());
    for (auto& [n, ino] : l) CHECK(model.at(n) == ino);
  }
}

TEST_CASE("removing the first record zeroes its inode and keeps the others in place", "[dirblock]") {
  const uint32_t bs = 1024;
  std::vector<uint8_t> b(bs);
  dirblock_init_empty(b.data(), bs);
  uint32_t a = dirblock_insert(b.data(), bs, true, *dirblock_room(b.data(), bs, true, 1), "a", 11, EXT2_FT_REG_FILE);
  uint32_t c = dirblock_insert(b.data(), bs, true, *dirblock_room(b.data(), bs, true, 1), "c", 13, EXT2_FT_REG_FILE);
  CHECK(a == 0);
  CHECK(c == 12);
  dirblock_remove(b.data(), bs, *dirblock_find(b.data(), bs, true, "a"));
  CHECK(dirblock_check(b.data(), geom(bs), nullptr));
  CHECK(dirblock_at(b.data(), bs, 0, true).ino == 0);
  CHECK(dirblock_at(b.data(), bs, 12, true).name == "c");
  // the freed first record is reused by a name that fits it
  CHECK(*dirblock_room(b.data(), bs, true, 4) == 0);
  // a cookie pointing at the removed entry resumes at the next live one
  CHECK(dirblock_resync(b.data(), bs, true, 0) == 12);
  CHECK(dirblock_resync(b.data(), bs, true, 5) == 12);
  CHECK(dirblock_resync(b.data(), bs, true, 13) == bs);
}

TEST_CASE("every bad field is refused with its name", "[dirblock]") {
  const uint32_t bs = 1024;
  auto fresh = [&] {
    std::vector<uint8_t> b(bs);
    dirblock_init_dots(b.data(), bs, true, 12, 2);
    return b;
  };
  struct bad { const char* what; void (*poke)(uint8_t*); const char* field; uint32_t at; };
  const bad cases[] = {
      {"rec_len 0", [](uint8_t* b) { put16(b + 4, 0); }, "rec_len", 0},
      {"rec_len not 4-aligned", [](uint8_t* b) { put16(b + 4, 14); }, "rec_len", 0},
      {"rec_len past the block", [](uint8_t* b) { put16(b + 12 + 4, 1024); }, "rec_len", 12},
      {"name_len past rec_len", [](uint8_t* b) { b[6] = 9; }, "name_len", 0},
      {"inode out of range", [](uint8_t* b) { put32(b + 12, 1001); }, "inode", 12},
      {"file type unknown", [](uint8_t* b) { b[7] = 9; }, "file_type", 0},
      {"live entry without a name", [](uint8_t* b) { b[6] = 0; }, "name_len", 0},
      {"chain stops short of the end", [](uint8_t* b) { put16(b + 12 + 4, 1008); }, "rec_len", 1020},
  };
  for (const bad& c : cases) {
    INFO(c.what);
    auto b = fresh();
    c.poke(b.data());
    dirblock_fault f;
    CHECK_FALSE(dirblock_check(b.data(), geom(bs), &f));
    CHECK(std::string(f.field) == c.field);
    CHECK(f.offset == c.at);
  }
  // without filetype the type byte is the high byte of name_len
  auto b = fresh();
  dirblock_init_dots(b.data(), bs, false, 12, 2);
  CHECK(dirblock_check(b.data(), {bs, 1000, false}, nullptr));
  b[7] = 1;
  dirblock_fault f;
  CHECK_FALSE(dirblock_check(b.data(), {bs, 1000, false}, &f));
  CHECK(std::string(f.field) == "name_len");
}

TEST_CASE("random garbage never passes unnoticed into iteration", "[dirblock]") {
  std::mt19937 rng(11);
  for (int i = 0; i < 20000; i++) {
    std::vector<uint8_t> b(1024);
    dirblock_init_dots(b.data(), 1024, true, 12, 2);
    for (int k = 0; k < 1 + int(rng() % 4); k++) b[rng() % 32] = uint8_t(rng());
    if (!dirblock_check(b.data(), geom(1024), nullptr)) continue;
    uint32_t seen = 0;  // a valid chain tiles the block: walking it ends exactly at the end
    for (dirblock_iter it(b.data(), 1024, true); it.valid(); it.next()) seen += it->rec_len;
    REQUIRE(seen == 1024);
  }
}

TEST_CASE("mke2fs -d directory blocks parse, and an edited block passes e2fsck", "[dirblock][image]") {
  tmpdir tmp;
  std::string src = tmp.path + "/src";
  sh_ok("mkdir -p " + src + "/d && cd " + src + "/d && for i in $(seq 1 300); do echo $i > f_$i; done && ln -s f_1 sym && mkfifo fifo");
  for (uint32_t bs : {1024u, 4096u}) {
    std::string img = tmp.path + "/img" + std::to_string(bs);
    sh_ok("mke2fs -q -F -t ext2 -b " + std::to_string(bs) + " -d " + src + " " + img + " 8M");
    uint32_t inodes = uint32_t(std::stoul(sh_ok("dumpe2fs -h " + img + " 2>/dev/null | awk '/^Inode count:/{print $3}'")));
    std::set<std::string> names;
    std::vector<uint32_t> blocks;
    for (const std::string& w : words(debugfs(img, "blocks /d"))) blocks.push_back(uint32_t(std::stoul(w)));
    REQUIRE(!blocks.empty());
    for (uint32_t blk : blocks) {
      auto b = read_block(img, blk, bs);
      dirblock_fault f;
      REQUIRE(dirblock_check(b.data(), {bs, inodes, true}, &f));
      for (dirblock_iter it(b.data(), bs, true); it.valid(); it.next()) {
        if (!it->ino) continue;
        names.insert(std::string(it->name));
        if (it->name == "sym") CHECK(it->file_type == EXT2_FT_SYMLINK);
        if (it->name == "fifo") CHECK(it->file_type == EXT2_FT_FIFO);
        if (it->name == "f_1") CHECK(it->file_type == EXT2_FT_REG_FILE);
      }
    }
    CHECK(names.size() == 300 + 2 + 2);
    // Edit the blocks: rename f_1 in place, add a second name for f_2's inode, fix its link count.
    std::vector<std::vector<uint8_t>> data;
    for (uint32_t blk : blocks) data.push_back(read_block(img, blk, bs));
    uint32_t ino1 = 0, ino2 = 0;
    for (auto& b : data) {
      if (auto s2 = dirblock_find(b.data(), bs, true, "f_2")) ino2 = s2->ent.ino;
      if (auto s1 = dirblock_find(b.data(), bs, true, "f_1")) {
        ino1 = s1->ent.ino;
        dirblock_remove(b.data(), bs, *s1);
      }
    }
    REQUIRE(ino1 != 0);
    REQUIRE(ino2 != 0);
    for (auto [name, ino] : {std::pair<std::string, uint32_t>{"f_2.link", ino2}, {"renamed_f_1", ino1}}) {
      bool placed = false;
      for (auto& b : data) {
        if (auto room = dirblock_room(b.data(), bs, true, uint32_t(name.size()))) {
          dirblock_insert(b.data(), bs, true, *room, name, ino, EXT2_FT_REG_FILE);
          placed = true;
          break;
        }
      }
      REQUIRE(placed);
    }
    for (size_t i = 0; i < blocks.size(); i++) {
      REQUIRE(dirblock_check(data[i].data(), {bs, inodes, true}, nullptr));
      write_block(img, blocks[i], data[i]);
    }
    debugfs_w(img, "sif <" + std::to_string(ino2) + "> links_count 2");
    require_fsck_clean(img);
    CHECK(debugfs(img, "cat /d/f_2.link") == "2\n");
    CHECK(debugfs(img, "cat /d/renamed_f_1") == "1\n");
  }
}

// extent_test.cpp: extent-wise block mapping. Allocation by range (contiguous data blocks, indirect blocks
// right for requests that cross the direct -> indirect -> double -> triple-indirect boundaries, on 1 KiB
// and 4 KiB blocks), ENOSPC in the middle of a range (IO_UNIT: nothing changed; otherwise a short write
// with exact free counts), and the extent cache behind VNOP_BLOCKMAP kept right by truncate, punch hole
// and fallocate. Every test compares VNOP_BLOCKMAP's answers with the map debugfs reads from the image and
// ends with e2fsck -fn.
#include <linux/falloc.h>
#include <sys/statvfs.h>

#include <map>
#include <random>
#include <regex>

#include <catch2/catch.hpp>

#include "support/ext2_fixture.h"

using namespace ext2test;

namespace {

struct image {
  tmpdir t;
  std::string img = t.path + "/img";
  image(const image_config& c, uint64_t size_kib, const std::string& extra = "") {
    std::string d = t.path + "/d";
    sh("mkdir -p " + quote(d) + " && : > " + quote(d + "/f") + " && : > " + quote(d + "/g"));
    make_image(img, c, size_kib, d, extra);
  }
};

// The block map of a file as debugfs reads it from the image: data blocks by logical block, and the
// number of indirect blocks (IND, DIND, TIND entries).
struct disk_map {
  std::map<uint64_t, uint64_t> data;
  uint64_t indirect = 0;
};

disk_map read_disk_map(const std::string& img, const std::string& path) {
  std::string out = debugfs(img, "stat " + path);
  disk_map dm;
  size_t at = out.find("BLOCKS:");
  REQUIRE(at != std::string::npos);
  std::string blocks = out.substr(at);
  static const std::regex range(R"(\((\d+)(?:-(\d+))?\):(\d+)(?:-(\d+))?)");
  static const std::regex ind(R"(\((T?D?IND)\):(\d+))");
  for (std::sregex_iterator it(blocks.begin(), blocks.end(), range), end; it != end; ++it) {
    uint64_t l0 = std::stoull((*it)[1]), l1 = (*it)[2].matched ? std::stoull((*it)[2]) : l0;
    uint64_t p0 = std::stoull((*it)[3]);
    for (uint64_t l = l0; l <= l1; l++) dm.data[l] = p0 + (l - l0);
  }
  for (std::sregex_iterator it(blocks.begin(), blocks.end(), ind), end; it != end; ++it) dm.indirect++;
  return dm;
}

// VNOP_BLOCKMAP(VNODE_READ) over logical blocks [0, nblocks), walking the runs it answers: pbn per
// logical block (-1 for a hole). Also checks that every answered run is at least one block.
std::vector<int64_t> blockmap_of(vnode* vp, uint32_t bs, uint64_t nblocks) {
  std::vector<int64_t> map;
  while (map.size() < nblocks) {
    daddr64_t bpn = -2;
    size_t run = 0;
    const uint64_t lbn = map.size();
    REQUIRE(VNOP_BLOCKMAP(vp, static_cast<off_t>(lbn * bs), (nblocks - lbn) * bs, &bpn, &run, VNODE_READ, kctx()) == 0);
    REQUIRE(run >= bs);
    REQUIRE(run <= (nblocks - lbn) * bs);
    for (uint64_t k = 0; k < run / bs; k++) map.push_back(bpn < 0 ? -1 : bpn + static_cast<int64_t>(k));
  }
  return map;
}

// The blockmap answers agree with the map on disk, block by block.
void check_same_map(const std::vector<int64_t>& answered, const disk_map& dm) {
  for (uint64_t l = 0; l < answered.size(); l++) {
    auto it = dm.data.find(l);
    int64_t want = it == dm.data.end() ? -1 : static_cast<int64_t>(it->second);
    INFO("logical block " << l);
    REQUIRE(answered[l] == want);
  }
  for (const auto& [l, p] : dm.data) {
    INFO("logical block " << l << " mapped on disk past the range asked");
    REQUIRE(l < answered.size());
  }
}

void check_fsck(const std::string& img) {
  std::string out;
  bool clean = fsck_clean(img, &out);
  INFO(out);
  CHECK(clean);
}

// Data extents of a map: runs of logical blocks whose physical blocks follow each other.
size_t data_extents(const disk_map& dm) {
  size_t n = 0;
  uint64_t pl = 0, pp = 0;
  bool first = true;
  for (const auto& [l, p] : dm.data) {
    if (first || l != pl + 1 || p != pp + 1) n++;
    first = false;
    pl = l;
    pp = p;
  }
  return n;
}

// Indirect blocks a file of blocks [0, n) needs (n inside the double-indirect range or below).
uint64_t indirect_for(uint64_t n, uint64_t apb) {
  if (n <= 12) return 0;
  if (n <= 12 + apb) return 1;
  uint64_t dn = n - 12 - apb;
  return 1 + 1 + (dn + apb - 1) / apb;
}

}  // namespace

TEST_CASE("extent: one request allocates contiguous runs across direct, indirect and double-indirect",
          "[ext2][extent]") {
  image_config c = GENERATE(image_config{1024, 128, true, true}, image_config{4096, 256, true, true},
                            image_config{1024, 256, false, false});
  INFO(c.label());
  const uint64_t bs = c.block_size, apb = bs / 4;
  // Past the start of the double-indirect range by a few indirect blocks' worth.
  const uint64_t nblocks = 12 + apb + 3 * apb + 7;
  const std::string data = pattern(nblocks * bs - 100, 11);  // the last block partial
  image im(c, c.block_size == 1024 ? 16384 : 65536);
  std::vector<int64_t> answered;
  {
    mounted m(im.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(im.img, "/f"));
    // One VNOP_WRITE; write.cpp allocates it in rounds of 1 MiB that each cross boundaries on 1 KiB blocks.
    size_t w = 0;
    REQUIRE(vwrite(vp, 0, data, IO_UNIT, kctx(), &w) == 0);
    REQUIRE(w == data.size());
    answered = blockmap_of(vp, c.block_size, nblocks + 5);  // from the extent cache the writes filled
    std::string got;
    REQUIRE(vread(vp, 0, data.size(), &got) == 0);
    CHECK((got == data));
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  check_fsck(im.img);
  disk_map dm = read_disk_map(im.img, "/f");
  CHECK(dm.data.size() == nblocks);
  CHECK(dm.indirect == indirect_for(nblocks, apb));
  CHECK(stat_field(im.img, "/f", "Blockcount") * 512 / bs == nblocks + dm.indirect);
  check_same_map(answered, dm);
  // On an empty image the data lies in ascending runs broken only by the indirect blocks between them
  // (and by group metadata): never block by block.
  uint64_t prev = 0;
  for (const auto& [l, p] : dm.data) {
    INFO("logical block " << l);
    CHECK(p > prev);
    prev = p;
  }
  const uint64_t groups_spanned = (dm.data.rbegin()->second - dm.data.begin()->second) / (8 * bs) + 1;
  CHECK(data_extents(dm) <= dm.indirect + groups_spanned + 1);
  CHECK((debugfs_cat(im.img, "/f") == data));
}

TEST_CASE("extent: holes filled by range inside mapped indirect blocks, and a request across the "
          "triple-indirect boundary", "[ext2][extent]") {
  image_config c = GENERATE(image_config{1024, 128, true, true}, image_config{4096, 256, true, true});
  INFO(c.label());
  const uint64_t bs = c.block_size, apb = bs / 4;
  uint32_t seed = test_seed();
  INFO("VNOPFS_SEED=" << seed);
  std::mt19937 rng(seed);
  image im(c, 32768);
  std::string model;
  auto put = [&](uint64_t off, const std::string& d) {
    if (model.size() < off + d.size()) model.resize(off + d.size(), '\0');
    model.replace(off, d.size(), d);
  };
  const uint64_t tind = 12 + apb + apb * apb;  // first triple-indirect block
  std::vector<int64_t> answered;
  uint64_t nblocks = 0;
  {
    mounted m(im.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(im.img, "/f"));
    // Sparse pieces first, then writes that fill the holes between them (runs inside mapped indirect
    // blocks next to mapped blocks), with and without IO_UNIT.
    const uint64_t span = 12 + apb + 2 * apb;
    for (int i = 0; i < 12; i++) {
      uint64_t off = (rng() % span) * bs + rng() % bs;
      std::string d = pattern(1 + rng() % (3 * bs), rng());
      REQUIRE(vwrite(vp, static_cast<off_t>(off), d, i % 2 ? IO_UNIT : 0) == 0);
      put(off, d);
    }
    for (uint64_t off = 0; off < span * bs; off += 200 * bs + 7) {
      std::string d = pattern(std::min<uint64_t>(130 * bs, span * bs - off), rng());
      REQUIRE(vwrite(vp, static_cast<off_t>(off), d, off % 2 ? IO_UNIT : 0) == 0);
      put(off, d);
    }
    // On 1 KiB blocks, a request across the double -> triple-indirect boundary at 64 MiB (sparse: only it
    // is allocated out there; on 4 KiB blocks the boundary lies at 4 GiB, too far for the model).
    if (bs == 1024) {
      std::string d = pattern(40 * bs + 5, 99);
      const uint64_t off = (tind - 17) * bs + 3;
      REQUIRE(vwrite(vp, static_cast<off_t>(off), d, IO_UNIT) == 0);
      put(off, d);
      std::string got;
      REQUIRE(vread(vp, static_cast<off_t>(off - 100), d.size() + 100, &got) == 0);
      CHECK((got == model.substr(off - 100)));
    }
    nblocks = (model.size() + bs - 1) / bs;
    answered = blockmap_of(vp, c.block_size, nblocks);
    std::string got;
    REQUIRE(vread(vp, 0, model.size(), &got) == 0);
    CHECK((got == model));
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  check_fsck(im.img);
  disk_map dm = read_disk_map(im.img, "/f");
  check_same_map(answered, dm);
  CHECK(stat_field(im.img, "/f", "Blockcount") * 512 / bs == dm.data.size() + dm.indirect);
  CHECK((debugfs_cat(im.img, "/f") == model));
}

TEST_CASE("extent: ENOSPC in the middle of a range", "[ext2][extent][enospc]") {
  image_config c = GENERATE(image_config{1024, 128, true, true}, image_config{4096, 256, true, true});
  INFO(c.label());
  const uint64_t bs = c.block_size;
  image im(c, 4096, "-m 0");
  const uint64_t free0 = dumpe2fs_field(im.img, "Free blocks");
  // /f gets 40 blocks first; the request then overwrites its last 20 and goes on past the free space.
  const std::string head = pattern(40 * bs, 1);
  const std::string big = pattern((20 + free0 + 50) * bs, 2);
  const uint64_t off = 20 * bs;
  std::string model;
  uint64_t free_mid = 0, free_end = 0;
  {
    mounted m(im.img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino_of(im.img, "/f"));
    REQUIRE(vwrite(vp, 0, head, IO_UNIT) == 0);
    model = head;
    REQUIRE(vfsync(vp) == 0);
    struct statvfs st;
    REQUIRE(VFS_STATFS(m.mp(), &st, vfs_context::kernel()) == 0);
    free_mid = st.f_bfree;
    const std::vector<int64_t> map_before = blockmap_of(vp, c.block_size, 60);

    // IO_UNIT: ENOSPC, and nothing changed: size, uio, free count, the map, the bytes.
    size_t w = 123;
    CHECK(vwrite(vp, static_cast<off_t>(off), big, IO_UNIT, kctx(), &w) == ENOSPC);
    CHECK(w == 0);
    CHECK(vsize(vp) == head.size());
    REQUIRE(VFS_STATFS(m.mp(), &st, vfs_context::kernel()) == 0);
    CHECK(st.f_bfree == free_mid);
    CHECK(blockmap_of(vp, c.block_size, 60) == map_before);
    std::string got;
    REQUIRE(vread(vp, 0, head.size() + 10, &got) == 0);
    CHECK((got == head));

    // Without IO_UNIT: a short write that ends where the space did.
    REQUIRE(vwrite(vp, static_cast<off_t>(off), big, 0, kctx(), &w) == 0);
    CHECK(w > 20 * bs);
    CHECK(w < big.size());
    CHECK((off + w) % bs == 0);
    model.resize(off);
    model += big.substr(0, w);
    CHECK(vsize(vp) == model.size());
    REQUIRE(VFS_STATFS(m.mp(), &st, vfs_context::kernel()) == 0);
    free_end = st.f_bfree;
    CHECK(free_end < 4);  // at most what the next block's missing indirect blocks would have needed
    REQUIRE(vread(vp, 0, model.size() + 10, &got) == 0);
    CHECK((got == model));
    vnode_put(vp);
    REQUIRE(m.unmount() == 0);
  }
  check_fsck(im.img);
  // The free count is exact: every block the file holds (data and indirect) and nothing else.
  const uint64_t file_blocks = stat_field(im.img, "/f", "Blockcount") * 512 / bs;
  CHECK(dumpe2fs_field(im.img, "Free blocks") == free_end);
  CHECK(file_blocks + free_end == free0);
  disk_map dm = read_disk_map(im.img, "/f");
  CHECK(dm.data.size() == model.size() / bs);
  CHECK((debugfs_cat(im.img, "/f") == model));
}

TEST_CASE("extent: the extent cache forgets what truncate and punch hole free, and learns what fallocate "
          "and writes map", "[ext2][extent]") {
  image_config c = GENERATE(image_config{1024, 128, true, true}, image_config{4096, 256, true, true});
  INFO(c.label());
  const uint64_t bs = c.block_size;
  image im(c, 8192, "-m 0");
  const uint64_t nb = 12 + bs / 4 + 40;  // into the indirect range
  const std::string a = pattern(nb * bs, 3);
  std::string fmodel, gmodel;
  std::vector<int64_t> fmap, gmap;
  {
    mounted m(im.img);
    REQUIRE(m.mount_error() == 0);
    vnode* f = m.vget(ino_of(im.img, "/f"));
    vnode* g = m.vget(ino_of(im.img, "/g"));
    REQUIRE(vwrite(f, 0, a, IO_UNIT) == 0);
    fmodel = a;
    std::vector<int64_t> before = blockmap_of(f, c.block_size, nb);  // cached: every block mapped
    for (int64_t p : before) REQUIRE(p > 0);

    // Truncate down, then up again: the freed blocks are holes to VNOP_BLOCKMAP and read as zeros, even
    // once another file has taken them.
    REQUIRE(vtruncate(f, static_cast<off_t>(20 * bs + 1)) == 0);
    fmodel.resize(20 * bs + 1);
    REQUIRE(vtruncate(f, static_cast<off_t>(nb * bs)) == 0);
    fmodel.resize(nb * bs, '\0');
    std::vector<int64_t> after = blockmap_of(f, c.block_size, nb);
    for (uint64_t l = 0; l < nb; l++) {
      INFO("logical block " << l);
      CHECK(after[l] == (l <= 20 ? before[l] : -1));
    }
    gmodel = pattern((nb - 10) * bs, 4);
    REQUIRE(vwrite(g, 0, gmodel, IO_UNIT) == 0);  // reuses the freed blocks
    REQUIRE(vfsync(g) == 0);
    std::string got;
    REQUIRE(vread(f, 0, nb * bs, &got) == 0);
    CHECK((got == fmodel));

    // Punch a hole across the direct/indirect boundary: the same.
    REQUIRE(vwrite(f, static_cast<off_t>(20 * bs), pattern(30 * bs, 5), IO_UNIT) == 0);
    fmodel.replace(20 * bs, 30 * bs, pattern(30 * bs, 5));
    REQUIRE(vtruncate(g, 0) == 0);
    const std::vector<int64_t> mapped = blockmap_of(f, c.block_size, nb);
    REQUIRE(vallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(5 * bs + 10),
                      static_cast<off_t>(40 * bs)) == 0);
    fmodel.replace(5 * bs + 10, 40 * bs, std::string(40 * bs, '\0'));
    after = blockmap_of(f, c.block_size, nb);
    for (uint64_t l = 0; l < nb; l++) {
      INFO("logical block " << l);
      CHECK(after[l] == (l >= 6 && l < 45 ? -1 : mapped[l]));
    }
    REQUIRE(vwrite(g, 0, gmodel, IO_UNIT) == 0);
    REQUIRE(vfsync(g) == 0);
    REQUIRE(vread(f, 0, nb * bs, &got) == 0);
    CHECK((got == fmodel));

    // fallocate over holes the cache knows as holes: mapped afterwards, zeros, and writes land in them.
    REQUIRE(vallocate(f, 0, static_cast<off_t>(8 * bs), static_cast<off_t>(30 * bs)) == 0);
    after = blockmap_of(f, c.block_size, nb);
    for (uint64_t l = 8; l < 38; l++) {
      INFO("logical block " << l);
      CHECK(after[l] > 0);
    }
    REQUIRE(vwrite(f, static_cast<off_t>(9 * bs + 3), pattern(10 * bs, 6), IO_UNIT) == 0);
    fmodel.replace(9 * bs + 3, 10 * bs, pattern(10 * bs, 6));
    REQUIRE(vfsync(f) == 0);
    REQUIRE(vread(f, 0, nb * bs, &got) == 0);
    CHECK((got == fmodel));
    fmap = blockmap_of(f, c.block_size, nb);
    gmap = blockmap_of(g, c.block_size, nb - 10);
    vnode_put(f);
    vnode_put(g);
    REQUIRE(m.unmount() == 0);
  }
  check_fsck(im.img);
  check_same_map(fmap, read_disk_map(im.img, "/f"));
  check_same_map(gmap, read_disk_map(im.img, "/g"));
  CHECK((debugfs_cat(im.img, "/f") == fmodel));
  CHECK((debugfs_cat(im.img, "/g") == gmodel));
}

// FALLOC_FL_ZERO_RANGE (xfstests generic/008, 009 and others): the range reads as zeros, partial blocks
// keep their other bytes, every block of the range is mapped afterwards (later writes allocate nothing),
// KEEP_SIZE keeps the size and without it the file grows to the range's end.
TEST_CASE("extent: FALLOC_FL_ZERO_RANGE zeros, maps and sizes like Linux", "[ext2][extent][zero_range]") {
  image_config c = GENERATE(image_config{1024, 128, true, true}, image_config{4096, 256, true, true});
  INFO(c.label());
  const uint64_t bs = c.block_size;
  image im(c, 8192, "-m 0");
  const uint64_t nb = 12 + bs / 4 + 20;  // into the indirect range
  std::string fmodel = pattern(nb * bs, 7);
  std::vector<int64_t> fmap;
  {
    mounted m(im.img);
    REQUIRE(m.mount_error() == 0);
    vnode* f = m.vget(ino_of(im.img, "/f"));
    REQUIRE(vwrite(f, 0, fmodel, IO_UNIT) == 0);
    // A hole in the middle of what will be zeroed: it must be mapped afterwards too.
    REQUIRE(vallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(15 * bs),
                      static_cast<off_t>(3 * bs)) == 0);
    fmodel.replace(15 * bs, 3 * bs, std::string(3 * bs, '\0'));
    REQUIRE(blockmap_of(f, c.block_size, nb)[16] == -1);

    // Inside EOF, from the middle of block 5 across the indirect boundary to the middle of block 20.
    const uint64_t zoff = 5 * bs + 100, zlen = 15 * bs + 7;
    REQUIRE(vallocate(f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(zoff),
                      static_cast<off_t>(zlen)) == 0);
    fmodel.replace(zoff, zlen, std::string(zlen, '\0'));
    std::string got;
    REQUIRE(vread(f, 0, nb * bs, &got) == 0);
    CHECK((got == fmodel));
    std::vector<int64_t> map = blockmap_of(f, c.block_size, nb);
    for (uint64_t l = 0; l < nb; l++) {
      INFO("logical block " << l);
      CHECK(map[l] > 0);
    }
    CHECK(vsize(f) == nb * bs);

    // KEEP_SIZE past EOF: nothing past EOF is kept (block-mapped ext2), the size stays.
    REQUIRE(vallocate(f, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>((nb - 1) * bs + 10),
                      static_cast<off_t>(4 * bs)) == 0);
    fmodel.replace((nb - 1) * bs + 10, bs - 10, std::string(bs - 10, '\0'));
    CHECK(vsize(f) == nb * bs);

    // Without KEEP_SIZE: the file grows to the end of the range, mapped and zeros.
    REQUIRE(vallocate(f, FALLOC_FL_ZERO_RANGE, static_cast<off_t>(nb * bs - 5), static_cast<off_t>(2 * bs)) == 0);
    fmodel.replace(nb * bs - 5, 5, std::string(5, '\0'));
    fmodel.resize(nb * bs - 5 + 2 * bs, '\0');
    CHECK(vsize(f) == fmodel.size());
    const uint64_t nb2 = (fmodel.size() + bs - 1) / bs;
    map = blockmap_of(f, c.block_size, nb2);
    for (uint64_t l = nb - 1; l < nb2; l++) {
      INFO("logical block " << l);
      CHECK(map[l] > 0);
    }
    REQUIRE(vread(f, 0, fmodel.size(), &got) == 0);
    CHECK((got == fmodel));
    REQUIRE(vfsync(f) == 0);
    fmap = blockmap_of(f, c.block_size, nb2);
    vnode_put(f);
    REQUIRE(m.unmount() == 0);
  }
  check_fsck(im.img);
  check_same_map(fmap, read_disk_map(im.img, "/f"));
  CHECK((debugfs_cat(im.img, "/f") == fmodel));
}

// generic/103: statfs's f_bavail is a promise that one file can take that many bytes. ext2 maps a file's
// blocks through indirect blocks the free count does not show, so f_bavail leaves room for them: a
// fallocate of exactly f_bavail blocks into an empty file succeeds, for a caller without the root reserve.
TEST_CASE("statfs: a fallocate of f_bavail blocks fits, indirect blocks included", "[ext2][statfs]") {
  image_config c = GENERATE(from_range(all_configs()));
  const std::string reserve = GENERATE(std::string("-m 0"), std::string("-m 5"));
  INFO(c.label() << " " << reserve);
  image im(c, 8192, reserve);
  {
    mounted m(im.img);
    REQUIRE(m.mount_error() == 0);
    vnode* f = m.vget(ino_of(im.img, "/f"));
    struct statvfs st;
    REQUIRE(VFS_STATFS(m.mp(), &st, vfs_context::kernel()) == 0);
    const uint64_t avail = st.f_bavail;
    REQUIRE(avail > 1000);
    CHECK(avail < st.f_bfree);
    vfs_context user = user_ctx(1000, 1000);
    CHECK(vallocate(f, 0, 0, static_cast<off_t>(avail * c.block_size), &user) == 0);
    REQUIRE(VFS_STATFS(m.mp(), &st, vfs_context::kernel()) == 0);
    CHECK(st.f_bavail < avail / 50);  // the bound is close: little is left over
    vnode_put(f);
    REQUIRE(m.unmount() == 0);
  }
  check_fsck(im.img);
}

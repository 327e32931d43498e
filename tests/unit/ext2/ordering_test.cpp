// ordering_test.cpp: the filesystem's half of the write ordering (docs/durability.md, rules 6 and 7).
// Deferred frees: a block or inode whose last pointer or name was removed goes back to its bitmap only
// after a device flush, so no power loss can show it reachable from its old owner after its new owner
// wrote it. Ordered fsync: a device flush separates new data from the pointers, sizes and names written
// after it. Flushes are counted at the device (device_stats::flushes).
#include <sys/statvfs.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "ext2/support/path_fs.h"
#include "vnopfs/buf.h"
#include "vnops/ext2/ext2.h"

using namespace ext2test;
using namespace vnopfs;

namespace {

std::set<uint32_t> blocks_of(path_fs& fs, const std::string& path, uint64_t nblocks) {
  vnode* vp = nullptr;
  REQUIRE(fs.lookup(path, &vp) == 0);
  std::set<uint32_t> out;
  for (uint64_t lbn = 0; lbn < nblocks; lbn++) {
    uint32_t pbn = 0;
    REQUIRE(ext2::ext2_bmap(ext2::VTOI(vp), lbn, 0, &pbn, nullptr) == 0);
    if (pbn) out.insert(pbn);
  }
  vnode_put(vp);
  return out;
}

uint64_t flushes(path_fs& fs) { return fs.mp()->mnt_device->stats().flushes; }

uint64_t bfree(path_fs& fs) {
  struct statvfs st;
  REQUIRE(VFS_STATFS(fs.mp(), &st, vfs_context::kernel()) == 0);
  return st.f_bfree;
}

}  // namespace

TEST_CASE("deferred frees: a block a truncate freed is not reused before a device flush", "[ext2][deferred]") {
  path_fs fs("-b 4096", "16M");
  REQUIRE(fs.create("a") == 0);
  REQUIRE(fs.write("a", 0, pattern(16 * 4096, 1)) == 0);
  REQUIRE(VFS_SYNC(fs.mp(), MNT_WAIT, vfs_context::kernel()) == 0);
  const std::set<uint32_t> old = blocks_of(fs, "a", 16);
  REQUIRE(old.size() == 16);
  const uint64_t free0 = bfree(fs);

  REQUIRE(fs.truncate("a", 0) == 0);  // clears and writes the pointers; the blocks wait for a flush
  auto* m = ext2::ext2_mount_of(fs.mp());
  CHECK(m->m_pending_nblocks.load() == 17);  // 16 data blocks and the indirect block
  CHECK(bfree(fs) == free0 + 17);            // statfs counts them as free already

  const uint64_t f0 = flushes(fs);
  REQUIRE(fs.create("b") == 0);
  REQUIRE(fs.write("b", 0, pattern(16 * 4096, 2)) == 0);
  const std::set<uint32_t> now = blocks_of(fs, "b", 16);
  REQUIRE(now.size() == 16);
  std::vector<uint32_t> both;
  std::set_intersection(old.begin(), old.end(), now.begin(), now.end(), std::back_inserter(both));
  INFO("b took " << both.size() << " of a's freed blocks before any device flush");
  CHECK(both.empty());

  REQUIRE(VFS_SYNC(fs.mp(), MNT_WAIT, vfs_context::kernel()) == 0);  // flushes, then gives them back
  CHECK(m->m_pending_nblocks.load() == 0);
  CHECK(flushes(fs) > f0);
  CHECK(bfree(fs) == free0);  // a's 17 back, b's 17 taken
  REQUIRE(fs.unmount() == 0);
  require_fsck_clean(fs.image());
  CHECK(debugfs_cat(fs.image(), "/b") == pattern(16 * 4096, 2));
}

TEST_CASE("deferred frees: an allocation that would fail with ENOSPC releases them", "[ext2][deferred]") {
  path_fs fs("-b 1024 -m 0", "4M");
  REQUIRE(fs.create("fill") == 0);
  const std::string chunk = pattern(64 * 1024, 3);
  off_t size = 0;
  while (fs.write("fill", size, chunk) == 0) size += static_cast<off_t>(chunk.size());
  REQUIRE(size > 1024 * 1024);
  REQUIRE(fs.truncate("fill", 0) == 0);
  auto* m = ext2::ext2_mount_of(fs.mp());
  CHECK(m->m_pending_nblocks.load() > 0);
  // Everything the file had is free again for the next writer, with no sync in between.
  REQUIRE(fs.create("again") == 0);
  for (off_t off = 0; off < size; off += static_cast<off_t>(chunk.size())) {
    INFO("offset " << off << " of " << size);
    REQUIRE(fs.write("again", off, chunk) == 0);
  }
  CHECK(m->m_pending_nblocks.load() == 0);
  REQUIRE(fs.unmount() == 0);
  require_fsck_clean(fs.image());
}

TEST_CASE("deferred frees: an unlinked inode's number waits for a device flush", "[ext2][deferred]") {
  path_fs fs("-b 1024", "8M");
  REQUIRE(fs.create("a") == 0);
  REQUIRE(fs.write("a", 0, pattern(5000, 4)) == 0);
  REQUIRE(VFS_SYNC(fs.mp(), MNT_WAIT, vfs_context::kernel()) == 0);
  vnode* vp = nullptr;
  REQUIRE(fs.lookup("a", &vp) == 0);
  const uint32_t a = ext2::VTOI(vp)->i_ino;
  vnode_put(vp);
  REQUIRE(fs.unlink("a") == 0);
  CHECK(ext2::ext2_pending_inodes(ext2::ext2_mount_of(fs.mp())) == 1);
  REQUIRE(fs.create("b") == 0);
  REQUIRE(fs.lookup("b", &vp) == 0);
  CHECK(ext2::VTOI(vp)->i_ino != a);
  vnode_put(vp);
  REQUIRE(VFS_SYNC(fs.mp(), MNT_WAIT, vfs_context::kernel()) == 0);
  CHECK(ext2::ext2_pending_inodes(ext2::ext2_mount_of(fs.mp())) == 0);
  REQUIRE(fs.unmount() == 0);
  require_fsck_clean(fs.image());
}

TEST_CASE("deferred frees: the syncer's lazy pass releases them, and the image ends clean", "[ext2][deferred]") {
  path_fs fs("-b 1024", "8M");
  REQUIRE(fs.create("a") == 0);
  REQUIRE(fs.write("a", 0, pattern(300 * 1024, 5)) == 0);  // indirect blocks too
  REQUIRE(VFS_SYNC(fs.mp(), MNT_WAIT, vfs_context::kernel()) == 0);
  REQUIRE(fs.unlink("a") == 0);
  auto* m = ext2::ext2_mount_of(fs.mp());
  CHECK(ext2::ext2_pending_frees(m));
  const uint64_t f0 = flushes(fs);
  REQUIRE(VFS_SYNC(fs.mp(), MNT_LAZY, vfs_context::kernel()) == 0);
  CHECK_FALSE(ext2::ext2_pending_frees(m));
  CHECK(flushes(fs) >= f0 + 1);
  // What the flusher does next: the bitmaps the release dirtied, then the rest.
  REQUIRE(buf_flushdirtyblks(fs.mp()->mnt_devvp, MNT_WAIT) == 0);
  REQUIRE(fs.unmount() == 0);
  require_fsck_clean(fs.image());
}

TEST_CASE("ordered fsync: a device flush between new data and the pointers to it", "[ext2][ordered]") {
  path_fs fs("-b 4096", "16M");
  REQUIRE(fs.create("f") == 0);
  REQUIRE(VFS_SYNC(fs.mp(), MNT_WAIT, vfs_context::kernel()) == 0);
  const int waitfor = GENERATE(int{MNT_WAIT}, int{MNT_DWAIT});
  INFO((waitfor == MNT_WAIT ? "fsync" : "fdatasync"));
  vnode* vp = nullptr;
  REQUIRE(fs.lookup("f", &vp) == 0);

  // The cache's flusher may add flushes of its own at any time: the least of a few tries counts.
  // Appending allocates: data, flush, then bitmap, inode (and its name), flush.
  uint64_t least = UINT64_MAX;
  for (int i = 0; i < 4; i++) {
    REQUIRE(vwrite(vp, static_cast<off_t>(i) * 3 * 4096, pattern(3 * 4096, 6 + i)) == 0);
    const uint64_t f0 = flushes(fs);
    REQUIRE(VNOP_FSYNC(vp, waitfor, kctx()) == 0);
    least = std::min(least, flushes(fs) - f0);
  }
  CHECK(least == 2);

  // An overwrite in place changes no pointer: one flush, at the end.
  least = UINT64_MAX;
  for (int i = 0; i < 4; i++) {
    REQUIRE(vwrite(vp, 4096, pattern(4096, 20 + i)) == 0);
    const uint64_t f0 = flushes(fs);
    REQUIRE(VNOP_FSYNC(vp, waitfor, kctx()) == 0);
    least = std::min(least, flushes(fs) - f0);
  }
  CHECK(least == 1);
  vnode_put(vp);
  REQUIRE(fs.unmount() == 0);
  require_fsck_clean(fs.image());
}

// The metadata blocks an inode notes for its next fsync (ext2_note_meta_dirty) are only cleared by that
// fsync. A file rewritten for long without one (fsx: truncates and punches free indirect blocks, new ones
// are allocated elsewhere) notes more and more distinct blocks; once they were more than the dedupe bound
// (4096), every note sorted the whole list: fsx -N 1000000 fell from ~5000 to under 800 operations a second
// in 10 minutes, 91% of the daemon in std::sort. Each block must stay noted exactly as before, and notes
// must cost amortised O(log n): 100,000 distinct blocks took a minute or more before, milliseconds now.
TEST_CASE("ordered fsync: noting many distinct metadata blocks stays cheap and loses none", "[ext2][ordered]") {
  ext2::ext2_inode_info ip;
  const uint32_t n = 100000;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint32_t b = 1; b <= n; b++) {
    ext2::ext2_note_meta_dirty(&ip, b);
    ext2::ext2_note_meta_dirty(&ip, b);  // caught by the look back at the last few
    if (b % 3 == 0) ext2::ext2_note_meta_dirty(&ip, b / 3);  // an older one again: only a dedupe sorts it out
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO("noted " << n << " distinct blocks in " << secs << " s; list size " << ip.i_meta_dirty.size());
  CHECK(secs < 10);  // a full sort per note took minutes; amortised, well under a second even under load
  std::vector<uint32_t> v = ip.i_meta_dirty;
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  REQUIRE(v.size() == n);  // every block noted, none invented
  CHECK(v.front() == 1);
  CHECK(v.back() == n);
  CHECK(ip.i_meta_dirty.size() <= 2 * size_t{n} + 1);  // duplicates stay bounded
}

// The directory name index (vnops/ext2/dirindex.h) against a model: seeded random create, lookup, unlink,
// rename (within and across big directories), mkdir and rmdir; readdir and a fresh mount (index rebuilt
// from disk) must agree with the model, e2fsck -fn clean at the end. The same with a budget so small that
// indexes are evicted and rebuilt all the time, one so small that every index is refused (the scan), and
// with threads looking up names while the pool evicts. Replay a failure with VNOPFS_SEED=<seed printed>.
#include <catch2/catch.hpp>

#include <dirent.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ext2/support/path_fs.h"
#include "vnops/ext2/dirindex.h"

using namespace vnopfs;
using namespace ext2test;
using vnopfs::ext2::dirindex_stats;
using vnopfs::ext2::ext2_dirindex_set_budget;
using vnopfs::ext2::ext2_dirindex_stats;

namespace {

uint64_t seed_from_env() {
  if (const char* s = std::getenv("VNOPFS_SEED")) return std::strtoull(s, nullptr, 0);
  return std::random_device{}();
}

// Restores the default budget however the test ends.
struct budget_guard {
  explicit budget_guard(size_t b) { ext2_dirindex_set_budget(b); }
  ~budget_guard() { ext2_dirindex_set_budget(ext2::kDirIndexDefaultBudget); }
};

// Names of varied lengths, so blocks fill unevenly and freed slots of every size get reused.
std::string random_name(std::mt19937_64& rng, size_t pool) {
  uint64_t k = rng() % pool;
  size_t len = 1 + (k * 7919) % 40;
  std::string s = "n" + std::to_string(k) + "_";
  while (s.size() < len + 8) s += char('a' + (k + s.size()) % 26);
  return s;
}

// References on the big directories for the length of a test, as the kernel's lookups hold them through
// FUSE: without one, every operation would reclaim the directory's vnode and its index with it.
struct held_dirs {
  std::vector<vnode*> vps;
  void hold(path_fs& fs, const std::string& d) {
    vnode* vp = nullptr;
    REQUIRE(fs.lookup(d, &vp) == 0);
    vps.push_back(vp);
  }
  void release() {
    for (vnode* vp : vps) vnode_put(vp);
    vps.clear();
  }
  ~held_dirs() { release(); }
};

// dir -> name -> is a directory.
using dir_model = std::map<std::string, std::map<std::string, bool>>;

void check_dir(path_fs& fs, const std::string& d, const std::map<std::string, bool>& want) {
  std::vector<dir_entry> got;
  REQUIRE(fs.readdir(d, &got) == 0);
  std::map<std::string, bool> have;
  for (const auto& e : got)
    if (e.name != "." && e.name != "..") have[e.name] = e.type == DT_DIR;
  CHECK(have == want);
  for (const auto& [name, isdir] : want) {
    vnode* vp = nullptr;
    INFO("lookup " << d << "/" << name);
    REQUIRE(fs.lookup(d + "/" + name, &vp) == 0);
    vnode_put(vp);
  }
}

// Runs `ops` random operations over `dirs` big directories (each pre-filled with `fill` entries).
void run_model(path_fs& fs, uint64_t seed, int ndirs, int fill, int ops, dir_model* mp) {
  std::mt19937_64 rng(seed);
  dir_model& model = *mp;
  std::vector<std::string> dirs;
  held_dirs held;
  for (int i = 0; i < ndirs; i++) {
    dirs.push_back("d" + std::to_string(i));
    REQUIRE(fs.mkdir(dirs.back()) == 0);
    held.hold(fs, dirs.back());
    model[dirs.back()];
  }
  const size_t pool = size_t(fill) * 3 / 2;
  for (const auto& d : dirs) {
    while (model[d].size() < size_t(fill)) {
      std::string n = random_name(rng, pool);
      int err = fs.create(d + "/" + n);
      REQUIRE(err == (model[d].count(n) ? EEXIST : 0));
      model[d][n] = false;
    }
  }
  for (int i = 0; i < ops; i++) {
    const std::string& d = dirs[rng() % dirs.size()];
    auto& md = model[d];
    std::string n = random_name(rng, pool);
    const std::string p = d + "/" + n;
    const bool exists = md.count(n) != 0;
    const int op = int(rng() % 100);
    INFO("seed " << seed << " op " << i << " kind " << op << " path " << p);
    if (op < 30) {  // lookup
      vnode* vp = nullptr;
      int err = fs.lookup(p, &vp);
      REQUIRE(err == (exists ? 0 : ENOENT));
      if (vp) vnode_put(vp);
    } else if (op < 55) {  // create
      REQUIRE(fs.create(p) == (exists ? EEXIST : 0));
      if (!exists) md[n] = false;
    } else if (op < 80) {  // unlink
      int want = !exists ? ENOENT : md[n] ? EISDIR : 0;
      REQUIRE(fs.unlink(p) == want);
      if (want == 0) md.erase(n);
    } else if (op < 90) {  // rename, maybe across directories, maybe over an existing name
      const std::string& d2 = dirs[rng() % dirs.size()];
      std::string n2 = random_name(rng, pool);
      const std::string q = d2 + "/" + n2;
      INFO("to " << q);
      auto& md2 = model[d2];
      int want = 0;
      if (!exists) want = ENOENT;
      else if (md2.count(n2) && md2[n2] != md[n]) want = md[n] ? ENOTDIR : EISDIR;
      REQUIRE(fs.rename(p, q) == want);
      if (want == 0 && !(d == d2 && n == n2)) {
        bool isdir = md[n];
        md.erase(n);
        md2[n2] = isdir;
      }
    } else if (op < 95) {  // mkdir
      REQUIRE(fs.mkdir(p) == (exists ? EEXIST : 0));
      if (!exists) md[n] = true;
    } else {  // rmdir
      int want = !exists ? ENOENT : md[n] ? 0 : ENOTDIR;
      REQUIRE(fs.rmdir(p) == want);
      if (want == 0) md.erase(n);
    }
  }
  for (const auto& d : dirs) check_dir(fs, d, model[d]);
  const dirindex_stats st = ext2_dirindex_stats();
  CHECK(st.bytes <= st.budget);
  if (st.budget > (1 << 20)) CHECK(st.indexes == size_t(ndirs));  // all built, none evicted
}

void check_after_remount(path_fs& fs, const dir_model& model) {
  REQUIRE(fs.remount() == 0);
  for (const auto& [d, md] : model) check_dir(fs, d, md);
  REQUIRE(fs.unmount() == 0);
  require_fsck_clean(fs.image());
}

}  // namespace

TEST_CASE("big directories with the name index match a model", "[dirindex]") {
  const uint64_t seed = seed_from_env();
  CAPTURE(seed);
  std::cerr << "dirindex model: VNOPFS_SEED=" << seed << "\n";
  budget_guard budget(ext2::kDirIndexDefaultBudget);
  path_fs fs(seed % 2 ? "-b 1024 -I 128 -O ^dir_index -N 16384" : "-b 4096 -I 256 -N 16384", "64M");
  const uint64_t builds0 = ext2_dirindex_stats().builds;
  dir_model model;
  run_model(fs, seed, 2, 3000, 12000, &model);
  CHECK(ext2_dirindex_stats().builds > builds0);  // the index was used (two directories of dozens of blocks)
  check_after_remount(fs, model);
}

TEST_CASE("the index is evicted and rebuilt under a small budget, and refused under a tiny one", "[dirindex]") {
  const uint64_t seed = seed_from_env();
  CAPTURE(seed);
  std::cerr << "dirindex budget: VNOPFS_SEED=" << seed << "\n";
  SECTION("room for about one index: evictions") {
    budget_guard budget(48 << 10);
    path_fs fs("-b 1024 -I 128 -N 16384", "64M");
    const dirindex_stats st0 = ext2_dirindex_stats();
    dir_model model;
    run_model(fs, seed, 3, 1500, 6000, &model);
    const dirindex_stats st = ext2_dirindex_stats();
    CHECK(st.evictions > st0.evictions);
    CHECK(st.builds > st0.builds + 3);
    CHECK(st.bytes <= st.budget);
    check_after_remount(fs, model);
  }
  SECTION("no index fits: every directory is scanned") {
    budget_guard budget(1024);
    path_fs fs("-b 1024 -I 128 -N 16384", "64M");
    const dirindex_stats st0 = ext2_dirindex_stats();
    dir_model model;
    run_model(fs, seed, 2, 800, 3000, &model);
    const dirindex_stats st = ext2_dirindex_stats();
    CHECK(st.refusals > st0.refusals);
    CHECK(st.builds == st0.builds);
    CHECK(st.bytes == 0);
    check_after_remount(fs, model);
  }
}

TEST_CASE("concurrent lookups in indexed directories while the pool evicts", "[dirindex]") {
  const uint64_t seed = seed_from_env();
  CAPTURE(seed);
  std::cerr << "dirindex threads: VNOPFS_SEED=" << seed << "\n";
  budget_guard budget(40 << 10);
  path_fs fs("-b 1024 -I 128 -N 16384", "64M");
  const int ndirs = 3, per_dir = 1200;
  held_dirs held;
  for (int d = 0; d < ndirs; d++) {
    REQUIRE(fs.mkdir("d" + std::to_string(d)) == 0);
    held.hold(fs, "d" + std::to_string(d));
    for (int i = 0; i < per_dir; i++) REQUIRE(fs.create("d" + std::to_string(d) + "/f" + std::to_string(i)) == 0);
  }
  const dirindex_stats st0 = ext2_dirindex_stats();
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed + t);
      for (int i = 0; i < 3000; i++) {
        int d = int(rng() % ndirs), k = int(rng() % (per_dir * 2));
        vnode* vp = nullptr;
        int err = fs.lookup("d" + std::to_string(d) + "/f" + std::to_string(k), &vp);
        if (err != (k < per_dir ? 0 : ENOENT)) wrong++;
        if (vp) vnode_put(vp);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(wrong == 0);
  CHECK(ext2_dirindex_stats().evictions > st0.evictions);
  held.release();
  REQUIRE(fs.unmount() == 0);
  require_fsck_clean(fs.image());
}

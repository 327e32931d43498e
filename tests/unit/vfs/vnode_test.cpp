#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "vnopfs/mount.h"
#include "vnopfs/vnops.h"

using namespace vnopfs;

namespace {
std::atomic<int> inactive_calls{0}, reclaim_calls{0};
int t_inactive(vnop_inactive_args*) { inactive_calls++; return 0; }
int t_reclaim(vnop_reclaim_args* ap) { reclaim_calls++; ap->a_vp->v_data = nullptr; return 0; }
vnop_table table;
}  // namespace

TEST_CASE("the last reference runs inactive then reclaim and leaves the hash", "[vnode]") {
  vnop_table_build(&table, "t", {t_inactive, t_reclaim});
  inactive_calls = reclaim_calls = 0;
  mount mp;
  vnode* vp;
  REQUIRE(vnode_create(&mp, {vtype::VREG, &table, nullptr, 12}, &vp) == 0);
  vnode* other = nullptr;
  REQUIRE(vfs_hash_insert(vp, &other) == 0);
  CHECK(other == nullptr);
  vnode_ref(vp);  // a long-term owner
  vnode_put(vp);  // the creation iocount
  CHECK(inactive_calls == 0);
  vnode* found;
  REQUIRE(vfs_hash_get(&mp, 12, &found) == 0);
  CHECK(found == vp);
  vnode_put(found);
  vnode_rele(vp);
  CHECK(inactive_calls == 1);
  CHECK(reclaim_calls == 1);
  CHECK(vfs_hash_get(&mp, 12, &found) == ENOENT);
  CHECK(mp.mnt_vnode_count == 0);
}

TEST_CASE("a second insert of the same id returns the first vnode", "[vnode]") {
  vnop_table_build(&table, "t", {t_inactive, t_reclaim});
  mount mp;
  vnode *a, *b, *other;
  REQUIRE(vnode_create(&mp, {vtype::VREG, &table, nullptr, 5}, &a) == 0);
  REQUIRE(vnode_create(&mp, {vtype::VREG, &table, nullptr, 5}, &b) == 0);
  REQUIRE(vfs_hash_insert(a, &other) == 0);
  REQUIRE(vfs_hash_insert(b, &other) == 0);
  CHECK(other == a);
  vnode_put(b);      // never hashed: terminates alone
  vnode_put(other);
  vnode_put(a);
  CHECK(mp.mnt_vnode_count == 0);
}

TEST_CASE("concurrent get/put on one vnode never terminates it early", "[vnode]") {
  vnop_table_build(&table, "t", {t_inactive, t_reclaim});
  inactive_calls = 0;
  mount mp;
  vnode* vp;
  REQUIRE(vnode_create(&mp, {vtype::VREG, &table, nullptr, 1}, &vp) == 0);
  vnode* other;
  REQUIRE(vfs_hash_insert(vp, &other) == 0);
  std::vector<std::thread> ts;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        vnode* f;
        if (vfs_hash_get(&mp, 1, &f) != 0) { failures++; continue; }  // Catch2 asserts are not thread-safe
        vnode_put(f);
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(failures == 0);
  CHECK(inactive_calls == 0);
  vnode_put(vp);
  CHECK(inactive_calls == 1);
}

TEST_CASE("vn_lock_pair takes two locks in address order", "[vnode]") {
  vnop_table_build(&table, "t", {t_inactive, t_reclaim});
  mount mp;
  vnode *a, *b;
  REQUIRE(vnode_create(&mp, {vtype::VDIR, &table, nullptr, 1}, &a) == 0);
  REQUIRE(vnode_create(&mp, {vtype::VREG, &table, nullptr, 2}, &b) == 0);
  std::vector<std::thread> ts;
  std::atomic<int> n{0};
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        if (t % 2) { vn_lock_pair(a, b); n++; vn_unlock_pair(a, b); }
        else { vn_lock_pair(b, a); n++; vn_unlock_pair(b, a); }
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(n == 8000);
  vn_lock_pair(a, a);  // duplicates: one lock
  CHECK(a->v_lock.held_exclusive());
  vn_unlock_pair(a, a);
  CHECK_FALSE(a->v_lock.held_exclusive());
  vnode_put(a);
  vnode_put(b);
}

namespace {
vnop_table table2;
}  // namespace

TEST_CASE("vfs_set_vnops moves every vnode on the old table, and late inserts follow", "[vnode][swap]") {
  vnop_table_build(&table, "t", {t_inactive, t_reclaim});
  vnop_table_build(&table2, "t2", {t_inactive, t_reclaim});
  mount mp;
  mp.mnt_vnops = &table;
  vnode *a, *b, *late, *other;
  REQUIRE(vnode_create(&mp, {vtype::VREG, vfs_vnops(&mp), nullptr, 1}, &a) == 0);
  REQUIRE(vnode_create(&mp, {vtype::VREG, vfs_vnops(&mp), nullptr, 2}, &b) == 0);
  REQUIRE(vnode_create(&mp, {vtype::VREG, vfs_vnops(&mp), nullptr, 3}, &late) == 0);  // made before, hashed after
  REQUIRE(vfs_hash_insert(a, &other) == 0);
  REQUIRE(vfs_hash_insert(b, &other) == 0);
  CHECK(vfs_set_vnops(&mp, &table2) == 2);
  CHECK(vfs_vnops(&mp) == &table2);
  CHECK(a->v_op == &table2);
  CHECK(b->v_op == &table2);
  REQUIRE(vfs_hash_insert(late, &other) == 0);
  CHECK(late->v_op == &table2);
  CHECK(vfs_set_vnops(&mp, &table2) == 0);  // no change
  CHECK(vfs_set_vnops(&mp, &table) == 3);   // and back: the first table is not "retired" for good
  CHECK(late->v_op == &table);
  for (vnode* vp : {a, b, late}) vnode_put(vp);
  CHECK(mp.mnt_vnode_count == 0);
}

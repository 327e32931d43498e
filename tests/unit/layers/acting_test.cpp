// The acting layers (faults, readonly, delay) over a recording table: each fires exactly where its rule
// says, passes everything else down unchanged, and refuses bad arguments with a message naming them.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "vnopfs/mount.h"
#include "vnopfs/vnops.h"
#include "vnops/layers/layer.h"

using namespace vnopfs;

namespace {

// The table below: counts the calls that reach it per op, and answers LOOKUP from a tiny name table.
std::vector<int> reached(VNOP_COUNT, 0);
vnode* g_child = nullptr;  // what LOOKUP("f") in the root returns
vnode* g_grandchild = nullptr;  // LOOKUP("g") in g_child

int count_op(void* ap) {
  reached[static_cast<size_t>((*static_cast<const vnodeop_desc* const*>(ap))->vdesc_offset)]++;
  return 0;
}
template <class A>
int counted(A* ap) { return count_op(ap); }
int rec_lookup(vnop_lookup_args* ap) {
  count_op(ap);
  vnode* vp = nullptr;
  if (ap->a_cnp->name() == "f" && (ap->a_dvp->v_flag & VROOT)) vp = g_child;
  if (ap->a_cnp->name() == "g" && ap->a_dvp == g_child) vp = g_grandchild;
  if (!vp) return ENOENT;
  vnode_get(vp);
  *ap->a_vpp = vp;
  return 0;
}

vnop_table rec;

void build_rec() {
  vnop_table_build(&rec, "rec", {counted<vnop_write_args>, counted<vnop_read_args>, counted<vnop_getattr_args>,
                                 counted<vnop_create_args>, counted<vnop_remove_args>, counted<vnop_setattr_args>,
                                 counted<vnop_open_args>, counted<vnop_access_args>, counted<vnop_fsync_args>,
                                 counted<vnop_setxattr_args>, counted<vnop_rename_args>, rec_lookup});
  reached.assign(VNOP_COUNT, 0);
}

struct tree {
  mount mp;
  vnode* root = nullptr;
  vnode* child = nullptr;
  vnode* grandchild = nullptr;
  explicit tree(const vnop_table* top) {
    REQUIRE(vnode_create(&mp, {vtype::VDIR, top, nullptr, 2, VROOT}, &root) == 0);
    REQUIRE(vnode_create(&mp, {vtype::VDIR, top, nullptr, 12}, &child) == 0);
    REQUIRE(vnode_create(&mp, {vtype::VREG, top, nullptr, 13}, &grandchild) == 0);
    g_child = child;
    g_grandchild = grandchild;
  }
  ~tree() {
    vnode_put(grandchild);
    vnode_put(child);
    vnode_put(root);
  }
};

int do_write(vnode* vp) {
  vfs_context ctx;
  char b[4] = {};
  vn_exclusive l(vp);
  uio u(b, sizeof b, 0, UIO_WRITE);
  return VNOP_WRITE(vp, &u, 0, &ctx);
}

int do_lookup(vnode* dvp, const char* name, vnode** vpp) {
  vfs_context ctx;
  componentname cn{name, std::strlen(name)};
  vn_shared l(dvp);
  return VNOP_LOOKUP(dvp, &cn, vpp, &ctx);
}

}  // namespace

TEST_CASE("faults: every Nth matching call on the chosen inode fails with the chosen errno", "[layers][faults]") {
  build_rec();
  layer_stack stack(&rec);
  std::string err;
  REQUIRE(stack.push_list("faults:op=write:errno=ENOSPC:ino=13:every=3", &err));
  tree t(stack.top());
  std::vector<int> got;
  for (int i = 0; i < 9; i++) got.push_back(do_write(t.grandchild));
  CHECK(got == std::vector<int>{0, 0, ENOSPC, 0, 0, ENOSPC, 0, 0, ENOSPC});
  CHECK(reached[VNOP_IDX_WRITE] == 6);  // a fired fault never reaches the table below
  // Another inode, another op: untouched.
  CHECK(do_write(t.child) == 0);
  vfs_context ctx;
  vnode_attr va;
  CHECK(VNOP_GETATTR(t.grandchild, &va, &ctx) == 0);
  CHECK(reached[VNOP_IDX_WRITE] == 7);
  CHECK(reached[VNOP_IDX_GETATTR] == 1);
}

TEST_CASE("faults: after, count, and a path learnt from lookups", "[layers][faults]") {
  build_rec();
  layer_stack stack(&rec);
  std::string err;
  REQUIRE(stack.push_list("faults:op=write/fsync:errno=EIO:path=/f/g:after=1:count=2", &err));
  tree t(stack.top());
  // Before its lookup the layer cannot know the path: the write passes.
  CHECK(do_write(t.grandchild) == 0);
  iocount_ref a, b;
  REQUIRE(do_lookup(t.root, "f", a.out()) == 0);
  REQUIRE(do_lookup(a.get(), "g", b.out()) == 0);
  REQUIRE(b.get() == t.grandchild);
  std::vector<int> got;
  for (int i = 0; i < 4; i++) got.push_back(do_write(t.grandchild));
  CHECK(got == std::vector<int>{0, EIO, EIO, 0});  // the first passes (after=1), then at most 2
  CHECK(do_write(t.child) == 0);  // "/f" is a prefix, not the path
}

TEST_CASE("faults: prob with a seed picks the same calls on every run", "[layers][faults]") {
  auto run = [](const char* spec) {
    build_rec();
    layer_stack stack(&rec);
    std::string err;
    REQUIRE(stack.push_list(spec, &err));
    tree t(stack.top());
    std::vector<int> got;
    for (int i = 0; i < 200; i++) got.push_back(do_write(t.grandchild));
    return got;
  };
  auto a = run("faults:op=write:prob=0.25:seed=42");
  auto b = run("faults:op=write:prob=0.25:seed=42");
  auto c = run("faults:op=write:prob=0.25:seed=43");
  CHECK(a == b);
  CHECK(a != c);
  long fails = std::count(a.begin(), a.end(), EIO);
  CHECK(fails > 20);   // about 50 expected; a broken draw gives 0 or 200
  CHECK(fails < 100);
}

TEST_CASE("faults and delay refuse bad arguments with a message naming them", "[layers][faults][delay]") {
  build_rec();
  layer_stack stack(&rec);
  std::string err;
  CHECK_FALSE(stack.push_list("faults:op=wrte", &err));
  CHECK(err.find("'wrte'") != std::string::npos);
  CHECK_FALSE(stack.push_list("faults:errno=EWHAT", &err));
  CHECK(err.find("EWHAT") != std::string::npos);
  CHECK_FALSE(stack.push_list("faults:op=reclaim", &err));
  CHECK(err.find("reclaim") != std::string::npos);
  CHECK_FALSE(stack.push_list("faults:colour=red", &err));
  CHECK(err.find("unknown argument 'colour'") != std::string::npos);
  CHECK_FALSE(stack.push_list("faults:every", &err));
  CHECK(err.find("KEY=VALUE") != std::string::npos);
  CHECK_FALSE(stack.push_list("delay:dist=normal", &err));
  CHECK(err.find("'normal'") != std::string::npos);
  CHECK_FALSE(stack.push_list("sync:x=1", &err));
  CHECK(err.find("takes no arguments") != std::string::npos);
  CHECK(stack.layers().empty());
}

TEST_CASE("readonly: every mutating op is EROFS and never reaches below; reads pass", "[layers][readonly]") {
  build_rec();
  layer_stack stack(&rec);
  std::string err;
  REQUIRE(stack.push_list("readonly", &err));
  tree t(stack.top());
  vfs_context ctx;
  CHECK(do_write(t.grandchild) == EROFS);
  vnode_attr va;
  va.va_active = VA_MODE;
  {
    vn_exclusive l(t.grandchild);
    CHECK(VNOP_SETATTR(t.grandchild, &va, &ctx) == EROFS);
    char v[1] = {'x'};
    uio u(v, 1, 0, UIO_WRITE);
    CHECK(VNOP_SETXATTR(t.grandchild, "user.a", &u, 0, &ctx) == EROFS);
  }
  {
    componentname cn{"n", 1};
    vnode* out = nullptr;
    vn_lock_pair(t.root, t.child);
    CHECK(VNOP_CREATE(t.root, &cn, &va, &out, &ctx) == EROFS);
    CHECK(out == nullptr);
    CHECK(VNOP_REMOVE(t.root, t.child, &cn, 0, &ctx) == EROFS);
    vn_unlock_pair(t.root, t.child);
  }
  CHECK(VNOP_RENAME(t.root, t.child, nullptr, t.root, nullptr, nullptr, 0u, &ctx) == EROFS);
  CHECK(VNOP_OPEN(t.grandchild, O_WRONLY, &ctx) == EROFS);
  CHECK(VNOP_OPEN(t.grandchild, O_RDONLY | O_TRUNC, &ctx) == EROFS);
  CHECK(VNOP_OPEN(t.grandchild, O_RDONLY, &ctx) == 0);
  CHECK(VNOP_ACCESS(t.grandchild, W_OK, &ctx) == EROFS);
  CHECK(VNOP_ACCESS(t.grandchild, R_OK, &ctx) == 0);
  CHECK(VNOP_GETATTR(t.grandchild, &va, &ctx) == 0);
  CHECK(VNOP_FSYNC(t.grandchild, MNT_WAIT, &ctx) == 0);
  for (int op : {VNOP_IDX_WRITE, VNOP_IDX_SETATTR, VNOP_IDX_SETXATTR, VNOP_IDX_CREATE, VNOP_IDX_REMOVE,
                 VNOP_IDX_RENAME})
    CHECK(reached[static_cast<size_t>(op)] == 0);
  CHECK(reached[VNOP_IDX_OPEN] == 1);
  CHECK(reached[VNOP_IDX_ACCESS] == 1);
  CHECK(reached[VNOP_IDX_GETATTR] == 1);
  CHECK(reached[VNOP_IDX_FSYNC] == 1);
}

TEST_CASE("delay: chosen ops take at least the fixed delay, others pass without it", "[layers][delay]") {
  build_rec();
  layer_stack stack(&rec);
  std::string err;
  REQUIRE(stack.push_list("delay:op=fsync:us=20000", &err));
  tree t(stack.top());
  vfs_context ctx;
  auto t0 = std::chrono::steady_clock::now();
  CHECK(VNOP_FSYNC(t.grandchild, MNT_WAIT, &ctx) == 0);
  auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(waited >= std::chrono::milliseconds(20));  // a lower bound only: sleeping is never shorter
  CHECK(reached[VNOP_IDX_FSYNC] == 1);
  CHECK(do_write(t.grandchild) == 0);
  CHECK(reached[VNOP_IDX_WRITE] == 1);
}

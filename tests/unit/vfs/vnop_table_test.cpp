#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "vnopfs/mount.h"
#include "vnopfs/vnops.h"

using namespace vnopfs;

namespace {
std::vector<std::string> calls;

int base_write(vnop_write_args* ap) {
  calls.push_back("base.write");
  ap->a_uio->update(ap->a_uio->resid());
  return 0;
}
int base_read(vnop_read_args*) { calls.push_back("base.read"); return 0; }
int base_getattr(vnop_getattr_args* ap) { ap->a_vap->va_size = 42; calls.push_back("base.getattr"); return 0; }

vnop_table base;
vnop_table layer;
vnop_table layer2;

int layer_write(vnop_write_args* ap) {
  calls.push_back("layer.write");
  return vnop_call_below(&layer, ap);
}

struct fixture {
  mount mp;
  vnode* vp = nullptr;
  fixture() {
    calls.clear();
    vnop_table_build(&base, "base", {base_write, base_read, base_getattr});
    vnop_layer_build(&layer, "layer", &base, {layer_write});
    vnop_layer_build(&layer2, "layer2", &layer, {});
    REQUIRE(vnode_create(&mp, {vtype::VREG, &base, nullptr, 7}, &vp) == 0);
  }
  ~fixture() { vnode_put(vp); }
};
}  // namespace

TEST_CASE_METHOD(fixture, "missing ops fall to their named defaults", "[vnop]") {
  vfs_context ctx;
  vnode* out = nullptr;
  componentname cn{"x", 1};
  {
    vn_shared l(vp);
    CHECK(VNOP_LOOKUP(vp, &cn, &out, &ctx) == ENOTSUP);  // err_lookup
  }
  CHECK(VNOP_FSYNC(vp, MNT_WAIT, &ctx) == 0);               // nop_fsync
  CHECK(VNOP_OPEN(vp, 0, &ctx) == 0);                       // nop_open
  CHECK(base.slots[VNOP_IDX_LOOKUP] == reinterpret_cast<vnop_fn>(&err_lookup));
  CHECK(base.slots[VNOP_IDX_CLOSE] == reinterpret_cast<vnop_fn>(&nop_close));
  CHECK(base.defined[VNOP_IDX_WRITE]);
  CHECK_FALSE(base.defined[VNOP_IDX_LOOKUP]);
}

TEST_CASE_METHOD(fixture, "a table's own ops are called", "[vnop]") {
  vfs_context ctx;
  char data[10];
  uio u(data, sizeof data, 0, UIO_WRITE);
  vn_shared l(vp);
  CHECK(VNOP_WRITE(vp, &u, 0, &ctx) == 0);
  CHECK(u.resid() == 0);
  CHECK(calls == std::vector<std::string>{"base.write"});
}

TEST_CASE_METHOD(fixture, "a layer overrides one op and bypasses every other to the table below", "[vnop]") {
  vfs_context ctx;
  vp->v_op = &layer2;  // two layers: layer2 (nothing) over layer (write) over base
  char data[10];
  {
    uio u(data, sizeof data, 0, UIO_WRITE);
    vn_shared l(vp);
    CHECK(VNOP_WRITE(vp, &u, 0, &ctx) == 0);
    uio r(data, sizeof data, 0, UIO_READ);
    CHECK(VNOP_READ(vp, &r, 0, &ctx) == 0);
  }
  vnode_attr va;
  CHECK(VNOP_GETATTR(vp, &va, &ctx) == 0);
  CHECK(va.va_size == 42);
  CHECK(calls == std::vector<std::string>{"layer.write", "base.write", "base.read", "base.getattr"});
  // Every slot of the bypassing layer reaches the base table's slot: defaults included.
  vnode* out = nullptr;
  componentname cn{"x", 1};
  {
    vn_shared l(vp);
    CHECK(VNOP_LOOKUP(vp, &cn, &out, &ctx) == ENOTSUP);
  }
  CHECK(VNOP_FSYNC(vp, MNT_WAIT, &ctx) == 0);
  for (int i = 0; i < VNOP_COUNT; ++i) {
    CHECK(layer2.slots[static_cast<size_t>(i)] == reinterpret_cast<vnop_fn>(&vnop_bypass));
  }
  vp->v_op = &base;
}

TEST_CASE("every descriptor has a name, a slot and a default", "[vnop]") {
  for (int i = 0; i < VNOP_COUNT; ++i) {
    const vnodeop_desc* d = vnop_descs[i];
    CHECK(d->vdesc_offset == i);
    CHECK(vnop_desc_by_name(d->vdesc_name) == d);
    CHECK(d->vdesc_default != nullptr);
  }
  CHECK(vnop_desc_by_name("write") == &vnop_write_desc);
  CHECK(vnop_strategy_desc.vdesc_buf_offset > 0);
  CHECK(vnop_strategy_desc.vdesc_vp_offsets[0] == VDESC_NO_OFFSET);
  CHECK(vnop_rename_desc.vdesc_vp_offsets[3] != VDESC_NO_OFFSET);
  CHECK(vnop_rename_desc.vdesc_vp_offsets[4] == VDESC_NO_OFFSET);
}

#if VNOPFS_LOCKCHECK
namespace {
std::vector<std::string> violations;
void record_violation(const vnodeop_desc& d, int i, lockstate, const char* when) {
  violations.push_back(std::string(d.vdesc_name) + ":" + std::to_string(i) + ":" + when);
}
}  // namespace

TEST_CASE_METHOD(fixture, "lock-state checks fire on a wrong state", "[vnop][lock]") {
  vnop_set_lock_violation_handler(&record_violation);
  violations.clear();
  vfs_context ctx;
  char data[4];
  uio u(data, sizeof data, 0, UIO_WRITE);
  CHECK(VNOP_WRITE(vp, &u, 0, &ctx) == 0);  // write needs L: not held
  CHECK(violations == std::vector<std::string>{"write:0:entry", "write:0:exit"});
  violations.clear();
  vnode_attr va;
  va.va_active = VA_MODE;
  {
    vn_shared l(vp);
    CHECK(VNOP_SETATTR(vp, &va, &ctx) == ENOTSUP);  // setattr needs E: shared is wrong
  }
  CHECK(violations.size() == 2);
  violations.clear();
  {
    vn_exclusive l(vp);
    CHECK(VNOP_SETATTR(vp, &va, &ctx) == ENOTSUP);
    CHECK(VNOP_FSYNC(vp, MNT_WAIT, &ctx) == 0);  // fsync needs U: held exclusive is wrong
  }
  CHECK(violations == std::vector<std::string>{"fsync:0:entry", "fsync:0:exit"});
  vnop_set_lock_violation_handler(nullptr);
}
#endif

#include <catch2/catch.hpp>

#include "vnopfs/mount.h"
#include "vnopfs/vnops.h"
#include "vnops/layers/stats.h"

using namespace vnopfs;

namespace {
int t_read(vnop_read_args* ap) { return ap->a_uio->resid() > 100 ? EFBIG : 0; }
int t_getattr(vnop_getattr_args* ap) { ap->a_vap->va_size = 7; return 0; }
vnop_table base;
}  // namespace

TEST_CASE("the stats layer counts calls, errors and latency per op and changes nothing", "[layers][stats]") {
  vnop_table_build(&base, "base", {t_read, t_getattr});
  stats_layer lower(&base);
  stats_layer upper(lower.table());  // two stacked: each counts what passes through it
  mount mp;
  vnode* vp;
  REQUIRE(vnode_create(&mp, {vtype::VREG, upper.table(), nullptr, 1}, &vp) == 0);
  vfs_context ctx;
  char small[10], big[200];
  {
    vn_shared l(vp);
    uio u1(small, sizeof small, 0, UIO_READ);
    CHECK(VNOP_READ(vp, &u1, 0, &ctx) == 0);
    uio u2(big, sizeof big, 0, UIO_READ);
    CHECK(VNOP_READ(vp, &u2, 0, &ctx) == EFBIG);
  }
  vnode_attr va;
  CHECK(VNOP_GETATTR(vp, &va, &ctx) == 0);
  CHECK(va.va_size == 7);
  CHECK(VNOP_FSYNC(vp, MNT_WAIT, &ctx) == 0);  // base default nop_fsync, still counted
  for (stats_layer* s : {&lower, &upper}) {
    CHECK(s->op(VNOP_IDX_READ).calls == 2);
    CHECK(s->op(VNOP_IDX_READ).errors == 1);
    CHECK(s->op(VNOP_IDX_GETATTR).calls == 1);
    CHECK(s->op(VNOP_IDX_FSYNC).calls == 1);
    CHECK(s->op(VNOP_IDX_WRITE).calls == 0);
  }
  auto j = upper.to_json();
  CHECK(j["ops"]["read"]["calls"] == 2);
  CHECK(j["ops"]["read"]["errors"] == 1);
  CHECK_FALSE(j["ops"].contains("write"));
  uint64_t in_hist = 0;
  for (auto& b : j["ops"]["read"]["latency_hist_us_log2"]) in_hist += b.get<uint64_t>();
  CHECK(in_hist == 2);
  CHECK(j["below"] == "stats");
  upper.reset();
  CHECK(upper.op(VNOP_IDX_READ).calls == 0);
  vnode_put(vp);
}

#include "vnops/layers/layer.h"

namespace {
int last_ioflag = -1;
int rec_write(vnop_write_args* ap) { last_ioflag = ap->a_ioflag; return 0; }
int rec_read(vnop_read_args* ap) { last_ioflag = ap->a_ioflag; return 0; }
vnop_table rec;
}  // namespace

TEST_CASE("layers by name stack in any order and change only what they override", "[layers]") {
  vnop_table_build(&rec, "rec", {rec_write, rec_read});
  layer_stack stack(&rec);
  std::string err;
  REQUIRE(stack.push_list("sync,stats,nocache", &err));
  CHECK(stack.layers().size() == 3);
  CHECK_FALSE(stack.push("bogus", &err));
  CHECK(err.find("unknown layer 'bogus'") != std::string::npos);
  mount mp;
  vnode* vp;
  REQUIRE(vnode_create(&mp, {vtype::VREG, stack.top(), nullptr, 1}, &vp) == 0);
  vfs_context ctx;
  char b[8];
  {
    vn_exclusive l(vp);
    uio w(b, sizeof b, 0, UIO_WRITE);
    CHECK(VNOP_WRITE(vp, &w, IO_UNIT, &ctx) == 0);
    CHECK(last_ioflag == (IO_UNIT | IO_SYNC | IO_NOCACHE));
    uio r(b, sizeof b, 0, UIO_READ);
    CHECK(VNOP_READ(vp, &r, 0, &ctx) == 0);
    CHECK(last_ioflag == IO_NOCACHE);  // sync changes writes only
  }
  auto* st = dynamic_cast<stats_layer*>(stack.find("stats"));
  REQUIRE(st != nullptr);
  CHECK(st->op(VNOP_IDX_WRITE).calls == 1);
  CHECK(st->op(VNOP_IDX_READ).calls == 1);
  vnode_put(vp);
}

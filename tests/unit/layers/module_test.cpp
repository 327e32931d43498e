// module_test.cpp: layer modules (vnops/layers/module.cpp) loaded from the shared objects meson builds from
// module_fixture.cpp: a good one stacks and its unnamed ops reach the table below; every way a module can
// be wrong is refused with a message naming the file and the fault.
#include <catch2/catch.hpp>

#include <string>

#include "vnopfs/mount.h"
#include "vnopfs/vnops.h"
#include "vnops/layers/layer.h"

using namespace vnopfs;

namespace {
int reads = 0;
int m_read(vnop_read_args*) { reads++; return 0; }
int m_getattr(vnop_getattr_args* ap) { ap->a_vap->va_size = 7; return 0; }
vnop_table base;

std::string fixture(const char* name) { return std::string(MODULE_FIXTURE_DIR) + "/lib" + name + ".so"; }

std::string refusal(const std::string& spec) {
  vnop_table_build(&base, "base", {m_read, m_getattr});
  layer_stack stack(&base);
  std::string err;
  CHECK_FALSE(stack.push(spec, &err));
  CHECK(stack.layers().empty());
  return err;
}
}  // namespace

TEST_CASE("a layer module loads, takes its arguments, and bypasses the ops it does not name", "[layers][module]") {
  vnop_table_build(&base, "base", {m_read, m_getattr});
  CHECK(is_layer_module_path("x.so"));
  CHECK(is_layer_module_path("./x"));
  CHECK_FALSE(is_layer_module_path("stats"));
  layer_stack stack(&base);
  std::string err;
  REQUIRE(stack.push_list("stats," + fixture("fixture_good") + ":add=1000," + fixture("fixture_good"), &err));
  REQUIRE(stack.layers().size() == 3);
  CHECK(std::string(stack.layers()[1]->name()) == "adder");
  CHECK(stack.find("adder") == stack.layers()[2].get());
  mount mp;
  vnode* vp;
  REQUIRE(vnode_create(&mp, {vtype::VREG, stack.top(), nullptr, 1}, &vp) == 0);
  vfs_context ctx;
  vnode_attr va;
  CHECK(VNOP_GETATTR(vp, &va, &ctx) == 0);
  CHECK(va.va_size == 7 + 1000 + 1);  // both instances, each with its own argument
  char b[8];
  reads = 0;
  {
    vn_shared l(vp);
    uio r(b, sizeof b, 0, UIO_READ);
    CHECK(VNOP_READ(vp, &r, 0, &ctx) == 0);
  }
  CHECK(reads == 1);                               // read: named by neither, reached the base table
  CHECK(VNOP_FSYNC(vp, MNT_WAIT, &ctx) == 0);      // the base's default, through two bypasses
  {
    vn_exclusive l(vp);
    CHECK(VNOP_MKDIR(vp, nullptr, nullptr, nullptr, &ctx) == ENOTSUP);  // the base's err_ default
  }
  vnode_put(vp);
}

TEST_CASE("a layer module's unknown argument is refused with its name", "[layers][module]") {
  std::string err = refusal(fixture("fixture_good") + ":colour=red");
  CHECK(err.find(fixture("fixture_good")) != std::string::npos);
  CHECK(err.find("unknown argument 'colour'") != std::string::npos);
}

TEST_CASE("a layer module built for another ABI version is refused naming both versions", "[layers][module]") {
  std::string err = refusal(fixture("fixture_badabi"));
  INFO(err);
  CHECK(err.find(fixture("fixture_badabi")) != std::string::npos);
  CHECK(err.find("version " + std::to_string(VNOPFS_LAYER_ABI_VERSION + 1)) != std::string::npos);
  CHECK(err.find("this vnopfs has " + std::to_string(VNOPFS_LAYER_ABI_VERSION)) != std::string::npos);
}

TEST_CASE("a missing file, entry point or symbol is named", "[layers][module]") {
  std::string err = refusal(fixture("fixture_noentry"));
  INFO(err);
  CHECK(err.find(fixture("fixture_noentry")) != std::string::npos);
  CHECK(err.find(VNOPFS_LAYER_ENTRY) != std::string::npos);
  err = refusal(fixture("fixture_undefined"));
  CHECK(err.find("vnopfs_no_such_function") != std::string::npos);
  err = refusal(fixture("no_such_module"));
  CHECK(err.find(fixture("no_such_module")) != std::string::npos);
  CHECK(err.find("No such file") != std::string::npos);
  err = refusal("./relative/no.so");
  CHECK(err.find("'./relative/no.so'") != std::string::npos);
}

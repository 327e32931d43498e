// dev_mem_test.cpp: the mem device's volatile write cache and power loss.
#include <catch2/catch.hpp>

#include "dev_fixture.h"

using namespace devtest;

static std::unique_ptr<mem_device> volatile_mem() {
  mem_options o;
  o.size = 1 << 20;
  o.volatile_cache = true;
  return make_mem_device(o);
}

TEST_CASE("mem: writes not flushed are lost at power loss, flushed and FUA ones survive", "[dev][mem]") {
  auto m = volatile_mem();
  REQUIRE(m);
  std::vector<char> a(4096, 'a'), b(4096, 'b'), c(4096, 'c'), r(4096);
  REQUIRE(dev_sync_io(*m, io_op::write, 0, a.data(), a.size()) == 0);
  REQUIRE(dev_sync_io(*m, io_op::flush, 0, nullptr, 0) == 0);
  REQUIRE(dev_sync_io(*m, io_op::write, 0, b.data(), b.size()) == 0);      // over durable a, not flushed
  REQUIRE(dev_sync_io(*m, io_op::write, 8192, b.data(), b.size()) == 0);   // over zeros, not flushed
  REQUIRE(dev_sync_io(*m, io_op::write, 16384, c.data(), 100, IO_ATTR_FUA) == 0);
  CHECK(m->dirty_sectors() == 16);
  REQUIRE(dev_sync_io(*m, io_op::read, 0, r.data(), r.size()) == 0);
  CHECK(r == b);  // reads see the latest write before the crash
  m->power_loss();
  CHECK(m->dirty_sectors() == 0);
  REQUIRE(dev_sync_io(*m, io_op::read, 0, r.data(), r.size()) == 0);
  CHECK(r == a);
  REQUIRE(dev_sync_io(*m, io_op::read, 8192, r.data(), r.size()) == 0);
  CHECK(r == std::vector<char>(4096, 0));
  REQUIRE(dev_sync_io(*m, io_op::read, 16384, r.data(), 100) == 0);
  CHECK(std::vector<char>(r.begin(), r.begin() + 100) == std::vector<char>(100, 'c'));
}

TEST_CASE("mem: an unflushed unmap is undone by power loss", "[dev][mem]") {
  auto m = volatile_mem();
  std::vector<char> a(4096, 'a'), r(4096);
  REQUIRE(dev_sync_io(*m, io_op::write, 4096, a.data(), a.size(), IO_ATTR_FUA) == 0);
  REQUIRE(dev_sync_io(*m, io_op::unmap, 4096, nullptr, 4096) == 0);
  REQUIRE(dev_sync_io(*m, io_op::read, 4096, r.data(), r.size()) == 0);
  CHECK(r == std::vector<char>(4096, 0));
  m->power_loss();
  REQUIRE(dev_sync_io(*m, io_op::read, 4096, r.data(), r.size()) == 0);
  CHECK(r == a);
}

TEST_CASE("mem: without volatile_cache every completed write is durable", "[dev][mem]") {
  mem_options o;
  o.size = 1 << 20;
  auto m = make_mem_device(o);
  std::vector<char> a(512, 'a'), r(512);
  REQUIRE(dev_sync_io(*m, io_op::write, 512, a.data(), a.size()) == 0);
  m->power_loss();
  m->peek(512, r.data(), r.size());
  CHECK(r == a);
  CHECK(m->name() == "mem");
}

TEST_CASE("mem: a size that is not a multiple of the sector size is refused", "[dev][mem]") {
  mem_options o;
  o.size = 1000;
  CHECK(make_mem_device(o) == nullptr);
}

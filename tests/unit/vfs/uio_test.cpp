#include <catch2/catch.hpp>

#include <cstring>
#include <numeric>
#include <vector>

#include "vnopfs/uio.h"

using namespace vnopfs;

TEST_CASE("uiomove copies across iovec boundaries and advances exactly", "[uio]") {
  char a[3], b[5], c[4];
  uio u(100, UIO_READ);
  u.addiov(a, sizeof a);
  u.addiov(b, sizeof b);
  u.addiov(c, sizeof c);
  REQUIRE(u.resid() == 12);
  const char src[] = "0123456789AB";
  REQUIRE(uiomove(const_cast<char*>(src), 4, &u) == 0);  // crosses a -> b
  CHECK(u.resid() == 8);
  CHECK(u.offset() == 104);
  CHECK(std::memcmp(a, "012", 3) == 0);
  CHECK(b[0] == '3');
  REQUIRE(uiomove(const_cast<char*>(src + 4), 100, &u) == 0);  // more than resid: moves only resid
  CHECK(u.resid() == 0);
  CHECK(u.offset() == 112);
  CHECK(std::memcmp(b + 1, "4567", 4) == 0);
  CHECK(std::memcmp(c, "89AB", 4) == 0);
}

TEST_CASE("uiomove in the write direction gathers from the uio", "[uio]") {
  char a[] = "hello", b[] = "world";
  uio u(0, UIO_WRITE);
  u.addiov(a, 5);
  u.addiov(b, 5);
  char out[10] = {};
  uiomove(out, 7, &u);
  CHECK(std::memcmp(out, "hellowo", 7) == 0);
  CHECK(u.resid() == 3);
  uiomove(out, 3, &u);
  CHECK(std::memcmp(out, "rld", 3) == 0);
}

TEST_CASE("partial moves, zero-length segments and zero-length moves", "[uio]") {
  std::vector<char> x(10), y(10);
  uio u(0, UIO_READ);
  u.addiov(nullptr, 0);
  u.addiov(x.data(), 10);
  u.addiov(nullptr, 0);
  u.addiov(y.data(), 10);
  std::vector<char> src(20);
  std::iota(src.begin(), src.end(), 1);
  uiomove(src.data(), 0, &u);
  CHECK(u.resid() == 20);
  for (int i = 0; i < 20; ++i) uiomove(&src[static_cast<size_t>(i)], 1, &u);  // one byte at a time
  CHECK(u.resid() == 0);
  for (int i = 0; i < 10; ++i) {
    CHECK(x[static_cast<size_t>(i)] == i + 1);
    CHECK(y[static_cast<size_t>(i)] == i + 11);
  }
}

TEST_CASE("setresid clips and save/restore rewinds (IO_UNIT)", "[uio]") {
  char a[8], b[8];
  uio u(0, UIO_READ);
  u.addiov(a, 8);
  u.addiov(b, 8);
  auto m = u.save();
  char src[16] = {};
  uiomove(src, 11, &u);
  CHECK(u.resid() == 5);
  u.restore(m);
  CHECK(u.resid() == 16);
  CHECK(u.offset() == 0);
  u.setresid(4);
  uiomove(src, 16, &u);
  CHECK(u.resid() == 0);
  CHECK(u.offset() == 4);
}

TEST_CASE("uiozero fills the uio with zeros", "[uio]") {
  std::vector<char> big(10000, 'x');
  uio u(0, UIO_READ);
  u.addiov(big.data(), big.size());
  uiozero(9999, &u);
  CHECK(u.resid() == 1);
  CHECK(std::all_of(big.begin(), big.end() - 1, [](char ch) { return ch == 0; }));
  CHECK(big.back() == 'x');
}

TEST_CASE("update skips without copying", "[uio]") {
  char a[4] = {'a', 'a', 'a', 'a'}, b[4] = {};
  uio u(10, UIO_READ);
  u.addiov(a, 4);
  u.addiov(b, 4);
  u.update(5);
  CHECK(u.offset() == 15);
  CHECK(u.iovcnt() == 1);
  char src[3] = {'x', 'y', 'z'};
  uiomove(src, 3, &u);
  CHECK(b[1] == 'x');
  CHECK(b[3] == 'z');
  CHECK(a[0] == 'a');
}

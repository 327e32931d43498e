// dev_record_test.cpp: the record layer (src/dev/record.h): what goes through it reaches the device below
// unchanged, and replaying its log over the starting contents rebuilds the device exactly, whole or up to
// any record.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <random>
#include <thread>

#include "dev_fixture.h"
#include "src/dev/record.h"

using namespace devtest;

namespace {

std::vector<char> contents(mem_device& m) {
  std::vector<char> v(m.size());
  m.peek(0, v.data(), v.size());
  return v;
}

void save(const std::string& path, const std::vector<char>& v) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(::pwrite(fd, v.data(), v.size(), 0) == ssize_t(v.size()));
  ::close(fd);
}

std::vector<char> load(const std::string& path, size_t n) {
  std::vector<char> v(n);
  int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  REQUIRE(::pread(fd, v.data(), n, 0) == ssize_t(n));
  ::close(fd);
  return v;
}

std::vector<char> replayed(const std::string& log_path, const std::vector<char>& base, uint64_t upto,
                           const std::vector<uint64_t>& drop = {}) {
  record_log log;
  REQUIRE(read_record_log(log_path, &log) == "");
  std::string img = temp_path("replay.img");
  save(img, base);
  REQUIRE(replay_record_log(log_path, log, img, upto, drop) == "");
  auto v = load(img, base.size());
  ::unlink(img.c_str());
  return v;
}

}  // namespace

TEST_CASE("record: replaying the log rebuilds the device, whole and at every record", "[dev][record]") {
  mem_options o;
  o.size = 1 << 20;
  auto m = make_mem_device(o);
  std::mt19937 rng(12345);
  std::vector<char> b(256 << 10);
  for (auto& c : b) c = char(rng());
  REQUIRE(dev_sync_io(*m, io_op::write, 0, b.data(), 256 << 10) == 0);  // some starting contents
  const auto base = contents(*m);
  std::string log_path = temp_path("record.log");
  int err = 0;
  auto r = make_record(m.get(), log_path, &err);
  REQUIRE(r);
  CHECK(r->size() == m->size());
  CHECK(r->name() == "record(mem)");

  // Serial phase: overlapping writes, flushes, unmaps, a FUA write; a snapshot after each.
  std::vector<std::vector<char>> snaps;
  std::vector<io_op> ops;
  for (int i = 0; i < 40; i++) {
    int kind = int(rng() % 10);
    uint64_t off = (rng() % ((1 << 20) / 512 - 130)) * 512, len = (1 + rng() % 128) * 512;
    if (kind == 0) {
      REQUIRE(dev_sync_io(*r, io_op::flush, 0, nullptr, 0) == 0);
      ops.push_back(io_op::flush);
    } else if (kind == 1) {
      REQUIRE(dev_sync_io(*r, io_op::unmap, off, nullptr, len) == 0);
      ops.push_back(io_op::unmap);
    } else {
      for (size_t k = 0; k < len; k++) b[k] = char(rng());
      REQUIRE(dev_sync_io(*r, io_op::write, off, b.data(), len, kind == 2 ? IO_ATTR_FUA : IO_ATTR_INLINE) == 0);
      ops.push_back(io_op::write);
    }
    snaps.push_back(contents(*m));
  }
  std::vector<char> rb(4096);
  REQUIRE(dev_sync_io(*r, io_op::read, 0, rb.data(), rb.size()) == 0);  // reads are not recorded
  // Concurrent phase: four threads on their own quarters.
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; t++) {
    ts.emplace_back([&, t] {
      std::vector<char> w(8192, char('A' + t));
      for (int i = 0; i < 50; i++)
        (void)dev_sync_io(*r, i % 10 == 9 ? io_op::flush : io_op::write, uint64_t(t) * (256 << 10) + (i % 30) * 8192,
                          w.data(), w.size(), 0);
    });
  }
  for (auto& t : ts) t.join();
  r.reset();  // waits for everything and closes the log

  record_log log;
  REQUIRE(read_record_log(log_path, &log) == "");
  CHECK(log.block_size == 512);
  CHECK(log.device_size == (1u << 20));
  REQUIRE(log.entries.size() == 40 + 200);
  for (size_t i = 0; i < 40; i++) {
    INFO("record " << i + 1);
    CHECK(log.entries[i].seq == i + 1);
    CHECK(log.entries[i].kind == (ops[i] == io_op::write ? record_kind::write
                                  : ops[i] == io_op::flush ? record_kind::flush : record_kind::unmap));
    if (ops[i] == io_op::flush) CHECK(log.entries[i].covered == i);  // everything before it
  }
  CHECK(replayed(log_path, base, 0) == contents(*m));
  for (uint64_t n : {1, 2, 5, 17, 39, 40}) {
    INFO("prefix " << n);
    CHECK(replayed(log_path, base, n) == snaps[n - 1]);
  }
  // Dropping the last write of the serial phase gives the contents before it.
  uint64_t last = 40;
  while (ops[last - 1] != io_op::write) last--;
  CHECK(replayed(log_path, base, last, {last}) == (last >= 2 ? snaps[last - 2] : base));
  // A torn tail (a recorder killed mid-record) is ignored.
  REQUIRE(::truncate(log_path.c_str(), 32 + 40 + 10) == 0);
  REQUIRE(read_record_log(log_path, &log) == "");
  CHECK(log.entries.size() <= 1);
}

TEST_CASE("record: a log that cannot be created refuses the layer", "[dev][record]") {
  auto m = make_mem_device(mem_options{});
  int err = 0;
  CHECK(make_record(m.get(), temp_dir() + "/no/such/dir/log", &err) == nullptr);
  CHECK(err == ENOENT);
  std::string junk = temp_path("junk.log");
  save(junk, std::vector<char>(100, 'x'));
  record_log log;
  CHECK(read_record_log(junk, &log) != "");
}

// dev_layers_test.cpp: partition bounds, fault rules, O_DIRECT alignment.
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include "dev_fixture.h"

using namespace devtest;

static std::unique_ptr<mem_device> plain_mem(uint64_t size = 4 << 20) {
  mem_options o;
  o.size = size;
  return make_mem_device(o);
}

TEST_CASE("partition: inside is shifted by start; straddling and outside give EIO", "[dev][partition]") {
  auto m = plain_mem();
  auto p = make_partition(m.get(), 1 << 20, 1 << 20);
  REQUIRE(p);
  CHECK(p->size() == (1u << 20));
  std::vector<char> a(4096, 'a'), r(8192);
  REQUIRE(dev_sync_io(*p, io_op::write, 4096, a.data(), a.size()) == 0);
  m->peek((1 << 20) + 4096, r.data(), 4096);
  CHECK(std::equal(a.begin(), a.end(), r.begin()));
  CHECK(dev_sync_io(*p, io_op::read, (1 << 20) - 4096, r.data(), 4096) == 0);   // last block
  CHECK(dev_sync_io(*p, io_op::read, (1 << 20) - 4096, r.data(), 8192) == EIO);  // straddles the end
  CHECK(dev_sync_io(*p, io_op::write, 1 << 20, a.data(), a.size()) == EIO);      // outside
  CHECK(dev_sync_io(*p, io_op::unmap, (1 << 20) - 512, nullptr, 1024) == EIO);
  CHECK(dev_sync_io(*p, io_op::flush, 0, nullptr, 0) == 0);
  CHECK(p->stats().errors == 3);
  CHECK(m->stats().errors == 0);  // refused requests never reached the device below
  CHECK(make_partition(m.get(), 3 << 20, 2 << 20) == nullptr);  // does not fit
  CHECK(make_partition(m.get(), 100, 4096) == nullptr);         // start not sector-aligned
}

// Submits `n` sync requests of op at offsets i*4096 through f; returns the errors in order.
static std::vector<int> run(device& d, io_op op, int n, uint64_t stride = 4096) {
  std::vector<int> errs;
  std::vector<char> b(4096, 'x');
  for (int i = 0; i < n; i++) errs.push_back(dev_sync_io(d, op, uint64_t(i) * stride, b.data(), b.size()));
  return errs;
}

TEST_CASE("faults: an op rule fails only that op, with its error", "[dev][faults]") {
  auto m = plain_mem();
  auto f = make_faults(m.get());
  fault_rule r;
  r.ops = op_bit(io_op::write);
  r.error = ENOSPC;
  int id = f->add_rule(r);
  CHECK(run(*f, io_op::write, 3) == std::vector<int>{ENOSPC, ENOSPC, ENOSPC});
  CHECK(run(*f, io_op::read, 3) == std::vector<int>{0, 0, 0});
  CHECK(f->fired(id) == 3);
  CHECK(f->counts().failed == 3);
  CHECK(f->counts().passed == 3);
  CHECK(m->stats().writes == 0);  // failed writes never went down
  CHECK(f->stats().errors == 3);
}

TEST_CASE("faults: a range rule fails only requests overlapping it", "[dev][faults]") {
  auto m = plain_mem();
  auto f = make_faults(m.get());
  fault_rule r;
  r.lo = 8192 + 100;
  r.hi = 12288 + 1;
  f->add_rule(r);
  CHECK(run(*f, io_op::write, 5) == std::vector<int>{0, 0, EIO, EIO, 0});
}

TEST_CASE("faults: every Nth matching request fails", "[dev][faults]") {
  auto m = plain_mem();
  auto f = make_faults(m.get());
  fault_rule r;
  r.every_nth = 3;
  r.ops = op_bit(io_op::read);
  f->add_rule(r);
  std::vector<int> errs = run(*f, io_op::read, 9);
  CHECK(errs == std::vector<int>{0, 0, EIO, 0, 0, EIO, 0, 0, EIO});
}

TEST_CASE("faults: seeded probability is reproducible and about right", "[dev][faults]") {
  auto m = plain_mem();
  auto pattern_for = [&](uint64_t seed) {
    auto f = make_faults(m.get());
    fault_rule r;
    r.probability = 0.25;
    r.seed = seed;
    f->add_rule(r);
    return run(*f, io_op::read, 400, 512);
  };
  std::vector<int> a = pattern_for(42), b = pattern_for(42), c = pattern_for(43);
  CHECK(a == b);
  CHECK(a != c);
  long failed = std::count(a.begin(), a.end(), EIO);
  CHECK(failed > 60);
  CHECK(failed < 140);
}

TEST_CASE("faults: delay holds a request, then it goes down unchanged", "[dev][faults]") {
  auto m = plain_mem();
  auto f = make_faults(m.get());
  fault_rule r;
  r.action = fault_action::delay;
  r.delay_ns = 60'000'000;
  r.limit = 1;
  f->add_rule(r);
  std::vector<char> a(4096, 'a'), rd(4096);
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(dev_sync_io(*f, io_op::write, 0, a.data(), a.size()) == 0);
  auto t1 = std::chrono::steady_clock::now();
  CHECK(t1 - t0 >= std::chrono::milliseconds(60));
  REQUIRE(dev_sync_io(*f, io_op::read, 0, rd.data(), rd.size()) == 0);  // limit reached: not delayed
  CHECK(std::chrono::steady_clock::now() - t1 < std::chrono::milliseconds(60));
  CHECK(rd == a);
  CHECK(f->counts().delayed == 1);
}

TEST_CASE("faults: tear writes a prefix and reports EIO with its length", "[dev][faults]") {
  auto m = plain_mem();
  auto f = make_faults(m.get());
  fault_rule r;
  r.action = fault_action::tear;
  r.tear_bytes = 1536;
  int id = f->add_rule(r);
  std::vector<char> a(4096, 'a'), rd(4096);
  size_t got = 99;
  CHECK(dev_sync_io(*f, io_op::write, 8192, a.data(), a.size(), 0, &got) == EIO);
  CHECK(got == 1536);
  m->peek(8192, rd.data(), rd.size());
  CHECK(std::count(rd.begin(), rd.end(), 'a') == 1536);
  CHECK(std::count(rd.begin() + 1536, rd.end(), 0) == 4096 - 1536);
  CHECK(f->counts().torn == 1);
  // default tear: half, rounded down to the sector size
  f->remove_rule(id);
  r.tear_bytes = 0;
  f->add_rule(r);
  CHECK(dev_sync_io(*f, io_op::write, 0, a.data(), 3000, 0, &got) == EIO);
  CHECK(got == 1024);
  CHECK(dev_sync_io(*f, io_op::read, 0, rd.data(), 512) == EIO);  // a tear rule fails what is not a write
  f->clear_rules();
  CHECK(dev_sync_io(*f, io_op::write, 0, a.data(), 3000) == 0);
}

TEST_CASE("faults: short transfers a prefix without an error; drop reports success and writes nothing", "[dev][faults]") {
  auto m = plain_mem();
  auto f = make_faults(m.get());
  fault_rule r;
  r.action = fault_action::shortw;
  r.tear_bytes = 1024;
  r.limit = 2;
  f->add_rule(r);
  std::vector<char> a(4096, 'a'), rd(4096, 'x');
  size_t got = 99;
  CHECK(dev_sync_io(*f, io_op::write, 0, a.data(), a.size(), 0, &got) == 0);
  CHECK(got == 1024);
  m->peek(0, rd.data(), rd.size());
  CHECK(std::count(rd.begin(), rd.end(), 'a') == 1024);
  CHECK(dev_sync_io(*f, io_op::read, 0, rd.data(), rd.size(), 0, &got) == 0);  // a short read
  CHECK(got == 1024);
  CHECK(f->counts().shortened == 2);
  f->clear_rules();
  r = {};
  r.action = fault_action::drop;
  f->add_rule(r);
  std::vector<char> b(4096, 'b');
  CHECK(dev_sync_io(*f, io_op::write, 8192, b.data(), b.size(), 0, &got) == 0);
  CHECK(got == 4096);
  CHECK(dev_sync_io(*f, io_op::flush, 0, nullptr, 0) == 0);
  m->peek(8192, rd.data(), rd.size());
  CHECK(std::count(rd.begin(), rd.end(), 0) == 4096);  // never reached the device
  CHECK(dev_sync_io(*f, io_op::read, 8192, rd.data(), rd.size()) == EIO);
  CHECK(f->counts().dropped == 2);
  CHECK(f->counts().failed == 1);
}

TEST_CASE("faults: a rule added while requests run applies to later ones", "[dev][faults]") {
  auto m = plain_mem();
  auto f = make_faults(m.get());
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ok{0}, eio{0}, other{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; t++)
    ts.emplace_back([&, t] {
      std::vector<char> b(512);
      while (!stop) {
        int e = dev_sync_io(*f, io_op::read, uint64_t(t) * 512, b.data(), b.size());
        (e == 0 ? ok : e == EIO ? eio : other)++;
      }
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  int id = f->add_rule(fault_rule{});
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  f->clear_rules();
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  stop = true;
  for (auto& t : ts) t.join();
  CHECK(ok > 0);
  CHECK(eio > 0);
  CHECK(other == 0);
  CHECK(f->fired(id) == 0);  // cleared
  CHECK(f->counts().failed == eio.load());
}

TEST_CASE("file+direct: misaligned offset, length or memory complete with EINVAL", "[dev][direct]") {
  for (const char* kind : {"file+direct", "uring+direct"}) {
    for (uint32_t attrs : {0u, uint32_t{IO_ATTR_INLINE}}) {
      auto d = make_dut(kind);
      if (!d->skip.empty()) {
        note_skip(std::string("misaligned O_DIRECT [") + kind + "]", d->skip);
        break;
      }
      INFO(kind << (attrs ? " inline" : " queued") << ": " << d->error);
      REQUIRE(d->dev);
      uint32_t s = d->dev->sector_size();
      REQUIRE(s >= 512);
      abuf b(4 * s);
      CHECK(sync_io(*d->dev, io_op::write, 0, b.data(), s, attrs) == 0);
      CHECK(sync_io(*d->dev, io_op::write, 512 % s ? 512 : 1, b.data(), s, attrs) == EINVAL);  // offset
      CHECK(sync_io(*d->dev, io_op::read, 0, b.data(), s + 512, attrs) == EINVAL);             // length
      CHECK(sync_io(*d->dev, io_op::read, 0, b.data() + 512, s, attrs) == EINVAL);             // memory
      CHECK(d->dev->stats().errors == 3);
    }
  }
}

TEST_CASE("file: a missing file without create_size is ENOENT; O_DIRECT refusal is an errno", "[dev][file]") {
  int err = 0;
  file_options o;
  CHECK(make_file_device(temp_dir() + "/absent", o, &err) == nullptr);
  CHECK(err == ENOENT);
  o.create_size = 1 << 20;
  auto d = make_file_device(temp_dir() + "/created", o, &err);
  REQUIRE(d);
  CHECK(d->size() == (1u << 20));
  CHECK(d->sector_size() == 512);
  uring_options u;
  CHECK(make_uring_device(temp_dir() + "/absent", u, &err) == nullptr);
  CHECK(err == ENOENT);
}

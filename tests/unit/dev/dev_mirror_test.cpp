// dev_mirror_test.cpp: the mirror layer (src/dev/mirror.h): writes reach every member with one completion,
// reads are balanced, a failing member leaves service without an error to the caller and its record falls
// behind before the write that lost it completes, every member failing gives EIO, and at the next open a
// stale member is refused (naming it and the counters) or resynced.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <random>
#include <thread>

#include "dev_fixture.h"
#include "src/dev/mirror.h"
#include "src/dev/stack.h"

using namespace devtest;

namespace {

constexpr uint64_t kSize = 4u << 20;

struct mset {
  std::vector<mem_device*> mem;
  std::vector<faults_device*> faults;
  std::vector<std::string> recs;
  std::unique_ptr<mirror_device> m;
  std::string msg;
};

// n mem members, each under a pass-through faults layer, records in a fresh directory.
mset make_mem_set(size_t n) {
  mset s;
  std::string dir = temp_path("mirror");
  REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
  std::vector<mirror_member_spec> v;
  std::vector<dev_layer_spec> specs;
  REQUIRE(parse_dev_layers("faults", &specs) == "");
  for (size_t i = 0; i < n; i++) {
    mem_options o;
    o.size = kSize;
    auto st = std::make_unique<dev_stack>(make_mem_device(o));
    s.mem.push_back(static_cast<mem_device*>(st->backend()));
    REQUIRE(st->push(specs) == "");
    s.faults.push_back(static_cast<faults_device*>(st->top()));
    mirror_member_spec sp;
    sp.stack = std::move(st);
    sp.label = "m" + std::to_string(i);
    sp.state_path = dir + "/m" + std::to_string(i) + ".mirror";
    s.recs.push_back(sp.state_path);
    v.push_back(std::move(sp));
  }
  s.m = make_mirror(std::move(v), {}, &s.msg);
  return s;
}

// Members that outlive the mirror: files, each with an optional faults layer (rule on writes).
struct fset {
  std::vector<std::string> paths;
};

std::unique_ptr<mirror_device> open_files(const fset& f, mirror_stale stale, std::string* msg,
                                          int fail_member = -1, uint64_t fail_every = 0) {
  std::vector<mirror_member_spec> v;
  for (size_t i = 0; i < f.paths.size(); i++) {
    file_options o;
    o.create_size = kSize;
    int err = 0;
    auto d = make_file_device(f.paths[i], o, &err);
    REQUIRE(d);
    auto st = std::make_unique<dev_stack>(std::move(d));
    if (int(i) == fail_member) {
      std::vector<dev_layer_spec> specs;
      REQUIRE(parse_dev_layers("faults:op=write:every=" + std::to_string(fail_every) + ":limit=1", &specs) == "");
      REQUIRE(st->push(specs) == "");
    }
    mirror_member_spec sp;
    sp.stack = std::move(st);
    sp.label = f.paths[i];
    sp.state_path = f.paths[i] + ".mirror";
    v.push_back(std::move(sp));
  }
  mirror_options o;
  o.stale = stale;
  return make_mirror(std::move(v), o, msg);
}

std::string file_bytes(const std::string& p) {
  std::string s(kSize, '\0');
  int fd = ::open(p.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  REQUIRE(::pread(fd, s.data(), s.size(), 0) == ssize_t(s.size()));
  ::close(fd);
  return s;
}

uint64_t events_of(const std::string& rec) {
  mirror_record r;
  REQUIRE(read_mirror_record(rec, &r) == 0);
  return r.events;
}

}  // namespace

TEST_CASE("mirror: a write reaches every member, with one completion", "[dev][mirror]") {
  mset s = make_mem_set(3);
  REQUIRE(s.m);
  CHECK(s.m->name() == "mirror(faults(mem), faults(mem), faults(mem))");
  CHECK(s.m->size() == kSize);
  abuf w(65536);
  pattern(w.data(), w.size(), 7);
  REQUIRE(dev_sync_io(*s.m, io_op::write, 1 << 20, w.data(), w.size()) == 0);
  for (mem_device* m : s.mem) {
    abuf got(65536);
    m->peek(1 << 20, got.data(), got.size());
    CHECK(memcmp(got.data(), w.data(), w.size()) == 0);
  }
  // Many at once, not inline: each completes exactly once, after all its children.
  constexpr size_t kN = 200;
  tracker t(kN);
  std::vector<treq> rq(kN);
  abuf data(kN * 4096);
  pattern(data.data(), data.size(), 9);
  for (size_t i = 0; i < kN; i++) {
    rq[i].op = io_op::write;
    rq[i].offset = i * 4096;
    rq[i].add_iov(data.data() + i * 4096, 4096);
    rq[i].done = &treq_done;
    rq[i].id = uint32_t(i);
    rq[i].t = &t;
    s.m->submit(&rq[i]);
  }
  REQUIRE(dev_sync_io(*s.m, io_op::flush, 0, nullptr, 0) == 0);
  while (t.completed.load() < kN) usleep(1000);
  for (size_t i = 0; i < kN; i++) CHECK(t.calls[i].load() == 1);
  CHECK(t.errors.load() == 0);
  CHECK(t.bytes.load() == kN * 4096);
  for (mem_device* m : s.mem) {
    abuf got(data.size());
    m->peek(0, got.data(), got.size());
    CHECK(memcmp(got.data(), data.data(), data.size()) == 0);
    CHECK(m->stats().writes >= kN + 1);
  }
  CHECK(s.m->stats().writes == kN + 1);
  CHECK(!s.m->degraded());
}

TEST_CASE("mirror: reads are balanced, a sequential stream stays on one member", "[dev][mirror]") {
  mset s = make_mem_set(2);
  REQUIRE(s.m);
  abuf data(kSize);
  pattern(data.data(), data.size(), 3);
  REQUIRE(dev_sync_io(*s.m, io_op::write, 0, data.data(), data.size()) == 0);
  abuf got(4096);
  for (int i = 0; i < 40; i++) {  // scattered: never where the last read of a member ended
    uint64_t off = uint64_t((i * 37) % 500) * 8192;
    REQUIRE(dev_sync_io(*s.m, io_op::read, off, got.data(), 4096) == 0);
    REQUIRE(memcmp(got.data(), data.data() + off, 4096) == 0);
  }
  auto st = s.m->status();
  CHECK(st[0].reads >= 15);
  CHECK(st[1].reads >= 15);
  CHECK(st[0].reads + st[1].reads == 40);
  uint64_t before0 = st[0].reads, before1 = st[1].reads;
  for (int i = 0; i < 32; i++) REQUIRE(dev_sync_io(*s.m, io_op::read, (3u << 20) + i * 4096u, got.data(), 4096) == 0);
  st = s.m->status();
  CHECK(((st[0].reads - before0 == 32 && st[1].reads == before1) || (st[1].reads - before1 == 32 && st[0].reads == before0)));
}

TEST_CASE("mirror: one member failing is degraded, with no error to the caller", "[dev][mirror]") {
  mset s = make_mem_set(2);
  REQUIRE(s.m);
  uint64_t ev = s.m->events();
  CHECK(events_of(s.recs[0]) == ev);
  CHECK(events_of(s.recs[1]) == ev);
  fault_rule r;
  r.ops = op_bit(io_op::write);
  r.every_nth = 3;
  r.limit = 1;
  s.faults[1]->add_rule(r);
  uint64_t writes_before = s.mem[1]->stats().writes;  // the copy made at open included
  abuf w(8192);
  for (int i = 0; i < 10; i++) {
    pattern(w.data(), w.size(), uint64_t(i));
    REQUIRE(dev_sync_io(*s.m, io_op::write, uint64_t(i) * 8192, w.data(), w.size()) == 0);
    if (i == 2) {
      // The write that lost member 1 has completed: the records already say so.
      CHECK(events_of(s.recs[0]) > events_of(s.recs[1]));
    }
  }
  CHECK(s.m->degraded());
  CHECK(s.m->in_service() == 1);
  auto st = s.m->status();
  CHECK(st[0].in_service);
  CHECK(!st[1].in_service);
  CHECK(st[1].error == EIO);
  CHECK(st[1].failed_op == io_op::write);
  CHECK(s.faults[1]->counts().failed == 1);
  CHECK(s.mem[1]->stats().writes == writes_before + 2);  // nothing more went to it
  REQUIRE(dev_sync_io(*s.m, io_op::flush, 0, nullptr, 0) == 0);
  for (int i = 0; i < 10; i++) {  // every read from the member in service, all correct
    abuf got(8192), want(8192);
    pattern(want.data(), want.size(), uint64_t(i));
    REQUIRE(dev_sync_io(*s.m, io_op::read, uint64_t(i) * 8192, got.data(), got.size()) == 0);
    CHECK(memcmp(got.data(), want.data(), 8192) == 0);
  }
  CHECK(s.m->status()[1].reads == 0);
}

TEST_CASE("mirror: a failed read is served by another member", "[dev][mirror]") {
  mset s = make_mem_set(2);
  REQUIRE(s.m);
  abuf w(4096);
  pattern(w.data(), w.size(), 5);
  REQUIRE(dev_sync_io(*s.m, io_op::write, 0, w.data(), w.size()) == 0);
  fault_rule r;
  r.ops = op_bit(io_op::read);
  s.faults[0]->add_rule(r);  // member 0 fails every read
  for (int i = 0; i < 4; i++) {
    abuf got(4096);
    REQUIRE(dev_sync_io(*s.m, io_op::read, 0, got.data(), got.size(), 0) == 0);
    CHECK(memcmp(got.data(), w.data(), 4096) == 0);
  }
  CHECK(s.m->in_service() == 1);
  CHECK(!s.m->status()[0].in_service);
}

TEST_CASE("mirror: every member failing gives EIO", "[dev][mirror]") {
  mset s = make_mem_set(2);
  REQUIRE(s.m);
  fault_rule r;
  r.ops = op_bit(io_op::write);
  s.faults[0]->add_rule(r);
  s.faults[1]->add_rule(r);
  abuf w(4096);
  CHECK(dev_sync_io(*s.m, io_op::write, 0, w.data(), w.size()) == EIO);
  CHECK(s.m->in_service() == 0);
  CHECK(dev_sync_io(*s.m, io_op::read, 0, w.data(), w.size()) == EIO);
  CHECK(dev_sync_io(*s.m, io_op::flush, 0, nullptr, 0) == EIO);
  CHECK(dev_sync_io(*s.m, io_op::write, 0, w.data(), w.size(), 0) == EIO);  // completes off the submit path too
  // A request error (EINVAL) takes no member out of service.
  mset t = make_mem_set(2);
  REQUIRE(t.m);
  r.error = EINVAL;
  t.faults[0]->add_rule(r);
  t.faults[1]->add_rule(r);
  CHECK(dev_sync_io(*t.m, io_op::write, 0, w.data(), w.size()) == EINVAL);
  CHECK(t.m->in_service() == 2);
}

TEST_CASE("mirror: a stale member is refused or resynced at the next open", "[dev][mirror]") {
  std::string dir = temp_path("mirror-files");
  REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
  fset f{{dir + "/a.img", dir + "/b.img"}};
  std::string msg;
  abuf w(1 << 20);
  {
    // b starts as something else: a new mirror copies a over it.
    int fd = ::open(f.paths[1].c_str(), O_WRONLY | O_CREAT, 0600);
    pattern(w.data(), w.size(), 99);
    REQUIRE(::pwrite(fd, w.data(), w.size(), 0) == ssize_t(w.size()));
    REQUIRE(::ftruncate(fd, kSize) == 0);
    ::close(fd);
  }
  {
    auto m = open_files(f, mirror_stale::refuse, &msg);
    CHECK(!m);
    CHECK(msg.find("mirror member '" + f.paths[1] + "' has no state record: a new mirror") != std::string::npos);
  }
  {
    auto m = open_files(f, mirror_stale::resync, &msg);
    REQUIRE(m);
    CHECK(m->status()[1].resynced);
    pattern(w.data(), w.size(), 1);
    REQUIRE(dev_sync_io(*m, io_op::write, 0, w.data(), w.size()) == 0);
  }
  CHECK(file_bytes(f.paths[0]) == file_bytes(f.paths[1]));
  uint64_t clean_ev = events_of(f.paths[0] + ".mirror");
  CHECK(events_of(f.paths[1] + ".mirror") == clean_ev);
  {
    auto m = open_files(f, mirror_stale::refuse, &msg, 1, 2);  // b fails its 2nd write
    REQUIRE(m);
    CHECK(!m->status()[1].resynced);
    for (int i = 0; i < 4; i++) {
      pattern(w.data(), w.size(), uint64_t(10 + i));
      REQUIRE(dev_sync_io(*m, io_op::write, uint64_t(i) << 20, w.data(), w.size()) == 0);
    }
    CHECK(m->degraded());
  }
  uint64_t a_ev = events_of(f.paths[0] + ".mirror"), b_ev = events_of(f.paths[1] + ".mirror");
  CHECK(a_ev > b_ev);
  CHECK(file_bytes(f.paths[0]) != file_bytes(f.paths[1]));
  {
    auto m = open_files(f, mirror_stale::refuse, &msg);
    CHECK(!m);
    CHECK(msg.find("mirror member '" + f.paths[1] + "' is stale: it missed writes (events " + std::to_string(b_ev) +
                   ") (current: events " + std::to_string(a_ev) + " on '" + f.paths[0] + "')") != std::string::npos);
    CHECK(msg.find("mirror_resync=yes") != std::string::npos);
  }
  CHECK(events_of(f.paths[1] + ".mirror") == b_ev);  // a refusal changes nothing
  {
    // A stale member the resync cannot write: the set opens degraded without it, its record stays behind.
    auto m = open_files(f, mirror_stale::resync, &msg, 1, 1);
    REQUIRE(m);
    CHECK(m->degraded());
    CHECK(!m->status()[1].in_service);
    CHECK(m->status()[1].error == EIO);
    CHECK(!m->status()[1].resynced);
  }
  CHECK(events_of(f.paths[1] + ".mirror") == b_ev);
  a_ev = events_of(f.paths[0] + ".mirror");
  {
    auto m = open_files(f, mirror_stale::resync, &msg);
    REQUIRE(m);
    CHECK(m->status()[1].resynced);
    CHECK(!m->degraded());
  }
  CHECK(file_bytes(f.paths[0]) == file_bytes(f.paths[1]));
  CHECK(events_of(f.paths[0] + ".mirror") == events_of(f.paths[1] + ".mirror"));
  // b written outside the mirror after the clean stop (its image newer than its record): refused, even
  // with resync on; once a's record is gone (the user's choice: b is right), a is copied from b.
  {
    int fd = ::open(f.paths[1].c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    pattern(w.data(), 4096, 77);
    REQUIRE(::pwrite(fd, w.data(), 4096, 0) == 4096);
    timespec ts[2] = {{0, UTIME_OMIT}, {time(nullptr) + 10, 0}};
    REQUIRE(::futimens(fd, ts) == 0);
    ::close(fd);
  }
  CHECK(!open_files(f, mirror_stale::resync, &msg));
  CHECK(msg.find("mirror member '" + f.paths[1] + "' was written outside the mirror after its clean stop") !=
        std::string::npos);
  CHECK(msg.find("'" + f.paths[0] + "' not") != std::string::npos);
  REQUIRE(::unlink((f.paths[0] + ".mirror").c_str()) == 0);
  {
    auto m = open_files(f, mirror_stale::resync, &msg);
    REQUIRE(m);
    CHECK(m->status()[0].resynced);
  }
  CHECK(file_bytes(f.paths[0]).substr(0, 4096) == std::string(w.data(), 4096));
  CHECK(file_bytes(f.paths[0]) == file_bytes(f.paths[1]));
  // An unclean stop (the records still say in use): the members may differ; refused or resynced.
  mirror_record r;
  REQUIRE(read_mirror_record(f.paths[1] + ".mirror", &r) == 0);
  r.clean = false;
  REQUIRE(write_mirror_record(f.paths[0] + ".mirror", r) == 0);
  REQUIRE(write_mirror_record(f.paths[1] + ".mirror", r) == 0);
  CHECK(!open_files(f, mirror_stale::refuse, &msg));
  CHECK(msg.find("was not stopped cleanly") != std::string::npos);
  // A member of another set.
  r.set_id = "0123456789abcdef";
  REQUIRE(write_mirror_record(f.paths[1] + ".mirror", r) == 0);
  CHECK(!open_files(f, mirror_stale::resync, &msg));
  CHECK(msg.find("belongs to another mirror") != std::string::npos);
}

// ---- membership while mounted: add_member copies in the background under writers, remove_member

namespace {

// A mem member (under a pass-through faults layer) for add_member, its record in dir.
mirror_member_spec mem_member(const std::string& dir, const std::string& label, mem_device** mem,
                              faults_device** faults = nullptr) {
  mem_options o;
  o.size = kSize;
  auto st = std::make_unique<dev_stack>(make_mem_device(o));
  *mem = static_cast<mem_device*>(st->backend());
  std::vector<dev_layer_spec> specs;
  REQUIRE(parse_dev_layers("faults", &specs) == "");
  REQUIRE(st->push(specs) == "");
  if (faults) *faults = static_cast<faults_device*>(st->top());
  mirror_member_spec sp;
  sp.stack = std::move(st);
  sp.label = label;
  sp.state_path = dir + "/" + label + ".mirror";
  return sp;
}

bool same_bytes(mem_device* a, mem_device* b) {
  std::vector<char> x(kSize), y(kSize);
  a->peek(0, x.data(), kSize);
  b->peek(0, y.data(), kSize);
  return x == y;
}

}  // namespace

TEST_CASE("mirror: a member added under writers is copied in the background and ends equal", "[dev][mirror][add]") {
  mset s = make_mem_set(2);
  REQUIRE(s.m);
  std::string dir = s.recs[0].substr(0, s.recs[0].rfind('/'));
  // Writers rewrite random blocks with (offset, version) records the whole time, synchronously. Each owns
  // a third of the device, as the buffer cache owns a block while it is written: the mirror does not order
  // overlapping writes that different callers have in flight at once (nor does md's RAID-1), so two such
  // writes may land in either order on each member, and the members could differ for that reason alone.
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> errors{0}, writes{0};
  auto writer = [&](int w) {
    std::mt19937_64 rng(w);
    abuf buf(8192);
    const uint64_t region = kSize / 4096 / 3;  // blocks
    for (uint64_t v = 1; !stop.load(); v++) {
      // some writes straddle chunk edges; none leaves the writer's region
      uint64_t off = ((w % 3) * region + rng() % (region - 2)) * 4096;
      size_t len = rng() % 2 ? 4096 : 8192;
      for (size_t i = 0; i < len; i += 16) {
        uint64_t o = off + i;
        std::memcpy(buf.data() + i, &o, 8);
        std::memcpy(buf.data() + i + 8, &v, 8);
      }
      if (dev_sync_io(*s.m, io_op::write, off, buf.data(), len, 0)) errors++;
      writes++;
    }
  };
  std::vector<std::thread> ws;
  for (int w = 0; w < 3; w++) ws.emplace_back(writer, w);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  mem_device* added = nullptr;
  // add_member's precondition (nothing in flight) is the caller's: the daemon suspends its device switch.
  // Here the writers pause around the call instead.
  stop = true;
  for (auto& t : ws) t.join();
  ws.clear();
  stop = false;
  faults_device* slow = nullptr;
  auto spec = mem_member(dir, "m2", &added, &slow);
  fault_rule d;  // every write to the new member takes 30 ms: the copy is still running at the second add
  d.action = fault_action::delay;
  d.ops = op_bit(io_op::write);
  d.delay_ns = 30'000'000;
  slow->add_rule(d);
  REQUIRE(s.m->add_member(std::move(spec)) == "");
  mem_device* other = nullptr;
  CHECK(s.m->add_member(mem_member(dir, "m3", &other)) != "");  // one copy at a time
  for (int w = 0; w < 3; w++) ws.emplace_back(writer, w + 10);
  for (int i = 0; i < 400 && s.m->syncing(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK_FALSE(s.m->syncing());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // writes after the join reach it too
  stop = true;
  for (auto& t : ws) t.join();
  INFO(writes.load() << " writes");
  CHECK(errors.load() == 0);
  auto st = s.m->status();
  REQUIRE(st.size() == 3);
  CHECK(st[2].in_service);
  CHECK(st[2].resynced);
  CHECK_FALSE(st[2].syncing);
  REQUIRE(dev_sync_io(*s.m, io_op::flush, 0, nullptr, 0) == 0);
  CHECK(same_bytes(s.mem[0], s.mem[1]));
  mem_device* m2 = static_cast<mem_device*>(s.m->member_stack(2)->backend());
  CHECK(same_bytes(s.mem[0], m2));
  // Its record joined the others' event count (the updater writes it when the member joins).
  mirror_record r0, r2;
  for (int i = 0; i < 100; i++) {
    REQUIRE(read_mirror_record(s.recs[0], &r0) == 0);
    REQUIRE(read_mirror_record(dir + "/m2.mirror", &r2) == 0);
    if (r2.events == r0.events) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(r2.events == r0.events);
  CHECK(r2.events > 0);

  // Removing: refused for an unknown name and for the last member in service; a removed member is stale.
  CHECK(s.m->remove_member("nope").find("no mirror member 'nope'") == 0);
  REQUIRE(s.m->remove_member("m1") == "");
  REQUIRE(s.m->remove_member("m0") == "");
  CHECK(s.m->remove_member("m2") == "mirror member 'm2' is the last one in service");
  abuf z(4096, 'z');
  REQUIRE(dev_sync_io(*s.m, io_op::write, 0, z.data(), 4096, 0) == 0);
  std::vector<char> back(4096);
  m2->peek(0, back.data(), 4096);
  CHECK(back[0] == 'z');
  s.mem[0]->peek(0, back.data(), 4096);
  CHECK(back[0] != 'z');  // removed: no longer written
  mirror_record r1;
  for (int i = 0; i < 100; i++) {
    REQUIRE(read_mirror_record(dir + "/m2.mirror", &r2) == 0);
    REQUIRE(read_mirror_record(s.recs[1], &r1) == 0);
    if (r2.events > r1.events) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(r2.events > r1.events);  // m1 is behind: stale at the next open
}

TEST_CASE("mirror: a member that fails while being copied stays out of service, nothing else notices",
          "[dev][mirror][add]") {
  mset s = make_mem_set(2);
  REQUIRE(s.m);
  std::string dir = s.recs[0].substr(0, s.recs[0].rfind('/'));
  mem_device* added = nullptr;
  faults_device* f = nullptr;
  auto spec = mem_member(dir, "bad", &added, &f);
  fault_rule r;
  r.ops = op_bit(io_op::write);
  r.error = EIO;
  f->add_rule(r);
  REQUIRE(s.m->add_member(std::move(spec)) == "");
  abuf buf(4096, 'q');
  for (int i = 0; i < 20; i++) REQUIRE(dev_sync_io(*s.m, io_op::write, uint64_t(i) * 4096, buf.data(), 4096, 0) == 0);
  for (int i = 0; i < 400 && s.m->syncing(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK_FALSE(s.m->syncing());
  auto st = s.m->status();
  REQUIRE(st.size() == 3);
  CHECK_FALSE(st[2].in_service);
  CHECK(st[2].error == EIO);
  CHECK(s.m->in_service() == 2);
  mirror_record rec;
  REQUIRE(read_mirror_record(dir + "/bad.mirror", &rec) == 0);
  CHECK(rec.events == 0);  // stale: never current
}

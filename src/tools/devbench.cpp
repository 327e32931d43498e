// vnopfs-devbench: throughput of the file and uring backends beside fio doing the same I/O on the same file.
//
//   vnopfs-devbench [--size 1G] [--dir /tmp] [--runtime 5] [--direct] [--no-fio] [--rounds 2]
//                   [--backend file|uring] [--only sync]   (workloads whose name contains the word)
//
// Workloads: sequential 1 MiB writes then reads over the whole file, random 4 KiB writes and reads for
// --runtime seconds. The backend keeps `depth` requests in flight (file: its worker count, since each worker
// does one synchronous call at a time; uring: the ring's queue depth for random, 4 for sequential). fio is
// matched: psync with numjobs = depth for the file backend (sequential: each job its own 1/depth slice),
// io_uring with iodepth = depth for the uring backend. No fsync in either (fio's default end_fsync=0).
// The "sync" workloads are one thread submitting one request at a time and waiting for it, as the buffer
// cache does for a read miss (depth 1, matched by fio psync with one job): through the device queue and its
// workers, and with IO_ATTR_INLINE (the I/O in the submitting thread); they measure the hand-off latency.
// Output: one row per backend and workload with MiB/s, IOPS, fio's numbers and the ratio backend/fio.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vnopfs/device.h"

using namespace vnopfs::dev;

namespace {

struct opts {
  uint64_t size = 1ull << 30;
  std::string dir = "/tmp";
  double runtime = 5;
  bool direct = false;
  bool fio = true;
  int rounds = 2;
  std::string backend;  // empty: both
  std::string only;     // empty: every workload
};

struct result {
  double mibs = 0, iops = 0;
  bool ok = false;
};

uint64_t parse_size(const char* s) {
  char* end;
  double v = strtod(s, &end);
  switch (*end) {
    case 'k': case 'K': v *= 1024; break;
    case 'm': case 'M': v *= 1 << 20; break;
    case 'g': case 'G': v *= 1 << 30; break;
  }
  return uint64_t(v);
}

// Keeps `depth` requests in flight until the sequence ends or the time is up. Completions resubmit.
class runner {
 public:
  runner(device& d, bool write, bool seq, size_t bs, unsigned depth, uint64_t size, double runtime)
      : d_(d), write_(write), seq_(seq), bs_(bs), size_(size), deadline_(now() + runtime), rng_(1) {
    slots_.resize(depth);
    for (auto& s : slots_) {
      void* p;
      if (posix_memalign(&p, 4096, bs)) abort();
      memset(p, 0x5a, bs);
      s.buf = static_cast<char*>(p);
      s.self = this;
    }
  }
  ~runner() {
    for (auto& s : slots_) free(s.buf);
  }
  result run() {
    for (auto& s : slots_) s.add_iov(s.buf, bs_);  // once: the memory stays the same for every request
    double t0 = now();
    for (auto& s : slots_) issue(&s);
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return outstanding_ == 0; });
    double secs = now() - t0;
    result r;
    r.ok = errors_ == 0;
    r.mibs = double(bytes_) / secs / (1 << 20);
    r.iops = double(ops_) / secs;
    if (errors_) fprintf(stderr, "devbench: %lu errors\n", (unsigned long)errors_.load());
    return r;
  }

 private:
  struct slot : io_request {
    char* buf = nullptr;
    runner* self = nullptr;
  };
  static double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  // Picks the next offset, or returns false when this slot should stop.
  bool next(uint64_t* off) {
    std::lock_guard lk(mu_);
    if (seq_) {
      if (next_off_ + bs_ > size_) return false;
      *off = next_off_;
      next_off_ += bs_;
      return true;
    }
    if (now() >= deadline_) return false;
    *off = std::uniform_int_distribution<uint64_t>(0, size_ / bs_ - 1)(rng_) * bs_;
    return true;
  }
  void issue(slot* s) {
    uint64_t off;
    if (!next(&off)) {
      std::lock_guard lk(mu_);
      if (--outstanding_ == 0) cv_.notify_all();
      return;
    }
    s->op = write_ ? io_op::write : io_op::read;
    s->offset = off;
    s->done = &on_done;
    d_.submit(s);
  }
  static void on_done(io_request* r, int err, size_t bytes) {
    auto* s = static_cast<slot*>(r);
    runner* self = s->self;
    if (err) self->errors_++;
    self->bytes_ += bytes;
    self->ops_++;
    self->issue(s);
  }

  device& d_;
  const bool write_, seq_;
  const size_t bs_;
  const uint64_t size_;
  const double deadline_;
  std::mt19937_64 rng_;
  std::vector<slot> slots_;
  std::mutex mu_;
  std::condition_variable cv_;
  unsigned outstanding_ = 0;
  uint64_t next_off_ = 0;
  std::atomic<uint64_t> bytes_{0}, ops_{0}, errors_{0};

 public:
  void set_outstanding() { outstanding_ = unsigned(slots_.size()); }
};

// One thread, one request at a time, waiting for each: random offsets until the time is up.
result run_sync(device& d, bool write, size_t bs, uint32_t attrs, const opts& o) {
  void* p;
  if (posix_memalign(&p, 4096, bs)) abort();
  memset(p, 0x5a, bs);
  std::mt19937_64 rng(1);
  auto clock = [] { return std::chrono::steady_clock::now(); };
  auto t0 = clock();
  auto end = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                      std::chrono::duration<double>(o.runtime));
  uint64_t ops = 0, bytes = 0, errors = 0;
  while (clock() < end) {
    uint64_t off = std::uniform_int_distribution<uint64_t>(0, o.size / bs - 1)(rng) * bs;
    size_t got = 0;
    int err = dev_sync_io(d, write ? io_op::write : io_op::read, off, p, bs, attrs, &got);
    ops++;
    bytes += got;
    errors += err != 0;
  }
  double secs = std::chrono::duration<double>(clock() - t0).count();
  free(p);
  result r;
  r.ok = errors == 0;
  r.mibs = double(bytes) / secs / (1 << 20);
  r.iops = double(ops) / secs;
  if (errors) fprintf(stderr, "devbench: %lu errors\n", (unsigned long)errors);
  return r;
}

result run_backend(device& d, bool write, bool seq, size_t bs, unsigned depth, const opts& o) {
  runner r(d, write, seq, bs, depth, o.size, o.runtime);
  r.set_outstanding();
  return r.run();
}

result run_fio(const std::string& file, const std::string& engine, bool write, bool seq, size_t bs,
               unsigned depth, const opts& o) {
  std::string cmd = "fio --output-format=json --name=devbench --filename=" + file + " --ioengine=" + engine +
                    " --bs=" + std::to_string(bs) + " --rw=" + (seq ? (write ? "write" : "read")
                                                                    : (write ? "randwrite" : "randread")) +
                    " --direct=" + (o.direct ? "1" : "0") + " --group_reporting --randrepeat=0";
  if (engine == "psync") {
    cmd += " --numjobs=" + std::to_string(depth);
    if (seq) {
      uint64_t slice = o.size / depth / bs * bs;
      cmd += " --size=" + std::to_string(slice) + " --offset_increment=" + std::to_string(slice);
    } else {
      cmd += " --size=" + std::to_string(o.size);
    }
  } else {
    cmd += " --iodepth=" + std::to_string(depth) + " --size=" + std::to_string(o.size);
  }
  if (!seq) cmd += " --time_based --runtime=" + std::to_string(int(o.runtime + 0.5));
  cmd += " 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  result r;
  if (!p) return r;
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  if (pclose(p) != 0) {
    fprintf(stderr, "devbench: fio failed: %s\n", cmd.c_str());
    return r;
  }
  try {
    auto j = nlohmann::json::parse(out.substr(out.find('{')));
    auto& s = j["jobs"][0][write ? "write" : "read"];
    r.mibs = s["bw_bytes"].get<double>() / (1 << 20);
    r.iops = s["iops"].get<double>();
    r.ok = true;
  } catch (const std::exception& e) {
    fprintf(stderr, "devbench: cannot parse fio output: %s\n", e.what());
  }
  return r;
}

void drop_caches_of(const std::string& file) {
  int fd = open(file.c_str(), O_RDONLY);
  if (fd >= 0) {
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
  }
}

void row(const char* backend, const char* work, unsigned depth, const result& b, const result& f, bool iops) {
  double mine = iops ? b.iops : b.mibs, theirs = iops ? f.iops : f.mibs;
  printf("%-14s %-18s %5u %12.1f %12.1f %12.1f %12.1f %7s\n", backend, work, depth, b.mibs, b.iops, f.mibs,
         f.iops, f.ok && theirs > 0 ? (std::to_string(mine / theirs).substr(0, 5) + "x").c_str() : "-");
  fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  opts o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) { fprintf(stderr, "devbench: %s needs a value\n", a.c_str()); exit(2); }
      return argv[++i];
    };
    if (a == "--size") o.size = parse_size(val());
    else if (a == "--dir") o.dir = val();
    else if (a == "--runtime") o.runtime = atof(val());
    else if (a == "--direct") o.direct = true;
    else if (a == "--no-fio") o.fio = false;
    else if (a == "--rounds") o.rounds = std::max(1, atoi(val()));
    else if (a == "--backend") o.backend = val();
    else if (a == "--only") o.only = val();
    else {
      fprintf(stderr, "usage: vnopfs-devbench [--size 1G] [--dir DIR] [--runtime SECS] [--direct] [--no-fio] [--rounds N]\n"
                      "                       [--backend file|uring] [--only WORD]\n");
      return 2;
    }
  }
  o.size = o.size >> 20 << 20;
  std::string file = o.dir + "/vnopfs-devbench." + std::to_string(getpid());
  {
    int fd = open(file.c_str(), O_RDWR | O_CREAT | O_EXCL, 0644);
    if (fd < 0 || ftruncate(fd, off_t(o.size)) < 0) {
      perror(file.c_str());
      return 1;
    }
    close(fd);
  }
  printf("devbench: %s, %lu MiB, runtime %.0f s per random test, %s\n", file.c_str(),
         (unsigned long)(o.size >> 20), o.runtime, o.direct ? "O_DIRECT" : "buffered");
  printf("%-14s %-18s %5s %12s %12s %12s %12s %7s\n", "backend", "workload", "depth", "MiB/s", "IOPS",
         "fio MiB/s", "fio IOPS", "ratio");
  const int file_threads = 4;
  struct work { const char* name; bool write, seq; size_t bs; int sync; };  // sync: 1 queued, 2 inline
  const work works[] = {{"seq write 1M", true, true, 1 << 20, 0},
                        {"seq read 1M", false, true, 1 << 20, 0},
                        {"rand write 4K", true, false, 4096, 0},
                        {"rand read 4K", false, false, 4096, 0},
                        {"sync rand read 4K", false, false, 4096, 1},
                        {"+inline", false, false, 4096, 2},
                        {"sync rand write 4K", true, false, 4096, 1},
                        {"+inline", true, false, 4096, 2}};
  int rc = 0;
  for (const char* backend : {"file", "uring"}) {
    bool ur = std::string(backend) == "uring";
    if (!o.backend.empty() && o.backend != backend) continue;
    int err = 0;
    const char* prev = "";
    for (const work& w : works) {
      const char* wname = w.name[0] == '+' ? prev : w.name;  // "+inline" continues the row above
      prev = wname;
      if (!o.only.empty() && std::string(wname).find(o.only) == std::string::npos) continue;
      unsigned depth = w.sync ? 1 : ur ? (w.seq ? 4 : 32) : file_threads;
      // Page-cache state (writeback of the previous run's pages) makes the first run of a pair slow
      // whoever goes first: run backend and fio alternately `rounds` times and keep each one's best.
      result b, f;
      for (int round = 0; round < o.rounds; round++) {
        std::unique_ptr<device> d;
        if (ur) {
          uring_options uo;
          uo.direct = o.direct;
          uo.queue_depth = depth;
          d = make_uring_device(file, uo, &err);
        } else {
          file_options fo;
          fo.direct = o.direct;
          fo.threads = file_threads;
          d = make_file_device(file, fo, &err);
        }
        if (!d) {
          fprintf(stderr, "devbench: cannot open %s backend: %s\n", backend, strerror(err));
          unlink(file.c_str());
          return 1;
        }
        drop_caches_of(file);
        result rb = w.sync ? run_sync(*d, w.write, w.bs, w.sync == 2 ? uint32_t{IO_ATTR_INLINE} : 0u, o)
                           : run_backend(*d, w.write, w.seq, w.bs, depth, o);
        d.reset();
        if (!rb.ok) rc = 1;
        if (rb.mibs > b.mibs) b = rb;
        drop_caches_of(file);
        if (o.fio) {
          result rf = run_fio(file, ur && !w.sync ? "io_uring" : "psync", w.write, w.seq, w.bs, depth, o);
          if (rf.ok && rf.mibs > f.mibs) f = rf;
        }
      }
      row(backend, w.name, depth, b, f, !w.seq);
    }
  }
  unlink(file.c_str());
  return rc;
}

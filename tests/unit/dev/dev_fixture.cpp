// dev_fixture.cpp: building each kind of device under test; probes of what this machine has.
#include "dev_fixture.h"

#include <fcntl.h>
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <cstdio>
#include <mutex>

#define CATCH_CONFIG_EXTERNAL_INTERFACES  // TestEventListenerBase, for the skip count at the end
#include <catch2/catch.hpp>

namespace devtest {

namespace {

std::mutex skip_mu;
std::vector<std::string> skips;

// Prints the skips when the run ends, so a run whose kinds were all skipped does not read as all passed.
struct skip_listener : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testRunEnded(const Catch::TestRunStats&) override {
    std::lock_guard lk(skip_mu);
    std::fprintf(stderr, "vnopfs-test-skips: %zu\n", skips.size());
    for (const std::string& s : skips) std::fprintf(stderr, "  skipped: %s\n", s.c_str());
  }
};

}  // namespace

CATCH_REGISTER_LISTENER(skip_listener)

size_t note_skip(const std::string& what, const std::string& why) {
  std::lock_guard lk(skip_mu);
  skips.push_back(what + ": " + why);
  std::fprintf(stderr, "vnopfs-test-skip: %s: %s\n", what.c_str(), why.c_str());
  return skips.size();
}

static std::string probe_direct() {
  std::string p = temp_dir() + "/probe-direct";
  int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
  int err = fd < 0 ? errno : 0;
  if (fd >= 0) ::close(fd);
  ::unlink(p.c_str());
  // Any other failure is not the machine lacking O_DIRECT: the kind then fails to open, and the test fails.
  return err == EINVAL ? "the filesystem under " + temp_dir() + " refuses O_DIRECT" : "";
}

static std::string probe_uring() {
  io_uring_params p{};
  long fd = ::syscall(__NR_io_uring_setup, 4, &p);
  if (fd < 0) return std::string("io_uring_setup: ") + strerror(errno);
  ::close(int(fd));
  if (!(p.features & IORING_FEAT_SUBMIT_STABLE)) return "the kernel's io_uring lacks IORING_FEAT_SUBMIT_STABLE";
  return "";
}

std::string machine_lacks(const std::string& kind) {
  if (kind.find("uring") != std::string::npos) {
    std::string why = probe_uring();
    if (!why.empty()) return why;
  }
  if (kind.find("+direct") != std::string::npos) return probe_direct();
  return "";
}

long resident_after_drop(const std::string& path, uint64_t off, uint64_t len) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  long resident = -1;
  const uint64_t pg = uint64_t(sysconf(_SC_PAGESIZE));
  uint64_t first = off / pg * pg, n = (off + len - first + pg - 1) / pg;
  std::vector<unsigned char> vec(n);
  if (::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0) {
    void* m = ::mmap(nullptr, n * pg, PROT_READ, MAP_SHARED, fd, off_t(first));  // faults nothing in
    if (m != MAP_FAILED) {
      if (::mincore(m, n * pg, vec.data()) == 0) {
        resident = 0;
        for (unsigned char v : vec) resident += v & 1;
      }
      ::munmap(m, n * pg);
    }
  }
  ::close(fd);
  return resident;
}

std::string page_cache_probe() {
  static const std::string verdict = [] {
    std::string p = temp_dir() + "/probe-pagecache";
    int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return std::string("cannot create a probe file in ") + temp_dir();
    std::vector<char> b(1 << 16, 'p');
    bool ok = ::pwrite(fd, b.data(), b.size(), 0) == ssize_t(b.size());
    long dirty = ok ? resident_after_drop(p, 0, b.size()) : -1;  // dirty pages must stay
    ok = ok && ::fdatasync(fd) == 0;
    long clean = ok ? resident_after_drop(p, 0, b.size()) : -1;  // durable pages must go
    ::close(fd);
    ::unlink(p.c_str());
    if (!ok || dirty < 0 || clean < 0) return std::string("cannot examine the page cache of ") + temp_dir();
    if (clean != 0) return "the filesystem under " + temp_dir() + " keeps durable pages cached (tmpfs?)";
    if (dirty == 0) return "the filesystem under " + temp_dir() + " wrote the probe back at once";
    return std::string();
  }();
  return verdict;
}

static std::unique_ptr<device> open_file(dut& d, bool direct, bool sort, int* err) {
  file_options o;
  o.direct = direct;
  o.sort_queue = sort;
  o.create_size = kDevSize + (2u << 20);
  return make_file_device(d.path, o, err);
}

static std::unique_ptr<device> open_backend(dut& d, int* err) {
  if (d.kind.rfind("uring", 0) == 0) {
    uring_options o;
    o.direct = d.direct;
    return make_uring_device(d.path, o, err);
  }
  return open_file(d, d.direct, d.kind != "file-nosort", err);
}

static void build(dut& d) {
  int err = 0;
  d.skip = machine_lacks(d.kind);
  if (!d.skip.empty()) return;
  if (d.kind == "mem" || d.kind == "faults(mem)") {
    mem_options o;
    o.size = kDevSize;
    o.volatile_cache = true;
    o.completion_threads = 2;
    d.mem = make_mem_device(o);
    d.dev = d.mem.get();
    if (d.kind == "faults(mem)") {
      d.layer = make_faults(d.mem.get());
      d.dev = d.layer.get();
    }
    return;
  }
  if (d.kind.rfind("uring", 0) == 0) {
    // the backing file must exist before uring opens it
    file_options fo;
    fo.create_size = kDevSize;
    if (!std::filesystem::exists(d.path)) {
      auto f = make_file_device(d.path, fo, &err);
      if (!f) { d.error = "cannot create " + d.path + ": " + strerror(err); return; }
    }
  }
  d.base = open_backend(d, &err);
  if (!d.base) {
    d.error = d.kind + " did not open although this machine supports it: " + strerror(err);
    return;
  }
  d.dev = d.base.get();
  if (d.kind == "partition(file)") {
    d.part_start = 1u << 20;
    d.layer = make_partition(d.base.get(), d.part_start, kDevSize);
    d.dev = d.layer.get();
    if (!d.dev) d.error = "make_partition refused a window that fits";
  }
}

std::unique_ptr<dut> make_dut(const std::string& kind) {
  auto d = std::make_unique<dut>();
  d->kind = kind;
  d->direct = kind.find("+direct") != std::string::npos;
  if (kind.find("+inline") != std::string::npos) d->attrs = IO_ATTR_INLINE;
  if (kind != "mem" && kind != "faults(mem)") d->path = temp_path("dev");
  build(*d);
  return d;
}

void dut::crash() {
  if (mem) {
    mem->power_loss();
    return;
  }
  layer.reset();
  base.reset();
  dev = nullptr;
  build(*this);
}

uint32_t io_align(const dut& d) { return d.direct ? d.dev->sector_size() : 1; }

}  // namespace devtest

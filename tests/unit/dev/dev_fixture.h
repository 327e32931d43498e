// dev_fixture.h: the devices the shared suite runs against, and helpers for the dev tests.
//
// Every kind is built in a fresh mkdtemp directory (removed when the test binary exits). A kind may be
// unavailable here (O_DIRECT refused by the filesystem under /tmp, io_uring forbidden): then make() leaves
// dev null and sets `skip` to the reason, which the test prints.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "src/dev/faults.h"
#include "src/dev/mem.h"
#include "vnopfs/device.h"

namespace devtest {

using namespace vnopfs::dev;

// A temp directory per test binary, under $TMPDIR or /tmp, removed at exit.
inline const std::string& temp_dir() {
  struct holder {
    std::string path;
    holder() {
      const char* t = getenv("TMPDIR");
      std::string tmpl = std::string(t && *t ? t : "/tmp") + "/vnopfs-dev-test.XXXXXX";
      std::vector<char> buf(tmpl.begin(), tmpl.end());
      buf.push_back(0);
      if (!mkdtemp(buf.data())) abort();
      path = buf.data();
    }
    ~holder() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static holder h;
  return h.path;
}

inline std::string temp_path(const std::string& stem) {
  static std::atomic<int> n{0};
  return temp_dir() + "/" + stem + "." + std::to_string(n++);
}

// Memory aligned for O_DIRECT.
struct abuf {
  char* p = nullptr;
  size_t n = 0;
  explicit abuf(size_t len, int fill = 0) : n(len) {
    if (posix_memalign(reinterpret_cast<void**>(&p), 4096, len ? len : 1)) abort();
    memset(p, fill, len);
  }
  ~abuf() { free(p); }
  abuf(const abuf&) = delete;
  abuf& operator=(const abuf&) = delete;
  char* data() { return p; }
  size_t size() const { return n; }
};

inline void pattern(char* p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++) p[i] = char((seed * 131 + i * 7 + (i >> 9)) & 0xff);
}

constexpr uint64_t kDevSize = 16u << 20;

// A device under test; `below` is what a layer sits on. crash() simulates losing everything that is not
// durable: power_loss on a volatile mem device, closing and reopening the backing file otherwise.
struct dut {
  std::string kind, path, skip;
  bool direct = false;
  std::unique_ptr<device> base;  // backend (null for the mem kinds: see mem)
  std::unique_ptr<mem_device> mem;
  std::unique_ptr<device> layer;
  device* dev = nullptr;  // the top of the stack
  uint64_t part_start = 0;

  void crash();
  void destroy() {  // top first: a layer drains into its below
    dev = nullptr;
    layer.reset();
    base.reset();
    mem.reset();
  }
  ~dut() { destroy(); }
};

std::unique_ptr<dut> make_dut(const std::string& kind);
uint32_t io_align(const dut& d);  // alignment tests must use: sector size when direct, 1 otherwise

// Per-request completion accounting for async tests (Catch2 is not thread-safe: count, check later).
struct tracker {
  std::vector<std::atomic<uint32_t>> calls;
  std::atomic<uint64_t> errors{0}, bytes{0}, completed{0};
  explicit tracker(size_t n) : calls(n) {}
};
struct treq : io_request {
  uint32_t id = 0;
  tracker* t = nullptr;
  int error = -1;
  size_t got = 0;
};
inline void treq_done(io_request* r, int err, size_t bytes) {
  auto* q = static_cast<treq*>(r);
  tracker* t = q->t;  // q may be reused as soon as calls[id] is seen: read it first, touch it last
  uint32_t id = q->id;
  q->error = err;
  q->got = bytes;
  if (err) t->errors.fetch_add(1);
  t->bytes.fetch_add(bytes);
  t->calls[id].fetch_add(1);
  t->completed.fetch_add(1);
}

}  // namespace devtest

// dev_fixture.h: the devices the shared suite runs against, and helpers for the dev tests.
//
// Every kind is built in a fresh mkdtemp directory (removed when the test binary exits). A kind is skipped
// only when this machine lacks what it needs (O_DIRECT refused by the filesystem under $TMPDIR, io_uring
// absent or forbidden), which machine_lacks() decides with raw system calls, not with the code under test:
// then make_dut() leaves dev null and sets `skip`. A kind the machine supports that does not open sets
// `error` instead, and the test fails. Skips go through note_skip(), which prints each one at once and a
// count when the run ends (Catch2 2 has no skip of its own and would count the case as passed).
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
  std::string kind, path;
  std::string skip;   // the machine lacks this kind: why
  std::string error;  // the kind should have opened and did not: why
  bool direct = false;
  uint32_t attrs = 0;  // added to every request the suite sends: IO_ATTR_INLINE for the "+inline" kinds
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

// What this machine lacks for `kind` ("" if nothing), probed with raw system calls: O_DIRECT on a file in
// temp_dir() for the +direct kinds, io_uring_setup (with IORING_FEAT_SUBMIT_STABLE) for the uring ones.
std::string machine_lacks(const std::string& kind);

// Records a skip: prints "vnopfs-test-skip: <what>: <why>" on stderr now; the total is printed when the run
// ends. Returns the number of skips so far.
size_t note_skip(const std::string& what, const std::string& why);

// Drops the page cache of `path` (posix_fadvise DONTNEED, which drops only clean pages) and returns how many
// pages of [off, off+len) are still resident (mincore): a page written and made durable leaves, a dirty one
// stays. -1 if the file cannot be examined.
long resident_after_drop(const std::string& path, uint64_t off, uint64_t len);

// Whether resident_after_drop can tell durable pages from dirty ones on the filesystem under temp_dir(),
// probed with plain pwrite/fdatasync on a scratch file: "" if it can, else why not (tmpfs keeps every page).
std::string page_cache_probe();
uint32_t io_align(const dut& d);  // alignment tests must use: sector size when direct, 1 otherwise

// dev_sync_io with no attributes by default (not IO_ATTR_INLINE): the suite must also drive the queued path.
inline int sync_io(device& d, io_op op, uint64_t off, void* buf, size_t len, uint32_t attrs = 0,
                   size_t* got = nullptr) {
  return dev_sync_io(d, op, off, buf, len, attrs, got);
}

// The suite's synchronous I/O on a device under test, with the kind's attributes.
inline int dio(dut& d, io_op op, uint64_t off, void* buf, size_t len, uint32_t attrs = 0, size_t* got = nullptr) {
  return sync_io(*d.dev, op, off, buf, len, attrs | d.attrs, got);
}

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

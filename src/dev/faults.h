// faults.h: a layer that fails, delays or tears requests chosen by rules (LevelDB's fault-injection env,
// Windows' driver verifier fault injection).
//
// A request is checked against the rules in the order they were added; the first rule that fires decides:
// - fail:  the request does not go down; it completes with rule.error (default EIO), 0 bytes.
// - delay: the request goes down after rule.delay_ns (held on the layer's deferred thread), unchanged.
// - tear:  a write goes down cut to its first rule.tear_bytes bytes (0: half of it, rounded down to the
//          sector size of the device below); when that prefix is written the request completes with
//          rule.error and bytes = the prefix. A tear rule fails requests that are not writes.
// - shortw: a write goes down cut to a prefix as for tear, and completes with NO error and bytes = the
//          prefix (a device that transfers less than asked and says so only through the byte count).
//          Reads are cut the same way (the rest of the caller's buffer is left untouched). Other ops fail.
// - drop:  a write does not go down and completes with success and bytes = its length (the device lies:
//          a lost write, as a disk with a volatile cache and no barrier support, or a misdirected write).
//          A dropped flush completes with success without reaching the device below. Reads fail.
// A rule fires for a request when: the op is in rule.ops; the request overlaps [lo, hi) (flushes have no
// range and always overlap); it is the every_nth-th, 2*every_nth-th ... request matching so far (0 or 1:
// every one); then, if probability < 1, a draw from the rule's own generator seeded with rule.seed (so the
// same seed and the same sequence of requests give the same choices); and the rule's limit is not reached.
// Rules can be added, removed and cleared at any time from any thread; counters say what was injected.
// Completions run on the device below's threads or on the layer's deferred thread ("faults-deferred"),
// never inside submit. The destructor waits for every request it holds or sent down.
#pragma once

#include <cerrno>
#include <cstdint>
#include <mutex>
#include <random>
#include <vector>

#include "src/dev/deferred.h"
#include "src/dev/gate.h"
#include "src/dev/stats.h"
#include "vnopfs/device.h"

namespace vnopfs::dev {

enum class fault_action : uint8_t { fail, delay, tear, shortw, drop };

constexpr uint32_t op_bit(io_op op) { return 1u << unsigned(op); }
constexpr uint32_t kAllOps = 0xf;

struct fault_rule {
  fault_action action = fault_action::fail;
  uint32_t ops = kAllOps;          // op_bit(io_op::write) | ...
  uint64_t lo = 0, hi = UINT64_MAX;  // byte range the request must overlap
  uint64_t every_nth = 0;
  double probability = 1.0;
  uint64_t seed = 0;
  int error = EIO;                 // fail and tear
  uint64_t delay_ns = 0;           // delay
  uint64_t tear_bytes = 0;         // tear and shortw
  uint64_t limit = 0;              // fire at most this many times (0: no limit)
};

struct fault_counts {
  uint64_t failed = 0, delayed = 0, torn = 0, shortened = 0, dropped = 0, passed = 0;
};

class faults_device final : public device_wrapper {
 public:
  explicit faults_device(device* below);
  ~faults_device() override;

  void submit(io_request* r) override;
  std::string name() const override { return "faults(" + below_->name() + ")"; }
  device_stats stats() const override { return st_.snapshot(); }

  int add_rule(const fault_rule& rule);  // returns the rule's id (> 0)
  bool remove_rule(int id);
  void clear_rules();
  uint64_t fired(int id) const;  // times the rule fired (0 for an unknown id)
  fault_counts counts() const;

 private:
  struct rule_state {
    int id;
    fault_rule rule;
    std::mt19937_64 rng;
    uint64_t matched = 0, fired = 0;
  };
  bool choose(const io_request* r, fault_rule* out);  // mu_ taken inside
  void send_down(io_request* r, uint64_t tear_len, int tear_err, bool cut = false);
  void defer(io_request* r, int err, uint64_t delay_ns, uint64_t bytes = 0);
  static void run_deferred(void* ctx, io_request* r);
  static void child_done(io_request* c, int err, size_t bytes);

  stats_keeper st_;
  mutable std::mutex mu_;
  std::vector<rule_state> rules_;
  int next_id_ = 1;
  fault_counts counts_;
  inflight_gate gate_;
  deferred_queue deferred_;
};

}  // namespace vnopfs::dev

// stats.h: the stats layer, a VNOP table stacked on any other that counts every op it passes down:
// calls, errors and a latency histogram per VNOP (docs/design.md, "Layers"). It changes nothing it forwards.
//
// Ownership: the caller owns the stats_layer and must keep it alive while any vnode uses its table (from
// mount to unmount). Counters are atomics: the frontend's threads update them concurrently; snapshot()
// and to_json() may run at any time on any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "vnopfs/vnops.h"
#include "vnops/layers/layer.h"

namespace vnopfs {

class stats_layer final : public layer {
 public:
  // Latency buckets: bucket i counts calls that took [2^i, 2^(i+1)) microseconds (bucket 0: < 2 us).
  static constexpr int kLatencyBuckets = 24;

  struct op_counters {
    std::atomic<uint64_t> calls{0};
    std::atomic<uint64_t> errors{0};
    std::atomic<uint64_t> latency_ns{0};  // sum
    std::atomic<uint64_t> latency_ns_max{0};
    std::array<std::atomic<uint64_t>, kLatencyBuckets> latency_hist{};
  };

  explicit stats_layer(const vnop_table* below);
  stats_layer(const stats_layer&) = delete;
  stats_layer& operator=(const stats_layer&) = delete;

  const vnop_table* table() const override { return &table_; }
  const char* name() const override { return "stats"; }
  const op_counters& op(int slot) const { return ops_[static_cast<size_t>(slot)]; }
  // {"layer":"stats","ops":{"write":{"calls":N,"errors":N,"latency_ns_total":N,"latency_ns_max":N,
  //  "latency_hist_us_log2":[...]}, ...}}: ops never called are left out.
  nlohmann::json to_json() const;
  void reset();
  // Adds o's counts to this layer's (a stack swapped while mounted keeps one series of counts). An op
  // that o counts while this runs may be missed: it finished on the old stack after the swap.
  void absorb(const stats_layer& o);

 private:
  static int count(void* ap);  // every slot
  static stats_layer* from_table(const vnop_table* t);
  vnop_table table_;           // count() finds the layer from its running table
  std::array<op_counters, VNOP_COUNT> ops_;
};

}  // namespace vnopfs

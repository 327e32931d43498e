// stats.cpp: one generic slot function for every op. It times the call below it; the layer object is
// found from the table running now, so any number of stats layers can stack (e.g. above and below a
// sync layer) and each counts only what passes through it.
#include "vnops/layers/stats.h"

#include <bit>
#include <cassert>
#include <chrono>
#include <cstddef>

namespace vnopfs {

stats_layer::stats_layer(const vnop_table* below) {
  vnop_layer_build_generic(&table_, "stats", below, &stats_layer::count);
  assert(from_table(&table_) == this);
}

// The table is a member: step back from it to the layer (container_of). offsetof on a class with a vtable
// is conditionally supported; g++ gives the right answer and we check it once at construction.
stats_layer* stats_layer::from_table(const vnop_table* t) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
  return reinterpret_cast<stats_layer*>(reinterpret_cast<char*>(const_cast<vnop_table*>(t)) -
                                        offsetof(stats_layer, table_));
#pragma GCC diagnostic pop
}

int stats_layer::count(void* ap) {
  const vnop_table* running = vnop_running_table();
  stats_layer* self = from_table(running);
  const vnodeop_desc* d = *static_cast<const vnodeop_desc* const*>(ap);
  auto t0 = std::chrono::steady_clock::now();
  int err = vnop_call_below(running, ap);
  auto ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
  op_counters& c = self->ops_[static_cast<size_t>(d->vdesc_offset)];
  c.calls.fetch_add(1, std::memory_order_relaxed);
  if (err != 0) c.errors.fetch_add(1, std::memory_order_relaxed);
  c.latency_ns.fetch_add(ns, std::memory_order_relaxed);
  uint64_t prev = c.latency_ns_max.load(std::memory_order_relaxed);
  while (ns > prev && !c.latency_ns_max.compare_exchange_weak(prev, ns, std::memory_order_relaxed)) {
  }
  uint64_t us = ns / 1000;
  int bucket = us < 2 ? 0 : std::bit_width(us) - 1;
  if (bucket >= kLatencyBuckets) bucket = kLatencyBuckets - 1;
  c.latency_hist[static_cast<size_t>(bucket)].fetch_add(1, std::memory_order_relaxed);
  return err;
}

nlohmann::json stats_layer::to_json() const {
  nlohmann::json ops = nlohmann::json::object();
  for (int i = 0; i < VNOP_COUNT; ++i) {
    const op_counters& c = ops_[static_cast<size_t>(i)];
    uint64_t calls = c.calls.load(std::memory_order_relaxed);
    if (calls == 0) continue;
    nlohmann::json hist = nlohmann::json::array();
    for (const auto& b : c.latency_hist) hist.push_back(b.load(std::memory_order_relaxed));
    ops[vnop_descs[i]->vdesc_name] = {
        {"calls", calls},
        {"errors", c.errors.load(std::memory_order_relaxed)},
        {"latency_ns_total", c.latency_ns.load(std::memory_order_relaxed)},
        {"latency_ns_max", c.latency_ns_max.load(std::memory_order_relaxed)},
        {"latency_hist_us_log2", hist},
    };
  }
  return {{"layer", "stats"}, {"below", table_.below ? table_.below->name : ""}, {"ops", ops}};
}

void stats_layer::reset() {
  for (op_counters& c : ops_) {
    c.calls = 0;
    c.errors = 0;
    c.latency_ns = 0;
    c.latency_ns_max = 0;
    for (auto& b : c.latency_hist) b = 0;
  }
}

void stats_layer::absorb(const stats_layer& o) {
  for (size_t i = 0; i < ops_.size(); i++) {
    op_counters& c = ops_[i];
    const op_counters& x = o.ops_[i];
    c.calls.fetch_add(x.calls.load(std::memory_order_relaxed), std::memory_order_relaxed);
    c.errors.fetch_add(x.errors.load(std::memory_order_relaxed), std::memory_order_relaxed);
    c.latency_ns.fetch_add(x.latency_ns.load(std::memory_order_relaxed), std::memory_order_relaxed);
    uint64_t m = x.latency_ns_max.load(std::memory_order_relaxed), cur = c.latency_ns_max.load(std::memory_order_relaxed);
    while (m > cur && !c.latency_ns_max.compare_exchange_weak(cur, m, std::memory_order_relaxed)) {}
    for (size_t b = 0; b < c.latency_hist.size(); b++)
      c.latency_hist[b].fetch_add(x.latency_hist[b].load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
}

}  // namespace vnopfs

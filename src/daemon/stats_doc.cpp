// stats_doc.cpp: see stats_doc.h.
#include "src/daemon/stats_doc.h"

namespace vnopfs::daemon {

nlohmann::json cache_json(const bufcache_stats& s) {
  nlohmann::json w = nlohmann::json::array(), r = nlohmann::json::array();
  for (int i = 0; i < bufcache_stats::kSizeBuckets; i++) {
    w.push_back(s.write_size_hist[i]);
    r.push_back(s.read_size_hist[i]);
  }
  return {
      {"cache",
       {{"buffers", s.buffers}, {"block_size", s.block_size}, {"hits", s.hits}, {"misses", s.misses},
        {"evictions", s.evictions}, {"dirty", s.dirty}, {"dirty_max", s.dirty_max}, {"busy", s.busy},
        {"throttle_waits", s.throttle_waits}, {"bdwrite_to_async", s.bdwrite_to_async}, {"reads", s.reads},
        {"writes", s.writes}, {"read_errors", s.read_errors}, {"write_errors", s.write_errors},
        {"dropped_dirty", s.dropped_dirty}, {"flusher_runs", s.flusher_runs}, {"flusher_writes", s.flusher_writes},
        {"meta_gate_skipped", s.meta_gate_skipped}, {"meta_gate_unordered", s.meta_gate_unordered},
        {"meta_data_left", s.meta_data_left}}},
      {"cluster",
       {{"pushes", s.cluster_pushes}, {"sparse_pushes", s.sparse_pushes}, {"readahead_issued", s.readahead_issued},
        {"readahead_used", s.readahead_used}, {"write_size_hist_blocks_log2", w}, {"read_size_hist_blocks_log2", r}}},
  };
}

nlohmann::json device_json(const dev::device& d) {
  dev::device_stats s = d.stats();
  nlohmann::json h = nlohmann::json::array();
  for (int i = 0; i < dev::device_stats::kSizeBuckets; i++) h.push_back(s.size_hist[i]);
  uint64_t ios = s.reads + s.writes + s.flushes + s.unmaps;
  return {{"name", d.name()}, {"reads", s.reads}, {"writes", s.writes}, {"flushes", s.flushes},
          {"unmaps", s.unmaps}, {"bytes_read", s.bytes_read}, {"bytes_written", s.bytes_written},
          {"errors", s.errors}, {"merged", s.merged}, {"in_flight_max", s.in_flight_max},
          {"latency_ns_total", s.latency_ns_total}, {"latency_ns_avg", ios ? s.latency_ns_total / ios : 0},
          {"size_hist_bytes_log2_from_512", h}};
}

}  // namespace vnopfs::daemon

// prometheus.h: the stats document (the JSON of -o stats=, src/daemon/daemon.cpp stats_json) in the
// Prometheus text exposition format 0.0.4, for `vnopfs-stat --prometheus` and `-o stats_format=prometheus`
// (a node exporter's textfile collector reads such a file as it is).
//
// Families (every sample carries mountpoint="..."):
//   vnopfs_info{image,table,backend,...} 1              gauge
//   vnopfs_vnop_calls_total{vnop}, vnopfs_vnop_errors_total{vnop}                      counters
//   vnopfs_vnop_latency_seconds{vnop}                   histogram: the stats layer's log2 microsecond
//       buckets as cumulative _bucket{le="2e-06"...,"+Inf"}, _sum (seconds) and _count (calls)
//   vnopfs_vnop_latency_max_seconds{vnop}               gauge
//   vnopfs_cache_*                                      buffer cache: counters (_total) and gauges (buffers, dirty...)
//   vnopfs_cluster_*_total                              cluster layer counters
//   vnopfs_device_*{member,device}                      each member of the device stack, bottom first
//       (member="0" is the backend): ops, bytes, errors, merged, latency; in_flight_max a gauge
//   vnopfs_inodes, vnopfs_syncer_runs_total
// A key the document lacks gives no family; nothing else of the document is interpreted.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace vnopfs::fuse {

std::string stats_to_prometheus(const nlohmann::json& doc);

}  // namespace vnopfs::fuse

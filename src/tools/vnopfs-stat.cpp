// vnopfs-stat: prints the live statistics of a vnopfs mount (mounted with -o stats=PATH).
//
//   vnopfs-stat MOUNTPOINT          readable summary
//   vnopfs-stat --json MOUNTPOINT   the raw JSON the daemon writes
//   vnopfs-stat --prometheus MOUNTPOINT   the same in the Prometheus text format (src/fuse/prometheus.h)
//   vnopfs-stat --file PATH         read a stats file directly
//
// The daemon links /run/vnopfs/<fnv1a64 of the mountpoint's absolute path>.json to its stats file.
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "src/fuse/preflight.h"
#include "src/fuse/prometheus.h"

namespace {

using json = nlohmann::json;

uint64_t u(const json& j, const char* k) { return j.contains(k) && j[k].is_number() ? j[k].get<uint64_t>() : 0; }

std::string human(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (b >= 1024 && i < 4) { b /= 1024; i++; }
  char buf[32];
  std::snprintf(buf, sizeof buf, i ? "%.1f %s" : "%.0f %s", b, units[i]);
  return buf;
}

// Latency percentile from a log2-microsecond histogram: the upper bound of the bucket holding it.
double pct_us(const json& hist, double p) {
  uint64_t total = 0;
  for (auto& v : hist) total += v.get<uint64_t>();
  if (!total) return 0;
  uint64_t want = static_cast<uint64_t>(p * static_cast<double>(total));
  uint64_t acc = 0;
  for (size_t i = 0; i < hist.size(); i++) {
    acc += hist[i].get<uint64_t>();
    if (acc > want || acc == total) return static_cast<double>(1ull << (i + 1));
  }
  return 0;
}

void print(const json& j) {
  std::printf("vnopfs %s on %s (pid %llu)\n", j.value("image", "?").c_str(), j.value("mountpoint", "?").c_str(),
              static_cast<unsigned long long>(u(j, "pid")));
  if (j.contains("options")) std::printf("options: %s\n", j["options"].dump().c_str());
  std::printf("\n%-12s %10s %8s %12s %10s %10s %10s\n", "vnop", "calls", "errors", "avg us", "p50 us", "p99 us", "max us");
  if (j.contains("vnops")) {
    for (auto& [name, c] : j["vnops"].items()) {
      uint64_t calls = u(c, "calls");
      double avg = calls ? static_cast<double>(u(c, "latency_ns_total")) / calls / 1000.0 : 0;
      std::printf("%-12s %10llu %8llu %12.1f %10.0f %10.0f %10.1f\n", name.c_str(),
                  static_cast<unsigned long long>(calls), static_cast<unsigned long long>(u(c, "errors")), avg,
                  pct_us(c["latency_hist_us_log2"], 0.5), pct_us(c["latency_hist_us_log2"], 0.99),
                  static_cast<double>(u(c, "latency_ns_max")) / 1000.0);
    }
  }
  if (j.contains("cache")) {
    const json& c = j["cache"];
    uint64_t h = u(c, "hits"), m = u(c, "misses");
    std::printf("\ncache: %llu buffers of %llu B, hits %llu, misses %llu (%.1f%% hit), evictions %llu, dirty %llu "
                "(max %llu), throttle waits %llu\n",
                static_cast<unsigned long long>(u(c, "buffers")), static_cast<unsigned long long>(u(c, "block_size")),
                static_cast<unsigned long long>(h), static_cast<unsigned long long>(m),
                h + m ? 100.0 * h / (h + m) : 0.0, static_cast<unsigned long long>(u(c, "evictions")),
                static_cast<unsigned long long>(u(c, "dirty")), static_cast<unsigned long long>(u(c, "dirty_max")),
                static_cast<unsigned long long>(u(c, "throttle_waits")));
  }
  if (j.contains("cluster")) {
    const json& c = j["cluster"];
    std::printf("cluster: pushes %llu, sparse pushes %llu, read-ahead issued %llu used %llu blocks\n",
                static_cast<unsigned long long>(u(c, "pushes")), static_cast<unsigned long long>(u(c, "sparse_pushes")),
                static_cast<unsigned long long>(u(c, "readahead_issued")),
                static_cast<unsigned long long>(u(c, "readahead_used")));
  }
  if (j.contains("device")) {
    const json& d = j["device"];
    std::printf("device %s: %llu reads (%s), %llu writes (%s), %llu flushes, %llu errors, avg latency %.1f us\n",
                d.value("name", "?").c_str(), static_cast<unsigned long long>(u(d, "reads")),
                human(static_cast<double>(u(d, "bytes_read"))).c_str(), static_cast<unsigned long long>(u(d, "writes")),
                human(static_cast<double>(u(d, "bytes_written"))).c_str(),
                static_cast<unsigned long long>(u(d, "flushes")), static_cast<unsigned long long>(u(d, "errors")),
                static_cast<double>(u(d, "latency_ns_avg")) / 1000.0);
    // The queue's merging (-o dev_queue=merge|nomerge) and what reached the device per write request.
    const uint64_t w = u(d, "writes");
    std::printf("device queue: %s, merged %llu, sorted %llu; average write %s\n",
                j.contains("options") ? j["options"].value("dev_queue", "merge").c_str() : "merge",
                static_cast<unsigned long long>(u(d, "merged")), static_cast<unsigned long long>(u(d, "sorted")),
                w ? human(static_cast<double>(u(d, "bytes_written")) / static_cast<double>(w)).c_str() : "-");
  }
}

int usage() {
  std::fprintf(stderr, "usage: vnopfs-stat [--json|--prometheus] MOUNTPOINT | vnopfs-stat [--json|--prometheus] --file STATS.json\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  bool raw = false, prom = false;
  std::string mnt, file;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--json") raw = true;
    else if (a == "--prometheus") prom = true;
    else if (a == "--file" && i + 1 < argc) file = argv[++i];
    else if (a == "-h" || a == "--help") { usage(); return 0; }
    else if (!a.empty() && a[0] == '-') return usage();
    else if (mnt.empty()) mnt = a;
    else return usage();
  }
  if (file.empty()) {
    if (mnt.empty()) return usage();
    char abs[PATH_MAX];
    if (!realpath(mnt.c_str(), abs)) {
      std::fprintf(stderr, "vnopfs-stat: '%s': %s\n", mnt.c_str(), std::strerror(errno));
      return 1;
    }
    file = vnopfs::fuse::stats_link_path(abs);
    if (access(file.c_str(), R_OK) != 0) {
      std::fprintf(stderr, "vnopfs-stat: no statistics for '%s' (%s missing: mount it with -o stats=PATH)\n",
                   abs, file.c_str());
      return 1;
    }
  }
  std::ifstream in(file);
  if (!in) {
    std::fprintf(stderr, "vnopfs-stat: '%s': %s\n", file.c_str(), std::strerror(errno));
    return 1;
  }
  json j;
  try {
    j = json::parse(in);
  } catch (const std::exception& e) {
    in.clear();
    in.seekg(0);
    std::string first;
    if (std::getline(in, first) && first.rfind("# HELP ", 0) == 0) {  // -o stats_format=prometheus
      if (prom) {
        std::cout << first << "\n" << in.rdbuf();
        return 0;
      }
      std::fprintf(stderr, "vnopfs-stat: '%s' is in the Prometheus text format (stats_format=prometheus): "
                   "read it with --prometheus\n", file.c_str());
      return 1;
    }
    std::fprintf(stderr, "vnopfs-stat: '%s': %s\n", file.c_str(), e.what());
    return 1;
  }
  if (prom) std::cout << vnopfs::fuse::stats_to_prometheus(j);
  else if (raw) std::cout << j.dump(1) << "\n";
  else print(j);
  return 0;
}

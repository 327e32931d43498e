// prometheus.cpp: see prometheus.h. Each family is written whole (HELP, TYPE, then all its samples), as
// the format requires; label values are escaped (backslash, double quote, newline).
#include "src/fuse/prometheus.h"

#include <cinttypes>
#include <cstdio>
#include <utility>
#include <vector>

namespace vnopfs::fuse {
namespace {

using json = nlohmann::json;
using labels = std::vector<std::pair<std::string, std::string>>;

std::string esc(const std::string& v) {
  std::string o;
  for (char c : v) {
    if (c == '\\') o += "\\\\";
    else if (c == '"') o += "\\\"";
    else if (c == '\n') o += "\\n";
    else o += c;
  }
  return o;
}

std::string num(double v) {
  char b[40];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

std::string num(uint64_t v) { return std::to_string(v); }

uint64_t u(const json& j, const char* k) {
  return j.contains(k) && j[k].is_number() ? j[k].get<uint64_t>() : 0;
}

class writer {
 public:
  explicit writer(labels common) : common_(std::move(common)) {}
  void family(const std::string& name, const char* type, const std::string& help) {
    out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void sample(const std::string& name, const labels& l, const std::string& value) {
    out_ += name;
    labels all = common_;
    all.insert(all.end(), l.begin(), l.end());
    if (!all.empty()) {
      out_ += "{";
      for (size_t i = 0; i < all.size(); i++) out_ += (i ? "," : "") + all[i].first + "=\"" + esc(all[i].second) + "\"";
      out_ += "}";
    }
    out_ += " " + value + "\n";
  }
  std::string take() { return std::move(out_); }

 private:
  labels common_;
  std::string out_;
};

void vnops(writer& w, const json& ops) {
  if (!ops.is_object() || ops.empty()) return;
  w.family("vnopfs_vnop_calls_total", "counter", "VNOP calls completed, by operation (the stats layer)");
  for (auto& [n, c] : ops.items()) w.sample("vnopfs_vnop_calls_total", {{"vnop", n}}, num(u(c, "calls")));
  w.family("vnopfs_vnop_errors_total", "counter", "VNOP calls that returned an error");
  for (auto& [n, c] : ops.items()) w.sample("vnopfs_vnop_errors_total", {{"vnop", n}}, num(u(c, "errors")));
  w.family("vnopfs_vnop_latency_seconds", "histogram", "VNOP latency (log2 microsecond buckets)");
  for (auto& [n, c] : ops.items()) {
    // Bucket 0 holds latencies under 2 us, bucket i >= 1 those in [2^i, 2^(i+1)) us, the last everything
    // above: cumulative counts with le = 2^(i+1) us, the last bucket only in +Inf.
    uint64_t acc = 0;
    const json& h = c.contains("latency_hist_us_log2") ? c["latency_hist_us_log2"] : json::array();
    for (size_t i = 0; i < h.size(); i++) {
      acc += h[i].get<uint64_t>();
      if (i + 1 < h.size())
        w.sample("vnopfs_vnop_latency_seconds_bucket", {{"vnop", n}, {"le", num(static_cast<double>(2ull << i) * 1e-6)}}, num(acc));
    }
    w.sample("vnopfs_vnop_latency_seconds_bucket", {{"vnop", n}, {"le", "+Inf"}}, num(u(c, "calls")));
    w.sample("vnopfs_vnop_latency_seconds_sum", {{"vnop", n}}, num(static_cast<double>(u(c, "latency_ns_total")) / 1e9));
    w.sample("vnopfs_vnop_latency_seconds_count", {{"vnop", n}}, num(u(c, "calls")));
  }
  w.family("vnopfs_vnop_latency_max_seconds", "gauge", "the longest VNOP call seen");
  for (auto& [n, c] : ops.items())
    w.sample("vnopfs_vnop_latency_max_seconds", {{"vnop", n}}, num(static_cast<double>(u(c, "latency_ns_max")) / 1e9));
}

// The numeric fields of obj: those named in gauges as gauges, the rest as counters (NAME_total).
void flat(writer& w, const std::string& prefix, const json& obj, const std::vector<std::string>& gauges, const char* what) {
  if (!obj.is_object()) return;
  for (auto& [k, v] : obj.items()) {
    if (!v.is_number()) continue;
    bool g = false;
    for (auto& n : gauges) g = g || n == k;
    std::string name = prefix + k + (g ? "" : "_total");
    w.family(name, g ? "gauge" : "counter", std::string(what) + ": " + k);
    w.sample(name, {}, num(v.get<uint64_t>()));
  }
}

void devices(writer& w, const json& doc) {
  json st = doc.contains("device_stack") ? doc["device_stack"] : json::array();
  if (st.empty() && doc.contains("device")) st.push_back(doc["device"]);
  if (st.empty()) return;
  struct field { const char* key; const char* name; const char* type; const char* help; double scale; };
  static const field fields[] = {
      {"reads", "vnopfs_device_reads_total", "counter", "read requests completed", 1},
      {"writes", "vnopfs_device_writes_total", "counter", "write requests completed", 1},
      {"flushes", "vnopfs_device_flushes_total", "counter", "flush requests completed", 1},
      {"unmaps", "vnopfs_device_unmaps_total", "counter", "unmap (trim) requests completed", 1},
      {"bytes_read", "vnopfs_device_read_bytes_total", "counter", "bytes read", 1},
      {"bytes_written", "vnopfs_device_written_bytes_total", "counter", "bytes written", 1},
      {"errors", "vnopfs_device_errors_total", "counter", "requests completed with an error", 1},
      {"merged", "vnopfs_device_merged_total", "counter", "requests merged into a neighbour by the queue", 1},
      {"latency_ns_total", "vnopfs_device_latency_seconds_total", "counter", "sum of request latencies", 1e-9},
      {"in_flight_max", "vnopfs_device_in_flight_max", "gauge", "most requests in flight at once", 1},
  };
  for (const field& f : fields) {
    w.family(f.name, f.type, std::string("device stack member: ") + f.help);
    for (size_t i = 0; i < st.size(); i++) {
      labels l{{"member", std::to_string(i)}, {"device", st[i].value("name", "?")}};
      uint64_t v = u(st[i], f.key);
      w.sample(f.name, l, f.scale == 1 ? num(v) : num(static_cast<double>(v) * f.scale));
    }
  }
}

}  // namespace

std::string stats_to_prometheus(const nlohmann::json& doc) {
  writer w({{"mountpoint", doc.value("mountpoint", "")}});
  labels info{{"image", doc.value("image", "")}};
  if (doc.contains("options") && doc["options"].is_object())
    for (auto& [k, v] : doc["options"].items()) info.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
  w.family("vnopfs_info", "gauge", "the mount's image and options (value 1)");
  w.sample("vnopfs_info", info, "1");
  if (doc.contains("vnops")) vnops(w, doc["vnops"]);
  if (doc.contains("cache"))
    flat(w, "vnopfs_cache_", doc["cache"], {"buffers", "block_size", "dirty", "dirty_max", "busy"}, "buffer cache");
  if (doc.contains("cluster")) flat(w, "vnopfs_cluster_", doc["cluster"], {}, "cluster layer");
  devices(w, doc);
  if (doc.contains("syncer")) flat(w, "vnopfs_syncer_", doc["syncer"], {}, "syncer");
  if (doc.contains("inodes") && doc["inodes"].is_number()) {
    w.family("vnopfs_inodes", "gauge", "inodes the FUSE inode table holds");
    w.sample("vnopfs_inodes", {}, num(doc["inodes"].get<uint64_t>()));
  }
  return w.take();
}

}  // namespace vnopfs::fuse

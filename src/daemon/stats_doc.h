// stats_doc.h: the JSON documents of the stats file (-o stats=PATH, read by vnopfs-stat): the buffer
// cache and cluster counters, and one device's counters.
#pragma once

#include <nlohmann/json.hpp>

#include "vnopfs/buf.h"
#include "vnopfs/device.h"

namespace vnopfs::daemon {

// {"cache": {...}, "cluster": {...}}
nlohmann::json cache_json(const bufcache_stats& s);
nlohmann::json device_json(const dev::device& d);

}  // namespace vnopfs::daemon

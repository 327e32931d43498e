// layer.cpp: layers by name, and stacks of them.
#include "vnops/layers/layer.h"

#include <algorithm>

#include "vnops/layers/layer_args.h"
#include "vnops/layers/stats.h"

namespace vnopfs {

std::unique_ptr<layer> make_trace_layer(const vnop_table* below);
std::unique_ptr<layer> make_sync_layer(const vnop_table* below);
std::unique_ptr<layer> make_nocache_layer(const vnop_table* below);
std::unique_ptr<layer> make_readonly_layer(const vnop_table* below);
std::unique_ptr<layer> make_faults_layer(const vnop_table* below, layer_args* args, std::string* err);
std::unique_ptr<layer> make_delay_layer(const vnop_table* below, layer_args* args, std::string* err);

const std::vector<std::string>& layer_names() {
  static const std::vector<std::string> names{"stats", "trace", "sync", "nocache", "readonly", "faults", "delay"};
  return names;
}

bool is_layer_module_path(const std::string& name) {
  return name.find('/') != std::string::npos || (name.size() > 3 && name.compare(name.size() - 3, 3, ".so") == 0);
}

std::unique_ptr<layer> make_layer(const std::string& spec, const vnop_table* below, std::string* err) {
  layer_args args;
  if (!layer_args::parse(spec, &args, err)) return nullptr;
  const std::string& name = args.name;
  if (is_layer_module_path(name)) return load_layer_module(name, below, &args, err);
  if (name == "faults") return make_faults_layer(below, &args, err);
  if (name == "delay") return make_delay_layer(below, &args, err);
  auto known = std::find(layer_names().begin(), layer_names().end(), name) != layer_names().end();
  if (known && !args.kv.empty()) {
    *err = "layer '" + name + "' takes no arguments (got '" + args.kv.begin()->first + "')";
    return nullptr;
  }
  if (name == "stats") return std::make_unique<stats_layer>(below);
  if (name == "trace") return make_trace_layer(below);
  if (name == "sync") return make_sync_layer(below);
  if (name == "nocache") return make_nocache_layer(below);
  if (name == "readonly") return make_readonly_layer(below);
  std::string list;
  for (const auto& n : layer_names()) list += (list.empty() ? "" : ", ") + n;
  *err = "unknown layer '" + name + "' (known: " + list + ", or the path of a layer module: /path/name.so)";
  return nullptr;
}

layer_stack::~layer_stack() {
  while (!layers_.empty()) layers_.pop_back();
}

bool layer_stack::push(const std::string& spec, std::string* err) {
  auto l = make_layer(spec, top(), err);
  if (!l) return false;
  layers_.push_back(std::move(l));
  return true;
}

bool layer_stack::push_list(const std::string& specs, std::string* err) {
  size_t start = 0;
  while (start <= specs.size()) {
    size_t comma = specs.find(',', start);
    std::string n = specs.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!n.empty() && !push(n, err)) return false;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return true;
}

layer* layer_stack::find(const std::string& name) const {
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
    if (name == (*it)->name()) return it->get();
  }
  return nullptr;
}

}  // namespace vnopfs

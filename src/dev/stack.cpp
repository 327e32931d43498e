// stack.cpp: device layers by name (stack.h).
#include "src/dev/stack.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "src/dev/faults.h"
#include "src/dev/record.h"

namespace vnopfs::dev {

namespace {

bool parse_u64(const std::string& s, uint64_t* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long x = std::strtoull(s.c_str(), &end, 0);
  if (errno || end == s.c_str()) return false;
  std::string unit(end);
  uint64_t mul = 1;
  if (unit == "K" || unit == "k") mul = 1ull << 10;
  else if (unit == "M") mul = 1ull << 20;
  else if (unit == "G") mul = 1ull << 30;
  else if (!unit.empty()) return false;
  *v = x * mul;
  return true;
}

bool parse_errno(const std::string& s, int* e) {
  static const std::pair<const char*, int> names[] = {{"EIO", EIO},       {"ENOSPC", ENOSPC}, {"EROFS", EROFS},
                                                      {"ENOMEM", ENOMEM}, {"EINVAL", EINVAL}, {"EAGAIN", EAGAIN}};
  for (auto& [n, v] : names)
    if (s == n) return *e = v, true;
  uint64_t v;
  if (!parse_u64(s, &v) || v == 0 || v > 4095) return false;
  *e = int(v);
  return true;
}

// The keys each layer takes; parse_dev_layers refuses others.
const std::vector<std::string>& keys_of(const std::string& name) {
  static const std::vector<std::string> faults{"op", "errno", "action", "every", "prob", "seed", "limit",
                                               "lo", "hi", "us", "tear"};
  static const std::vector<std::string> partition{"start", "length"};
  static const std::vector<std::string> record{"log"};
  return name == "faults" ? faults : name == "partition" ? partition : record;
}

std::string arg_of(const dev_layer_spec& s, const std::string& key) {
  for (auto& [k, v] : s.args)
    if (k == key) return v;
  return {};
}

bool has_arg(const dev_layer_spec& s, const std::string& key) {
  for (auto& kv : s.args)
    if (kv.first == key) return true;
  return false;
}

// The rule of a faults spec; "" or the message.
std::string faults_rule(const dev_layer_spec& s, fault_rule* r) {
  auto bad = [&](const std::string& k, const std::string& v) {
    return "device layer 'faults': bad value '" + v + "' for " + k;
  };
  for (auto& [k, v] : s.args) {
    uint64_t n = 0;
    if (k == "op") {
      r->ops = 0;
      std::string l = v + "|";
      for (size_t q = 0, c; (c = l.find('|', q)) != std::string::npos; q = c + 1) {
        std::string op = l.substr(q, c - q);
        if (op == "read") r->ops |= op_bit(io_op::read);
        else if (op == "write") r->ops |= op_bit(io_op::write);
        else if (op == "flush") r->ops |= op_bit(io_op::flush);
        else if (op == "unmap") r->ops |= op_bit(io_op::unmap);
        else if (op == "all") r->ops |= kAllOps;
        else return bad(k, v);
      }
    } else if (k == "errno") {
      if (!parse_errno(v, &r->error)) return bad(k, v);
    } else if (k == "action") {
      if (v == "fail") r->action = fault_action::fail;
      else if (v == "delay") r->action = fault_action::delay;
      else if (v == "tear") r->action = fault_action::tear;
      else if (v == "short") r->action = fault_action::shortw;
      else if (v == "drop") r->action = fault_action::drop;
      else return bad(k, v);
    } else if (k == "prob") {
      char* end = nullptr;
      r->probability = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end || r->probability < 0 || r->probability > 1) return bad(k, v);
    } else if (!parse_u64(v, &n)) {
      return bad(k, v);
    } else if (k == "every") {
      r->every_nth = n;
    } else if (k == "seed") {
      r->seed = n;
    } else if (k == "limit") {
      r->limit = n;
    } else if (k == "lo") {
      r->lo = n;
    } else if (k == "hi") {
      r->hi = n;
    } else if (k == "us") {
      r->delay_ns = n * 1000;
      if (!has_arg(s, "action")) r->action = fault_action::delay;
    } else if (k == "tear") {
      r->tear_bytes = n;
      if (!has_arg(s, "action")) r->action = fault_action::tear;
    }
  }
  return {};
}

}  // namespace

const std::vector<std::string>& dev_layer_names() {
  static const std::vector<std::string> names{"faults", "partition", "record"};
  return names;
}

std::string parse_dev_layers(const std::string& list, std::vector<dev_layer_spec>* out) {
  out->clear();
  std::string l = list;
  for (auto& c : l)
    if (c == '+') c = ',';
  l += ",";
  for (size_t q = 0, c; (c = l.find(',', q)) != std::string::npos; q = c + 1) {
    std::string text = l.substr(q, c - q);
    if (text.empty()) continue;
    dev_layer_spec s;
    s.text = text;
    std::string parts = text + ":";
    bool first = true;
    for (size_t p = 0, e; (e = parts.find(':', p)) != std::string::npos; p = e + 1) {
      std::string part = parts.substr(p, e - p);
      if (first) {
        s.name = part;
        first = false;
        auto& known = dev_layer_names();
        if (std::find(known.begin(), known.end(), s.name) == known.end()) {
          std::string names;
          for (auto& n : known) names += (names.empty() ? "" : ", ") + n;
          return "unknown device layer '" + s.name + "' (known: " + names + ")";
        }
        continue;
      }
      size_t eq = part.find('=');
      if (eq == std::string::npos || eq == 0)
        return "device layer '" + s.name + "': '" + part + "' is not KEY=VALUE";
      std::string k = part.substr(0, eq), v = part.substr(eq + 1);
      auto& keys = keys_of(s.name);
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
        std::string names;
        for (auto& n : keys) names += (names.empty() ? "" : ", ") + n;
        return "device layer '" + s.name + "': unknown argument '" + k + "' (known: " + names + ")";
      }
      s.args.emplace_back(k, v);
    }
    if (s.name == "record" && arg_of(s, "log").empty()) return "device layer 'record' needs log=PATH";
    if (s.name == "partition") {
      uint64_t v;
      if (!parse_u64(arg_of(s, "start"), &v)) return "device layer 'partition' needs start=BYTES";
      if (has_arg(s, "length") && !parse_u64(arg_of(s, "length"), &v))
        return "device layer 'partition': bad value '" + arg_of(s, "length") + "' for length";
    }
    if (s.name == "faults") {
      fault_rule r;
      if (std::string e = faults_rule(s, &r); !e.empty()) return e;
    }
    out->push_back(std::move(s));
  }
  return {};
}

dev_stack::~dev_stack() {
  while (!layers_.empty()) layers_.pop_back();  // top first: each layer waits for its requests below
  backend_.reset();
}

std::unique_ptr<device> dev_stack::build(const dev_layer_spec& s, device* below, std::string* err) {
  std::unique_ptr<device> d;
  if (s.name == "faults") {
    fault_rule r;
    if (std::string e = faults_rule(s, &r); !e.empty()) return *err = e, nullptr;
    auto f = make_faults(below);
    if (f && !s.args.empty()) f->add_rule(r);
    d = std::move(f);
  } else if (s.name == "partition") {
    uint64_t start = 0, length = 0;
    (void)parse_u64(arg_of(s, "start"), &start);
    if (has_arg(s, "length")) (void)parse_u64(arg_of(s, "length"), &length);
    else length = start <= below->size() ? below->size() - start : 0;
    d = make_partition(below, start, length);
    if (!d) return *err = "device layer '" + s.text + "': the window does not fit " + below->name() + " (" +
                          std::to_string(below->size()) + " bytes) or is not sector-aligned",
                  nullptr;
  } else if (s.name == "record") {
    int e = 0;
    d = make_record(below, arg_of(s, "log"), &e);
    if (!d) return *err = "device layer '" + s.text + "': cannot create the log: " + std::strerror(e ? e : EIO), nullptr;
  }
  if (!d) *err = "device layer '" + s.text + "' could not be built";
  return d;
}

std::string dev_stack::push(const std::vector<dev_layer_spec>& specs) {
  for (const dev_layer_spec& s : specs) {
    std::string err;
    auto d = build(s, top(), &err);
    if (!d) return err;
    layers_.push_back(std::move(d));
  }
  return {};
}

std::string dev_stack::build_over(size_t keep, const std::vector<dev_layer_spec>& specs,
                                  std::vector<std::unique_ptr<device>>* built) const {
  keep = std::min(keep, layers_.size());
  built->clear();
  for (const dev_layer_spec& s : specs) {
    device* below = !built->empty() ? built->back().get() : keep ? layers_[keep - 1].get() : backend_.get();
    std::string err;
    auto d = build(s, below, &err);
    if (!d) {
      while (!built->empty()) built->pop_back();  // top first, as the destructor does
      return err;
    }
    built->push_back(std::move(d));
  }
  return {};
}

void dev_stack::replace(size_t keep, std::vector<std::unique_ptr<device>> built,
                        std::vector<std::unique_ptr<device>>* old) {
  keep = std::min(keep, layers_.size());
  for (size_t i = keep; i < layers_.size(); i++) old->push_back(std::move(layers_[i]));
  layers_.resize(keep);
  for (auto& d : built) layers_.push_back(std::move(d));
}

std::vector<device*> dev_stack::members() const {
  std::vector<device*> v{backend_.get()};
  for (auto& l : layers_) v.push_back(l.get());
  return v;
}

}  // namespace vnopfs::dev

// layer_args.cpp: NAME:KEY=VALUE parsing and the call-picking rule of the acting layers.
#include "vnops/layers/layer_args.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace vnopfs {

namespace {

bool parse_u64(const std::string& s, uint64_t* v) {
  if (s.empty() || s[0] == '-') return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long x = std::strtoull(s.c_str(), &end, 10);
  if (errno || *end) return false;
  *v = x;
  return true;
}

std::string bad(const std::string& key, const std::string& v, const char* want) {
  return "argument '" + key + "': bad value '" + v + "' (" + want + ")";
}

// The vnode a call is about: its first vnode argument, or nullptr (strategy, bwrite).
const vnode* first_vnode(void* ap) {
  const vnodeop_desc* d = *static_cast<const vnodeop_desc* const*>(ap);
  if (d->vdesc_vp_offsets[0] == VDESC_NO_OFFSET) return nullptr;
  return *reinterpret_cast<vnode* const*>(static_cast<const char*>(ap) + d->vdesc_vp_offsets[0]);
}

}  // namespace

bool layer_args::parse(const std::string& spec, layer_args* out, std::string* err) {
  size_t colon = spec.find(':');
  out->name = spec.substr(0, colon);
  out->kv.clear();
  while (colon != std::string::npos) {
    size_t next = spec.find(':', colon + 1);
    std::string item = spec.substr(colon + 1, next == std::string::npos ? std::string::npos : next - colon - 1);
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      *err = "layer '" + out->name + "': argument '" + item + "' is not KEY=VALUE";
      return false;
    }
    out->kv[item.substr(0, eq)] = item.substr(eq + 1);
    colon = next;
  }
  return true;
}

bool layer_args::take(const std::string& key, std::string* value) {
  auto it = kv.find(key);
  if (it == kv.end()) return false;
  *value = it->second;
  kv.erase(it);
  return true;
}

std::string layer_args::leftover(const char* known) const {
  if (kv.empty()) return {};
  return "layer '" + name + "': unknown argument '" + kv.begin()->first + "' (known: " + known + ")";
}

bool parse_errno(const std::string& s, int* err) {
  static const std::pair<const char*, int> names[] = {
      {"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EROFS", EROFS}, {"EACCES", EACCES}, {"EPERM", EPERM},
      {"ENOENT", ENOENT}, {"EEXIST", EEXIST}, {"ENOMEM", ENOMEM}, {"EDQUOT", EDQUOT}, {"EFBIG", EFBIG},
      {"EINTR", EINTR}, {"EAGAIN", EAGAIN}, {"EBUSY", EBUSY}, {"ENOTSUP", ENOTSUP}, {"ENOTEMPTY", ENOTEMPTY},
      {"ENAMETOOLONG", ENAMETOOLONG}, {"ESTALE", ESTALE}, {"EINVAL", EINVAL}, {"ENODATA", ENODATA},
      {"ERANGE", ERANGE}, {"EMLINK", EMLINK}, {"ENOTDIR", ENOTDIR}, {"EISDIR", EISDIR}, {"EXDEV", EXDEV},
  };
  for (const auto& [n, v] : names) {
    if (s == n) { *err = v; return true; }
  }
  uint64_t v;
  if (parse_u64(s, &v) && v > 0 && v < 4096) {
    *err = static_cast<int>(v);
    return true;
  }
  return false;
}

bool layer_rule::configure(layer_args* a, std::string* err) {
  std::string v;
  if (a->take("op", &v) && v != "*") {
    ops_.assign(VNOP_COUNT, false);
    explicit_ops_ = true;
    size_t p = 0;
    while (p <= v.size()) {
      size_t slash = v.find('/', p);
      std::string n = v.substr(p, slash == std::string::npos ? std::string::npos : slash - p);
      const vnodeop_desc* d = vnop_desc_by_name(n);
      if (!d) {
        *err = bad("op", n, "a VNOP name from vnop.def, e.g. write, read, lookup, fsync");
        return false;
      }
      ops_[static_cast<size_t>(d->vdesc_offset)] = true;
      if (slash == std::string::npos) break;
      p = slash + 1;
    }
  }
  if (a->take("ino", &v)) {
    if (!parse_u64(v, &ino_)) { *err = bad("ino", v, "a number"); return false; }
    any_ino_ = false;
  }
  if (a->take("path", &v)) {
    if (v.empty() || v[0] != '/') { *err = bad("path", v, "an absolute path inside the mount"); return false; }
    while (v.size() > 1 && v.back() == '/') v.pop_back();
    path_ = v;
  }
  if (a->take("every", &v) && (!parse_u64(v, &every_) || every_ == 0)) { *err = bad("every", v, ">= 1"); return false; }
  if (a->take("after", &v) && !parse_u64(v, &after_)) { *err = bad("after", v, ">= 0"); return false; }
  if (a->take("count", &v) && !parse_u64(v, &count_)) { *err = bad("count", v, ">= 0"); return false; }
  if (a->take("prob", &v)) {
    char* end = nullptr;
    prob_ = std::strtod(v.c_str(), &end);
    if (v.empty() || *end || !(prob_ >= 0.0 && prob_ <= 1.0)) { *err = bad("prob", v, "0 to 1"); return false; }
  }
  if (a->take("seed", &v) && !parse_u64(v, &seed_)) { *err = bad("seed", v, "a number"); return false; }
  rng_.seed(seed_);
  return true;
}

bool layer_rule::exclude_ops(std::initializer_list<const vnodeop_desc*> ds, std::string* err) {
  for (const vnodeop_desc* d : ds) {
    size_t i = static_cast<size_t>(d->vdesc_offset);
    if (explicit_ops_ && ops_[i]) {
      *err = "argument 'op': this layer cannot act on '" + std::string(d->vdesc_name) + "'";
      return false;
    }
    ops_[i] = false;
  }
  return true;
}

void layer_rule::note_lookup(const vnop_lookup_args* ap) {
  const vnode* dvp = ap->a_dvp;
  const vnode* vp = *ap->a_vpp;
  if (!vp || vp == dvp) return;
  std::lock_guard g(mu_);
  std::string parent;
  if (dvp->v_flag & VROOT) {
    parent = "";
  } else {
    auto it = paths_.find(dvp->v_id);
    if (it == paths_.end()) return;
    parent = it->second;
  }
  std::string p = parent + "/" + std::string(ap->a_cnp->name());
  // Only prefixes of the path we look for are remembered: the map stays as small as the path is deep.
  if (path_ == p || (path_.size() > p.size() && path_.compare(0, p.size(), p) == 0 && path_[p.size()] == '/'))
    paths_[vp->v_id] = p;
}

bool layer_rule::match(void* ap) {
  const vnodeop_desc* d = *static_cast<const vnodeop_desc* const*>(ap);
  if (!ops_[static_cast<size_t>(d->vdesc_offset)]) return false;
  const vnode* vp = first_vnode(ap);
  if (!any_ino_ && (!vp || vp->v_id != ino_)) return false;
  std::lock_guard g(mu_);
  if (!path_.empty()) {
    if (!vp) return false;
    bool root = (vp->v_flag & VROOT) && path_ == "/";
    auto it = paths_.find(vp->v_id);
    if (!root && (it == paths_.end() || it->second != path_)) return false;
  }
  uint64_t n = ++seen_;
  if (n <= after_ || (n - after_) % every_ != 0 || fired_ >= count_) return false;
  if (prob_ < 1.0 && std::uniform_real_distribution<double>(0.0, 1.0)(rng_) >= prob_) return false;
  fired_++;
  return true;
}

std::string layer_rule::describe() const {
  std::string ops;
  for (int i = 0; i < VNOP_COUNT; i++) {
    if (ops_[static_cast<size_t>(i)]) ops += (ops.empty() ? "" : "/") + std::string(vnop_descs[i]->vdesc_name);
  }
  if (ops.size() > 60) ops = "*";
  std::string s = "op=" + ops;
  if (!any_ino_) s += " ino=" + std::to_string(ino_);
  if (!path_.empty()) s += " path=" + path_;
  s += " every=" + std::to_string(every_) + " after=" + std::to_string(after_);
  if (count_ != UINT64_MAX) s += " count=" + std::to_string(count_);
  if (prob_ < 1.0) s += " prob=" + std::to_string(prob_) + " seed=" + std::to_string(seed_);
  return s;
}

rule_layer::rule_layer(const char* name, const vnop_table* below) : name_(name) {
  self_.owner = this;
  vnop_layer_build_generic(&self_.table, name, below, &rule_layer::call);
}

int rule_layer::call(void* ap) {
  const vnop_table* running = vnop_running_table();
  rule_layer* self = reinterpret_cast<const owned_table*>(running)->owner;
  if (self->rule_.match(ap)) {
    if (int err = self->picked(ap); err >= 0) return err;
  }
  int err = vnop_call_below(running, ap);
  const vnodeop_desc* d = *static_cast<const vnodeop_desc* const*>(ap);
  if (err == 0 && d == &vnop_lookup_desc && self->rule_.wants_lookups())
    self->rule_.note_lookup(static_cast<const vnop_lookup_args*>(ap));
  return err;
}

}  // namespace vnopfs

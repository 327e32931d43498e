// faults.cpp: the faults layer. Returns a chosen errno from the VNOPs its rule picks (layer_args.h: op, ino,
// path, every, after, count, prob, seed) without calling the table below: the call fails as if the
// filesystem had refused it, before anything changed. For studying how the frontend and the applications
// above it take each error: `-o layers=faults:op=write:errno=ENOSPC:every=100`.
//
// Not for strategy, bwrite, inactive and reclaim: those have no caller to take an error (a buf's error
// travels through biodone; reclaim must not fail). Device errors belong to the `faults` device layer.
#include <atomic>

#include "vnops/layers/layer.h"
#include "vnops/layers/layer_args.h"

namespace vnopfs {
namespace {

class faults_layer final : public layer {
 public:
  faults_layer(const vnop_table* below, int err) : err_(err) {
    self_.owner = this;
    vnop_layer_build_generic(&self_.table, "faults", below, &faults_layer::call);
  }
  const vnop_table* table() const override { return &self_.table; }
  const char* name() const override { return "faults"; }
  layer_rule& rule() { return rule_; }

 private:
  struct owned_table {  // the table first: the running table's address is this struct's
    vnop_table table;
    faults_layer* owner;
  };
  static int call(void* ap) {
    const vnop_table* running = vnop_running_table();
    faults_layer* self = reinterpret_cast<const owned_table*>(running)->owner;
    if (self->rule_.match(ap)) return self->err_;
    int err = vnop_call_below(running, ap);
    const vnodeop_desc* d = *static_cast<const vnodeop_desc* const*>(ap);
    if (err == 0 && d == &vnop_lookup_desc && self->rule_.wants_lookups())
      self->rule_.note_lookup(static_cast<const vnop_lookup_args*>(ap));
    return err;
  }
  owned_table self_{};
  int err_;
  layer_rule rule_;
};

}  // namespace

std::unique_ptr<layer> make_faults_layer(const vnop_table* below, layer_args* args, std::string* err) {
  std::string v = "EIO";
  args->take("errno", &v);
  int e;
  if (!parse_errno(v, &e)) {
    *err = "layer 'faults': argument 'errno': unknown errno '" + v + "' (a name such as EIO, ENOSPC, or a number)";
    return nullptr;
  }
  auto l = std::make_unique<faults_layer>(below, e);
  if (!l->rule().configure(args, err) ||
      !l->rule().exclude_ops({&vnop_strategy_desc, &vnop_bwrite_desc, &vnop_inactive_desc, &vnop_reclaim_desc},
                             err)) {
    *err = "layer 'faults': " + *err;
    return nullptr;
  }
  if (std::string e2 = args->leftover("errno, op, ino, path, every, after, count, prob, seed"); !e2.empty()) {
    *err = e2;
    return nullptr;
  }
  return l;
}

}  // namespace vnopfs

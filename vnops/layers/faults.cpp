// faults.cpp: the faults layer. Returns a chosen errno from the VNOPs its rule picks (layer_args.h: op, ino,
// path, every, after, count, prob, seed) without calling the table below: the call fails as if the
// filesystem had refused it, before anything changed. For studying how the frontend and the applications
// above it take each error: `-o layers=faults:op=write:errno=ENOSPC:every=100`.
//
// Not for strategy, bwrite, inactive and reclaim: those have no caller to take an error (a buf's error
// travels through biodone; reclaim must not fail). Device errors belong to the `faults` device layer.
#include "vnops/layers/layer.h"
#include "vnops/layers/layer_args.h"

namespace vnopfs {
namespace {

class faults_layer final : public rule_layer {
 public:
  faults_layer(const vnop_table* below, int err) : rule_layer("faults", below), err_(err) {}

 private:
  int picked(void*) override { return err_; }
  int err_;
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

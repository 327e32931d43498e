// delay.cpp: the delay layer. Adds a latency to the VNOPs its rule picks (layer_args.h), before passing the
// call down: to study what the buffer cache hides (delay `strategy` and see which requests wait) and what
// it does not (delay `lookup` or `fsync`). `-o layers=delay:op=strategy:us=200:dist=exp:seed=7`.
//   us=N          the delay in microseconds (fixed), the mean (exp), or half the upper bound (uniform)
//   dist=fixed|uniform|exp   the distribution (default fixed); draws use the rule's seed
// The delay is a sleep on the calling thread, with no lock of the layer held; a delayed strategy delays the
// thread that starts the I/O (the cache's flusher, or a writer doing its own push).
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include "vnops/layers/layer.h"
#include "vnops/layers/layer_args.h"

namespace vnopfs {
namespace {

enum class dist { fixed, uniform, exp };

class delay_layer final : public rule_layer {
 public:
  delay_layer(const vnop_table* below, uint64_t us, dist d, uint64_t seed)
      : rule_layer("delay", below), us_(us), dist_(d), rng_(seed) {}

 private:
  std::chrono::microseconds draw() {
    if (dist_ == dist::fixed) return std::chrono::microseconds(us_);
    std::lock_guard g(mu_);
    double x = dist_ == dist::uniform ? std::uniform_real_distribution<double>(0.0, 2.0 * double(us_))(rng_)
                                      : std::exponential_distribution<double>(1.0 / double(us_ ? us_ : 1))(rng_);
    return std::chrono::microseconds(static_cast<int64_t>(x));
  }
  int picked(void*) override {
    std::this_thread::sleep_for(draw());
    return -1;  // then down as usual
  }
  uint64_t us_;
  dist dist_;
  std::mutex mu_;
  std::mt19937_64 rng_;  // [mu_]
};

}  // namespace

std::unique_ptr<layer> make_delay_layer(const vnop_table* below, layer_args* args, std::string* err) {
  std::string v;
  uint64_t us = 100;
  if (args->take("us", &v)) {
    char* end = nullptr;
    us = std::strtoull(v.c_str(), &end, 10);
    if (v.empty() || *end || v[0] == '-' || us > 10'000'000) {
      *err = "layer 'delay': argument 'us': bad value '" + v + "' (microseconds, 0 to 10000000)";
      return nullptr;
    }
  }
  dist d = dist::fixed;
  if (args->take("dist", &v)) {
    if (v == "fixed") d = dist::fixed;
    else if (v == "uniform") d = dist::uniform;
    else if (v == "exp") d = dist::exp;
    else {
      *err = "layer 'delay': argument 'dist': bad value '" + v + "' (fixed, uniform or exp)";
      return nullptr;
    }
  }
  std::string seed = "1";
  if (args->kv.count("seed")) seed = args->kv["seed"];  // the rule takes it too: same draws for both
  auto l = std::make_unique<delay_layer>(below, us, d, std::strtoull(seed.c_str(), nullptr, 10));
  if (!l->rule().configure(args, err)) {
    *err = "layer 'delay': " + *err;
    return nullptr;
  }
  if (std::string e = args->leftover("us, dist, op, ino, path, every, after, count, prob, seed"); !e.empty()) {
    *err = e;
    return nullptr;
  }
  return l;
}

}  // namespace vnopfs

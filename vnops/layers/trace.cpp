// trace.cpp: one log line per VNOP passing through: op, vnode id, result, microseconds. For watching the
// path a request takes (put it above and below another layer to see what that layer changes).
#include <chrono>
#include <cstdio>
#include <cstring>

#include "vnops/layers/layer.h"

namespace vnopfs {
namespace {

class trace_layer final : public layer {
 public:
  explicit trace_layer(const vnop_table* below) {
    vnop_layer_build_generic(&table_, "trace", below, &trace_layer::trace);
  }
  const vnop_table* table() const override { return &table_; }
  const char* name() const override { return "trace"; }

 private:
  static int trace(void* ap) {
    const vnop_table* running = vnop_running_table();
    const vnodeop_desc* d = *static_cast<const vnodeop_desc* const*>(ap);
    // strategy/bwrite carry a buf, not a vnode: they are traced by op only (the layer knows no buf).
    uint64_t id = 0;
    if (d->vdesc_vp_offsets[0] != VDESC_NO_OFFSET) {
      const vnode* vp = *reinterpret_cast<vnode* const*>(static_cast<const char*>(ap) + d->vdesc_vp_offsets[0]);
      if (vp) id = vp->v_id;
    }
    auto t0 = std::chrono::steady_clock::now();
    int err = vnop_call_below(running, ap);
    long us = static_cast<long>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
    std::fprintf(stderr, "vnopfs: trace: VNOP_%s vp=%llu -> %d%s%s (%ld us)\n", d->vdesc_name,
                 static_cast<unsigned long long>(id), err, err ? " " : "", err ? std::strerror(err) : "", us);
    return err;
  }
  vnop_table table_;
};

}  // namespace

std::unique_ptr<layer> make_trace_layer(const vnop_table* below) { return std::make_unique<trace_layer>(below); }

}  // namespace vnopfs

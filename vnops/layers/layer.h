// layer.h: stackable VNOP tables by name (docs/design.md, "Layers").
//
// A layer is a vnop_table built over another table: it overrides a few ops and bypasses the rest
// (vnop_layer_build), or wraps every op (vnop_layer_build_generic). Layers stack in any order over any
// filesystem table; the vnode stays the same, only v_op changes. The daemon builds a stack from a list of
// names ("stats,sync") with make_layer_stack; the stack owns its layers and must outlive every vnode that
// uses its top table (mount to unmount).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vnopfs/vnops.h"

namespace vnopfs {

class layer {
 public:
  virtual ~layer() = default;
  virtual const vnop_table* table() const = 0;
  virtual const char* name() const = 0;
};

// The known layers: "stats" (counts and latency per op), "trace" (one log line per op), "sync" (every
// write IO_SYNC), "nocache" (every read and write IO_NOCACHE: the data does not stay in the cache),
// "readonly" (EROFS from every mutating op), "faults" (a chosen errno from the ops a rule picks), "delay"
// (a latency added to the ops a rule picks). faults and delay take arguments (layer_args.h).
const std::vector<std::string>& layer_names();

// Builds one layer over `below` from its spec, NAME[:KEY=VALUE]... (layer_args.h). An unknown name, an
// argument the layer does not take or a bad value: nullptr and *err = a message naming it.
std::unique_ptr<layer> make_layer(const std::string& spec, const vnop_table* below, std::string* err);

// A stack of layers, bottom first. top() is the table vnodes should get (below itself when empty).
class layer_stack {
 public:
  explicit layer_stack(const vnop_table* bottom) : bottom_(bottom) {}
  // Pushes `name` on top. false and *err on an unknown name.
  bool push(const std::string& name, std::string* err);
  // Pushes a comma-separated list, left = lowest.
  bool push_list(const std::string& names, std::string* err);
  const vnop_table* top() const { return layers_.empty() ? bottom_ : layers_.back()->table(); }
  const std::vector<std::unique_ptr<layer>>& layers() const { return layers_; }
  // The first layer with this name from the top, or nullptr.
  layer* find(const std::string& name) const;

 private:
  const vnop_table* bottom_;
  std::vector<std::unique_ptr<layer>> layers_;
};

}  // namespace vnopfs

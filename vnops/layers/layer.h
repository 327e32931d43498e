// layer.h: the built-in layers by name, layer modules loaded from shared objects, and stacks of layers
// (docs/design.md, "Layers"). What a layer is and promises: include/vnopfs/layer.h.
//
// The daemon builds a stack from a list of specs ("stats,/abs/path/mine.so:k=v,sync") with
// layer_stack::push_list; the stack owns its layers (and the modules they came from) and must outlive every
// vnode that uses its top table (mount to unmount).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vnopfs/layer.h"
#include "vnopfs/vnops.h"

namespace vnopfs {

// The known layers: "stats" (counts and latency per op), "trace" (one log line per op), "sync" (every
// write IO_SYNC), "nocache" (every read and write IO_NOCACHE: the data does not stay in the cache),
// "readonly" (EROFS from every mutating op), "faults" (a chosen errno from the ops a rule picks), "delay"
// (a latency added to the ops a rule picks). faults and delay take arguments (layer_args.h).
const std::vector<std::string>& layer_names();

// A spec's name names a shared object (a layer module) rather than a built-in layer: it holds a '/' or
// ends in ".so". The daemon makes such a path absolute before it changes directory.
bool is_layer_module_path(const std::string& name);

// Builds one layer over `below` from its spec, NAME[:KEY=VALUE]... (layer_args.h), NAME a built-in name
// or a module's path (module.cpp). An unknown name, an argument the layer does not take, a bad value, a
// module that cannot be loaded or was built for another ABI: nullptr and *err = a message naming it.
std::unique_ptr<layer> make_layer(const std::string& spec, const vnop_table* below, std::string* err);

// Loads the layer module at `path` (dlopen RTLD_NOW | RTLD_LOCAL), checks its ABI version and builds its
// layer over `below` with args. The returned layer holds the module open until it is destroyed.
std::unique_ptr<layer> load_layer_module(const std::string& path, const vnop_table* below, layer_args* args,
                                         std::string* err);

// A stack of layers, bottom first. top() is the table vnodes should get (below itself when empty).
class layer_stack {
 public:
  explicit layer_stack(const vnop_table* bottom) : bottom_(bottom) {}
  ~layer_stack();  // top first: a layer is destroyed before the one it stands on
  // Pushes `spec` on top. false and *err on an unknown name or a bad argument.
  bool push(const std::string& spec, std::string* err);
  // Pushes a comma-separated list, left = lowest.
  bool push_list(const std::string& specs, std::string* err);
  const vnop_table* top() const { return layers_.empty() ? bottom_ : layers_.back()->table(); }
  const std::vector<std::unique_ptr<layer>>& layers() const { return layers_; }
  // The first layer with this name from the top, or nullptr.
  layer* find(const std::string& name) const;

 private:
  const vnop_table* bottom_;
  std::vector<std::unique_ptr<layer>> layers_;
};

}  // namespace vnopfs

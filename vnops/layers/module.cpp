// module.cpp: layers loaded from shared objects (-o layers=/path/mylayer.so), the contract in
// include/vnopfs/layer.h: dlopen, the entry point, the ABI check, then the module's builder.
#include <dlfcn.h>

#include <exception>

#include "vnops/layers/layer.h"

namespace vnopfs {
namespace {

struct dl_close {
  void operator()(void* h) const { ::dlclose(h); }
};
using dl_handle = std::unique_ptr<void, dl_close>;

// The module's layer, and the open module under it: the layer's code (its destructor, its slots) lives in
// the module, so the handle is closed only once the layer is gone.
class module_layer final : public layer {
 public:
  module_layer(dl_handle h, std::unique_ptr<layer> l) : handle_(std::move(h)), layer_(std::move(l)) {}
  const vnop_table* table() const override { return layer_->table(); }
  const char* name() const override { return layer_->name(); }

 private:
  dl_handle handle_;  // declared first: destroyed after layer_
  std::unique_ptr<layer> layer_;
};

}  // namespace

std::unique_ptr<layer> load_layer_module(const std::string& path, const vnop_table* below, layer_args* args,
                                         std::string* err) {
  const std::string what = "layer module '" + path + "'";
  // RTLD_NOW: a symbol the daemon does not export fails here, named, not at the first VNOP. RTLD_LOCAL: two
  // modules' own symbols never meet.
  dl_handle h(::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (!h) {
    const char* e = ::dlerror();
    *err = what + ": cannot load it: " + (e ? e : "dlopen failed");
    return nullptr;
  }
  auto entry = reinterpret_cast<const layer_module* (*)()>(::dlsym(h.get(), VNOPFS_LAYER_ENTRY));
  if (!entry) {
    *err = what + ": no " VNOPFS_LAYER_ENTRY "() in it (not a vnopfs layer module: see VNOPFS_LAYER_MODULE in vnopfs/layer.h)";
    return nullptr;
  }
  const layer_module* m = entry();
  if (!m) {
    *err = what + ": " VNOPFS_LAYER_ENTRY "() returned no module";
    return nullptr;
  }
  // Nothing but abi_version is read before this check: the rest of the struct may be laid out otherwise.
  if (m->abi_version != VNOPFS_LAYER_ABI_VERSION) {
    *err = what + " was built for layer ABI version " + std::to_string(m->abi_version) + ", this vnopfs has " +
           std::to_string(VNOPFS_LAYER_ABI_VERSION) + ": rebuild it against this vnopfs's headers";
    return nullptr;
  }
  if (!m->build) {
    *err = what + ": its module has no builder";
    return nullptr;
  }
  std::string berr;
  std::unique_ptr<layer> l;
  try {
    l = m->build(below, args, &berr);
  } catch (const std::exception& e) {
    berr = std::string("its builder threw: ") + e.what();
  } catch (...) {
    berr = "its builder threw";
  }
  if (!l) {
    *err = what + " (" + (m->name ? m->name : "?") + "): " + (berr.empty() ? "its builder refused" : berr);
    return nullptr;
  }
  return std::make_unique<module_layer>(std::move(h), std::move(l));
}

}  // namespace vnopfs

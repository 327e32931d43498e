// module_fixture.cpp: the layer modules module_test.cpp loads, one per FIXTURE value (meson builds each as
// its own shared_module):
//   good       "adder": VNOP_GETATTR adds add=N (default 1) to va_size; every other op bypasses
//   badabi     the entry point claims the next ABI version
//   noentry    a shared object without the entry point
//   undefined  needs a function the daemon does not have: dlopen(RTLD_NOW) fails naming it
#include "vnopfs/layer.h"

using namespace vnopfs;

#if defined(FIXTURE_GOOD)
namespace {
class adder final : public table_layer {
 public:
  adder(const vnop_table* below, off_t add) : add_(add) { build("adder", below, {getattr}); }

 private:
  static int getattr(vnop_getattr_args* ap) {
    int err = call_below(ap);
    if (err == 0) ap->a_vap->va_size += running<adder>()->add_;
    return err;
  }
  off_t add_;
};

std::unique_ptr<layer> make(const vnop_table* below, layer_args* args, std::string* err) {
  std::string v = "1";
  args->take("add", &v);
  if (std::string e = args->leftover("add"); !e.empty()) {
    *err = e;
    return nullptr;
  }
  return std::make_unique<adder>(below, std::stoll(v));
}
}  // namespace
VNOPFS_LAYER_MODULE("adder", make)

#elif defined(FIXTURE_BADABI)
extern "C" const layer_module* vnopfs_layer_module_v1() {
  static const layer_module m{VNOPFS_LAYER_ABI_VERSION + 1, "future", nullptr};
  return &m;
}

#elif defined(FIXTURE_NOENTRY)
extern "C" int not_a_layer() { return 1; }

#elif defined(FIXTURE_UNDEFINED)
extern "C" int vnopfs_no_such_function();
extern "C" const layer_module* vnopfs_layer_module_v1() {
  static const layer_module m{static_cast<uint32_t>(vnopfs_no_such_function()), "broken", nullptr};
  return &m;
}
#endif

// bytecount.cpp: an example layer module: counts the bytes VNOP_READ and VNOP_WRITE move, per file, and
// prints one line per file to the daemon's log at unmount. Every other op bypasses to the table below.
//   g++ -std=c++20 -shared -fPIC $(pkg-config --cflags vnopfs) bytecount.cpp -o bytecount.so
//   vnopfs IMAGE MNT -o layers=$PWD/bytecount.so+stats,log=/tmp/vnopfs.log
#include <array>
#include <cstdio>
#include <map>
#include <mutex>

#include <vnopfs/layer.h>

using namespace vnopfs;

namespace {

class bytecount final : public table_layer {
 public:
  explicit bytecount(const vnop_table* below) { build("bytecount", below, {read, write}); }
  ~bytecount() override {  // at unmount: nothing runs through the layer any more
    for (auto& [ino, c] : bytes_)
      std::fprintf(stderr, "bytecount: ino %llu read %llu written %llu\n", (unsigned long long)ino,
                   (unsigned long long)c[0], (unsigned long long)c[1]);
  }

 private:
  template <class A>
  static int count(A* ap, int rw) {
    size_t before = ap->a_uio->resid();
    int err = call_below(ap);  // the uio moved by what was read or written, also when it failed part-way
    bytecount* self = running<bytecount>();
    std::lock_guard g(self->mu_);  // a leaf: never held across the call below
    self->bytes_[ap->a_vp->v_id][rw] += before - ap->a_uio->resid();
    return err;
  }
  static int read(vnop_read_args* ap) { return count(ap, 0); }
  static int write(vnop_write_args* ap) { return count(ap, 1); }
  std::mutex mu_;
  std::map<uint64_t, std::array<unsigned long long, 2>> bytes_;  // inode -> {read, written}
};

std::unique_ptr<layer> build(const vnop_table* below, layer_args* args, std::string* err) {
  if (*err = args->leftover("none"); !err->empty()) return nullptr;
  return std::make_unique<bytecount>(below);
}

}  // namespace

VNOPFS_LAYER_MODULE("bytecount", build)

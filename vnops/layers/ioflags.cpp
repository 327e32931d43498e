// ioflags.cpp: layers that change only the ioflag of reads and writes, the smallest useful overrides:
//   sync     every VNOP_WRITE gets IO_SYNC (the whole path becomes write-through and stable per call)
//   nocache  every VNOP_READ and VNOP_WRITE gets IO_NOCACHE (data does not stay in the buffer cache)
// Each overrides one or two ops; everything else bypasses to the table below.
#include "vnops/layers/layer.h"

namespace vnopfs {
namespace {

class sync_layer final : public layer {
 public:
  explicit sync_layer(const vnop_table* below) { vnop_layer_build(&table_, "sync", below, {write}); }
  const vnop_table* table() const override { return &table_; }
  const char* name() const override { return "sync"; }

 private:
  static int write(vnop_write_args* ap) {
    ap->a_ioflag |= IO_SYNC;
    return vnop_call_below(vnop_running_table(), ap);
  }
  vnop_table table_;
};

class nocache_layer final : public layer {
 public:
  explicit nocache_layer(const vnop_table* below) {
    vnop_layer_build(&table_, "nocache", below, {read, write});
  }
  const vnop_table* table() const override { return &table_; }
  const char* name() const override { return "nocache"; }

 private:
  static int read(vnop_read_args* ap) {
    ap->a_ioflag |= IO_NOCACHE;
    return vnop_call_below(vnop_running_table(), ap);
  }
  static int write(vnop_write_args* ap) {
    ap->a_ioflag |= IO_NOCACHE;
    return vnop_call_below(vnop_running_table(), ap);
  }
  vnop_table table_;
};

}  // namespace

std::unique_ptr<layer> make_sync_layer(const vnop_table* below) { return std::make_unique<sync_layer>(below); }
std::unique_ptr<layer> make_nocache_layer(const vnop_table* below) {
  return std::make_unique<nocache_layer>(below);
}

}  // namespace vnopfs

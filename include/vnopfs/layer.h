// layer.h: the layer API: what a VNOP layer is, built into vnopfs (vnops/layers/) or written by a user and
// loaded at mount time from a shared object (`-o layers=/path/mylayer.so+stats`, docs/experiments.md).
//
// A layer is a vnop_table built over the table below it (vnops.h): it overrides a few ops and bypasses the
// rest (vnop_layer_build), or runs one function for every op (vnop_layer_build_generic). The vnode stays
// the same; only v_op points at the top of the stack. A stack is built at mount from `-o layers=`, bottom
// (nearest the filesystem) first.
//
// ---- The contract a layer keeps
// - Ownership and lifetime: the builder returns the layer; the daemon owns it from then on. It lives from
//   mount to unmount: it is destroyed after the filesystem is unmounted (no vnode uses its table and no op
//   runs any more), in reverse order of the stack, and a loaded shared object is closed only after its
//   layer is destroyed. The table table() returns must stay at the same address for the layer's life (the
//   vnodes point at it): keep it inside the layer object, which is never copied or moved.
//   A stack replaced while mounted (vnopfs-ctl MOUNTPOINT layers SPEC) gets no new request, but it is kept,
//   idle, until the unmount too: an op of the mount's own threads (the flusher) may still be running on it.
// - Threads: any op may run on any number of threads at once (the FUSE workers, and the flusher: the
//   VNOP_STRATEGY and VNOP_BWRITE of file data reach the layers too; the device vnode's metadata I/O does
//   not). A layer's own state is guarded by its own atomics or mutexes.
// - Locks: when a layer's slot runs, the caller holds the vnode locks the op's entry column in vnop.def
//   names, and nothing else of the filesystem's (no inode or group lock, no cache mutex; the buf of
//   VNOP_STRATEGY and VNOP_BWRITE is busy, owned by the I/O); the layer returns with them in the same
//   state. A layer's own mutexes are leaves: never held across vnop_call_below (the
//   op below may block on I/O, or call back into the stack for another vnode).
// - Errors: an op returns 0 or one errno (vnop.def lists which each op returns, and what has changed when
//   it fails); nothing throws across a VNOP or out of the builder. A layer that fails an op itself (EROFS,
//   an injected EIO) does so before calling below, so nothing has changed.
// - Ops a layer does not handle go to the table below, unchanged: vnop_layer_build fills every slot the
//   layer does not name with vnop_bypass; a generic slot function calls vnop_call_below for every op it
//   does not answer. A layer may change an op's arguments in place before passing it down (the `sync`
//   layer adds IO_SYNC to a_ioflag), never a_desc. A layer that answers an op without calling below takes
//   over the whole of that op's contract (vnodes handed back with an iocount, uio advanced by the bytes
//   moved...).
// - Output: stderr is the daemon's log (-o log=, or the terminal with -f).
//
// ---- Loadable layers and the ABI
// A shared object is a layer module when it exports `vnopfs_layer_module_v1` (VNOPFS_LAYER_MODULE below
// defines it). vnopfs loads it with dlopen(RTLD_NOW | RTLD_LOCAL), calls the entry point, refuses the
// module when its abi_version is not this header's VNOPFS_LAYER_ABI_VERSION (one line naming the file,
// its version and ours), then calls build(below, args) for each place the module is named in the stack.
//
// The module links against the daemon itself: the vnopfs executable exports its symbols (meson
// `export_dynamic`), and the module's undefined symbols (vnop_layer_build, vnop_call_below, uiomove,
// layer_args::take ...) resolve against the running daemon at dlopen. So there is one VFS (one running
// table per thread, one vnode hash), the layer links with no library of its own, and it cannot be loaded
// by anything but vnopfs. (A libvnopfs-layer.so would have to carry the whole VFS core and the
// thread-local running table, and the daemon would have to link against it too, to keep one copy.)
//
// The interface is C++: tables, vnodes, uios, std::string and std::unique_ptr cross the boundary as they
// are. Build the module with the same compiler family and C++ library as vnopfs (g++ and libstdc++ with
// its default _GLIBCXX_USE_CXX11_ABI), with -std=c++20, against the headers installed with this vnopfs
// (`pkg-config --cflags vnopfs`). Keep the module's own functions and globals in an anonymous namespace (or
// static): a non-local name the daemon also defines would bind to the daemon's.
//
// Bump rule: VNOPFS_LAYER_ABI_VERSION goes up by one with any change a compiled layer would not survive:
// vnop.def (an op added, removed or moved, an argument added, removed, retyped or reordered); the layout of
// vnop_table, vnodeop_desc, the args structs, vnode, vnode_lock, uio, vfs_context, componentname,
// vnode_attr, dirent_entry, or of layer, table_layer, layer_args and layer_module below; the signature or
// meaning of a function these headers declare; an ioflag or flag value. Adding a new function is no bump.
// The entry point's name changes (…_v2) only if layer_module's first field had to move.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>

#include "vnopfs/vnops.h"

#define VNOPFS_LAYER_ABI_VERSION 1
#define VNOPFS_LAYER_ENTRY "vnopfs_layer_module_v1"

namespace vnopfs {

class layer {
 public:
  layer() = default;
  layer(const layer&) = delete;
  layer& operator=(const layer&) = delete;
  virtual ~layer() = default;
  // The table vnodes (or the layer above) call: the same address for the layer's whole life.
  virtual const vnop_table* table() const = 0;
  virtual const char* name() const = 0;
};

// A layer that keeps its table inside itself, so that a slot function (a plain function, no `this`) finds
// its layer object with running<L>(). Build the table once, in the derived constructor.
class table_layer : public layer {
 public:
  const vnop_table* table() const final { return &t_.table; }
  const char* name() const final { return t_.table.name; }

 protected:
  table_layer() = default;
  // As vnop_layer_build / vnop_layer_build_generic (vnops.h). name must outlive the layer (a literal).
  void build(const char* name, const vnop_table* below, std::initializer_list<vnop_entry> entries) {
    vnop_layer_build(&t_.table, name, below, entries);
    t_.self = this;
  }
  void build_generic(const char* name, const vnop_table* below, vnop_fn every) {
    vnop_layer_build_generic(&t_.table, name, below, every);
    t_.self = this;
  }
  // Only from inside one of this layer's slot functions: the layer whose table is running.
  template <class L>
  static L* running() {
    return static_cast<L*>(reinterpret_cast<const holder*>(vnop_running_table())->self);
  }
  // Passes the op to the table below, unchanged (or as the slot function has changed it).
  template <class A>
  static int call_below(A* ap) {
    return vnop_call_below(vnop_running_table(), ap);
  }

 private:
  struct holder {  // the table first: the running table's address is the holder's
    vnop_table table;
    table_layer* self = nullptr;
  };
  holder t_;
};

// A layer's spec on -o layers=, NAME[:KEY=VALUE]... (NAME: a built-in name or a module's path), and its
// arguments in order. parse fails on a missing '=' or an empty key. A builder take()s the keys it knows
// and refuses the rest with leftover().
struct layer_args {
  std::string name;
  std::map<std::string, std::string> kv;
  static bool parse(const std::string& spec, layer_args* out, std::string* err);
  // Takes a key out (so unknown ones can be reported at the end); false when absent.
  bool take(const std::string& key, std::string* value);
  // "" or "layer 'NAME': unknown argument 'K' (known: ...)".
  std::string leftover(const char* known) const;
};

// An errno by name ("EIO", "ENOSPC", ...) or number; false when unknown.
bool parse_errno(const std::string& s, int* err);

// What a layer module's entry point returns: a static object that lives as long as the module is loaded.
struct layer_module {
  uint32_t abi_version;  // VNOPFS_LAYER_ABI_VERSION of the headers the module was built with: stays first
  const char* name;      // for messages and the log
  // Builds one layer over `below` with args (args->name: the module's path). nullptr and *err = one line
  // naming the problem on a bad argument; no exception escapes.
  std::unique_ptr<layer> (*build)(const vnop_table* below, layer_args* args, std::string* err);
};

}  // namespace vnopfs

// The entry point every layer module exports (VNOPFS_LAYER_ENTRY).
extern "C" const vnopfs::layer_module* vnopfs_layer_module_v1();

// Defines the entry point: VNOPFS_LAYER_MODULE("bytecount", build) in exactly one source of the module.
#define VNOPFS_LAYER_MODULE(NAME, BUILD)                                                          \
  extern "C" __attribute__((visibility("default"))) const vnopfs::layer_module*                  \
  vnopfs_layer_module_v1() {                                                                     \
    static const vnopfs::layer_module m{VNOPFS_LAYER_ABI_VERSION, NAME, BUILD};                  \
    return &m;                                                                                   \
  }

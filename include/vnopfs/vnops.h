// vnops.h: VNOP descriptors, argument structs, tables, defaults, the generic bypass and the VNOP_* calls.
//
// Everything here is generated from vnop.def. A table is a vector of slots indexed by the descriptor's
// offset (vdesc_offset); build one with vnop_table_build from (descriptor, function) entries. Slots left
// empty get the op's named default: err_<op> (ENOTSUP) or nop_<op> (0). A layer is a table built over
// another (its `below`): ops it does not name get vnop_bypass, which forwards the args struct unchanged to
// the same slot of the table below. The vnode stays the same; only the table changes.
//
// VNOP_X(args...) fills vnop_x_args on the stack and calls the slot of the first vnode argument's table (for
// strategy/bwrite, buf_vnode(bp)'s table). With lock checking on (meson -Dlockcheck=true, the default) it
// checks every vnode argument against the op's entry and exit columns; a mismatch calls the lock-violation
// handler (default: print and abort; tests install their own).
//
// Contracts: every op's arguments, locks on entry and exit, errno for each failure, what has changed when
// it fails and who owns what are written beside the op in vnopfs/vnop.def (its header states the rules all
// ops share). A layer passes them through; a table keeps them.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <initializer_list>
#include <string_view>

#include "vnopfs/context.h"
#include "vnopfs/uio.h"
#include "vnopfs/vnode.h"

namespace vnopfs {

using daddr64_t = int64_t;
struct buf;
vnode* buf_vnode(const buf* bp);  // defined by the buffer cache (cache/buf.cpp)

// A name in a directory: not NUL-terminated in general; cn_namelen is the length.
struct componentname {
  const char* cn_nameptr;
  size_t cn_namelen;
  std::string_view name() const { return {cn_nameptr, cn_namelen}; }
};

// Attributes for getattr/setattr/create. va_active says which fields a setattr sets (or a create supplies);
// getattr fills all of them. Times are struct timespec; VA_ATIME_NOW/VA_MTIME_NOW ask for "now" with the
// UTIME_NOW permission rule.
enum : uint64_t {
  VA_MODE = 1u << 0, VA_UID = 1u << 1, VA_GID = 1u << 2, VA_SIZE = 1u << 3,
  VA_ATIME = 1u << 4, VA_MTIME = 1u << 5, VA_CTIME = 1u << 6,
  VA_ATIME_NOW = 1u << 7, VA_MTIME_NOW = 1u << 8, VA_RDEV = 1u << 9,
  VA_KILL_SUIDGID = 1u << 10,  // a setattr that must also clear suid/sgid (FUSE killpriv)
};
struct vnode_attr {
  uint64_t va_active = 0;
  vtype va_type = vtype::VNON;
  mode_t va_mode = 0;   // permission and type bits (S_IFMT included on getattr and create)
  uid_t va_uid = 0;
  gid_t va_gid = 0;
  off_t va_size = 0;
  uint32_t va_nlink = 0;
  dev_t va_rdev = 0;
  uint64_t va_fileid = 0;     // inode number
  uint64_t va_blocks = 0;     // 512-byte units allocated
  uint32_t va_blksize = 0;    // preferred I/O size
  uint32_t va_gen = 0;
  uint32_t va_flags = 0;      // inode flags
  struct timespec va_atime {};
  struct timespec va_mtime {};
  struct timespec va_ctime {};
};

// readdir: one entry at a time.
struct dirent_entry {
  std::string_view name;
  uint64_t ino;
  uint8_t d_type;         // DT_* from <dirent.h>
  uint64_t next_cookie;   // the cookie that resumes after this entry
};
using readdir_filler = int (*)(void* fctx, const dirent_entry& e);

// blockmap flags
enum : int { VNODE_READ = 0x1, VNODE_WRITE = 0x2 };
// xattr options
enum : int { XATTR_OPT_CREATE = 0x1, XATTR_OPT_REPLACE = 0x2 };
// rename flags: Linux's values
enum : uint32_t { VNOP_RENAME_NOREPLACE = 1u << 0, VNOP_RENAME_EXCHANGE = 1u << 1, VNOP_RENAME_WHITEOUT = 1u << 2 };
// ioctl commands
enum : unsigned long { FIOSEEKDATA = 1, FIOSEEKHOLE = 2 };  // a_data: off_t* in (start) / out (result)
// chattr(1) flags, Linux's FS_*_FL bits (ext2's i_flags); a_data: uint32_t* out / in. SETFLAGS: EPERM unless
// owner or root, and unless root for immutable/append-only; bits a filesystem cannot change are ignored.
enum : unsigned long { FIOGETFLAGS = 3, FIOSETFLAGS = 4 };

// Lock states of the protocol (vnop.def columns).
enum class lockstate : uint8_t { U, S, E, L, X };

struct vnodeop_desc {
  int vdesc_offset;            // slot index
  const char* vdesc_name;      // "write"
  int (*vdesc_default)(void*); // err_<op> or nop_<op>
  const int* vdesc_vp_offsets; // byte offsets of vnode* arguments, ends with -1 (VDESC_NO_OFFSET)
  const lockstate* vdesc_lock_entry;  // one per vnode argument
  const lockstate* vdesc_lock_exit;
  int vdesc_buf_offset;        // byte offset of the buf* (strategy, bwrite) or -1
};
constexpr int VDESC_NO_OFFSET = -1;

// The vnode arguments of an op's args struct ap, in the descriptor's order (nullptr where the caller passed
// none), at most max of them into out. Returns how many.
inline size_t vnop_arg_vnodes(const vnodeop_desc& d, const void* ap, vnode** out, size_t max) {
  size_t n = 0;
  for (const int* off = d.vdesc_vp_offsets; *off != VDESC_NO_OFFSET && n < max; off++)
    out[n++] = *reinterpret_cast<vnode* const*>(static_cast<const char*>(ap) + *off);
  return n;
}

using vnop_fn = int (*)(void* args);

// ---- generated: slot indices
enum vnop_index : int {
#define VNOP_BEGIN(name, NAME, def) VNOP_IDX_##NAME,
#include "vnopfs/vnop.def"
  VNOP_COUNT
};

// ---- generated: args structs and descriptors
#define VNOP_BEGIN(name, NAME, def) \
  extern const vnodeop_desc vnop_##name##_desc; \
  struct vnop_##name##_args { const vnodeop_desc* a_desc;
#define VNOP_VP(t, f, in, out) t f;
#define VNOP_BUF(t, f) t f;
#define VNOP_ARG(t, f) t f;
#define VNOP_END(name, NAME) };
#include "vnopfs/vnop.def"

// Maps an args struct type to its descriptor: vnop_desc_of<vnop_write_args>() == vnop_write_desc.
template <class A> const vnodeop_desc& vnop_desc_of();
#define VNOP_BEGIN(name, NAME, def) \
  template <> inline const vnodeop_desc& vnop_desc_of<vnop_##name##_args>() { return vnop_##name##_desc; }
#include "vnopfs/vnop.def"

// ---- generated: the named defaults err_<op> (ENOTSUP) and nop_<op> (0)
#define VNOP_BEGIN(name, NAME, def) \
  int err_##name(vnop_##name##_args* ap); \
  int nop_##name(vnop_##name##_args* ap);
#include "vnopfs/vnop.def"

// The descriptor list, indexed by slot.
extern const vnodeop_desc* const vnop_descs[VNOP_COUNT];
const vnodeop_desc* vnop_desc_by_name(std::string_view name);

// One (descriptor, function) pair of a table definition. Built from a typed function so the descriptor
// cannot be mismatched: vnop_entry(ext2_write) knows it is the write slot from vnop_write_args.
struct vnop_entry {
  const vnodeop_desc* desc;
  vnop_fn fn;
  template <class A>
  vnop_entry(int (*f)(A*)) : desc(&vnop_desc_of<A>()), fn(reinterpret_cast<vnop_fn>(f)) {}  // NOLINT
};

struct vnop_table {
  const char* name = "";
  const vnop_table* below = nullptr;  // for layers: the table bypassed ops go to
  std::array<vnop_fn, VNOP_COUNT> slots{};
  std::array<bool, VNOP_COUNT> defined{};  // false: default (table) or bypass (layer)

  int call(int slot, void* ap) const { return slots[static_cast<size_t>(slot)](ap); }
};

// Builds a filesystem table: entries fill their slots, the rest get defaults. A descriptor named twice is a
// programming error (asserts).
void vnop_table_build(vnop_table* t, const char* name, std::initializer_list<vnop_entry> entries);
// Builds a layer over `below`: entries fill their slots, the rest get vnop_bypass. The layer's own
// functions reach the table below with vnop_call_below(layer, ap).
void vnop_layer_build(vnop_table* t, const char* name, const vnop_table* below,
                      std::initializer_list<vnop_entry> entries);

// The generic bypass (4.4BSD null_bypass, minus the vnode swapping: our layers stack tables, not vnodes):
// forwards the args struct unchanged to the same slot of the table below the one running now.
int vnop_bypass(void* ap);
// What a layer's own function calls to pass an op down: the slot of layer->below for ap's descriptor.
int vnop_call_below(const vnop_table* layer, void* ap);
// Builds a layer whose every slot is the same generic function (a stats or trace layer): it finds its own
// table with vnop_running_table() and the op from the args' descriptor (*(const vnodeop_desc**)ap).
void vnop_layer_build_generic(vnop_table* t, const char* name, const vnop_table* below, vnop_fn every);
// The table whose slot is running on this thread now (set by dispatch, bypass and vnop_call_below).
const vnop_table* vnop_running_table();

// ---- dispatch and lock checking
// Calls the slot of vp->v_op. The table running now is kept in a thread-local (saved and restored around
// every call), which is how vnop_bypass knows which table is "below".
int vnop_dispatch(const vnode* vp, void* ap);

using lock_violation_handler = void (*)(const vnodeop_desc& d, int vp_index, lockstate want, const char* when);
// Installs a handler (nullptr restores the default, which prints the op, argument and state and aborts).
void vnop_set_lock_violation_handler(lock_violation_handler h);
// Checks the vnode arguments of ap against d's entry (when = "entry") or exit column.
void vnop_check_locks(const vnodeop_desc& d, const void* ap, bool entry);

// ---- generated: VNOP_<NAME>(args...) calls
namespace detail {
template <class A>
inline int vnop_invoke(A& a) {
  const vnodeop_desc& d = *a.a_desc;
  const vnode* vp;
  if constexpr (requires { a.a_bp; }) {
    vp = buf_vnode(a.a_bp);  // strategy, bwrite
  } else {
    vp = *reinterpret_cast<vnode* const*>(reinterpret_cast<const char*>(&a) + d.vdesc_vp_offsets[0]);
  }
#if VNOPFS_LOCKCHECK
  vnop_check_locks(d, &a, true);
  int err = vnop_dispatch(vp, &a);
  vnop_check_locks(d, &a, false);
  return err;
#else
  return vnop_dispatch(vp, &a);
#endif
}
}  // namespace detail

#define VNOP_BEGIN(name, NAME, def)                                 \
  template <class... T>                                             \
  inline int VNOP_##NAME(T... args) {                               \
    vnop_##name##_args a{&vnop_##name##_desc, args...};             \
    return detail::vnop_invoke(a);                                  \
  }
#include "vnopfs/vnop.def"

}  // namespace vnopfs

// vnop.cpp: descriptors, named defaults, table building, the generic bypass and dispatch, all generated
// from vnop.def so the list cannot drift from the args structs.
#include <cassert>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>

#include "vnopfs/vnops.h"

namespace vnopfs {

// ---- named defaults
#define VNOP_BEGIN(name, NAME, def) \
  int err_##name(vnop_##name##_args*) { return ENOTSUP; } \
  int nop_##name(vnop_##name##_args*) { return 0; }
#include "vnopfs/vnop.def"

namespace {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"

// Per op, a struct holding its vnode-argument offsets, lock columns and buf offset.
#define VNOP_BEGIN(name, NAME, def) \
  struct name##_meta { using A = vnop_##name##_args; static constexpr int vp_offsets[] = {
#define VNOP_VP(t, f, in, out) static_cast<int>(offsetof(A, f)),
#define VNOP_END(name, NAME) VDESC_NO_OFFSET}; };
#include "vnopfs/vnop.def"

#define VNOP_BEGIN(name, NAME, def) struct name##_entry { static constexpr lockstate v[] = {
#define VNOP_VP(t, f, in, out) lockstate::in,
#define VNOP_END(name, NAME) lockstate::X}; };
#include "vnopfs/vnop.def"

#define VNOP_BEGIN(name, NAME, def) struct name##_exit { static constexpr lockstate v[] = {
#define VNOP_VP(t, f, in, out) lockstate::out,
#define VNOP_END(name, NAME) lockstate::X}; };
#include "vnopfs/vnop.def"

#define VNOP_BEGIN(name, NAME, def) struct name##_buf { using A = vnop_##name##_args; static constexpr int off = -1
#define VNOP_BUF(t, f) + 1 + static_cast<int>(offsetof(A, f))
#define VNOP_END(name, NAME) ; };
#include "vnopfs/vnop.def"

#pragma GCC diagnostic pop
}  // namespace

// ---- descriptors
#define VNOP_BEGIN(name, NAME, def)                                                           \
  const vnodeop_desc vnop_##name##_desc = {                                                   \
      VNOP_IDX_##NAME, #name, reinterpret_cast<int (*)(void*)>(&def##_##name),               \
      name##_meta::vp_offsets, name##_entry::v, name##_exit::v, name##_buf::off};
#include "vnopfs/vnop.def"

const vnodeop_desc* const vnop_descs[VNOP_COUNT] = {
#define VNOP_BEGIN(name, NAME, def) &vnop_##name##_desc,
#include "vnopfs/vnop.def"
};

const vnodeop_desc* vnop_desc_by_name(std::string_view name) {
  for (const vnodeop_desc* d : vnop_descs) {
    if (name == d->vdesc_name) return d;
  }
  return nullptr;
}

// ---- tables
static void fill_entries(vnop_table* t, std::initializer_list<vnop_entry> entries) {
  for (const vnop_entry& e : entries) {
    size_t i = static_cast<size_t>(e.desc->vdesc_offset);
    assert(!t->defined[i] && "a VNOP named twice in one table");
    t->slots[i] = e.fn;
    t->defined[i] = true;
  }
}

void vnop_table_build(vnop_table* t, const char* name, std::initializer_list<vnop_entry> entries) {
  t->name = name;
  t->below = nullptr;
  t->defined.fill(false);
  fill_entries(t, entries);
  for (int i = 0; i < VNOP_COUNT; ++i) {
    if (!t->defined[static_cast<size_t>(i)]) t->slots[static_cast<size_t>(i)] = vnop_descs[i]->vdesc_default;
  }
}

void vnop_layer_build(vnop_table* t, const char* name, const vnop_table* below,
                      std::initializer_list<vnop_entry> entries) {
  assert(below != nullptr);
  t->name = name;
  t->below = below;
  t->defined.fill(false);
  fill_entries(t, entries);
  for (int i = 0; i < VNOP_COUNT; ++i) {
    if (!t->defined[static_cast<size_t>(i)]) t->slots[static_cast<size_t>(i)] = &vnop_bypass;
  }
}

// ---- dispatch
namespace {
thread_local const vnop_table* tls_running = nullptr;

struct running_scope {
  const vnop_table* saved;
  explicit running_scope(const vnop_table* t) : saved(tls_running) { tls_running = t; }
  ~running_scope() { tls_running = saved; }
};

int desc_slot(const void* ap) { return (*static_cast<const vnodeop_desc* const*>(ap))->vdesc_offset; }
}  // namespace

int vnop_dispatch(const vnode* vp, void* ap) {
  // Atomic: vfs_set_vnops may change v_op while a thread of the mount's own (the flusher) dispatches.
  const vnop_table* t = __atomic_load_n(&vp->v_op, __ATOMIC_ACQUIRE);
  running_scope s(t);
  return t->call(desc_slot(ap), ap);
}

int vnop_call_below(const vnop_table* layer, void* ap) {
  const vnop_table* below = layer->below;
  assert(below != nullptr);
  running_scope s(below);
  return below->call(desc_slot(ap), ap);
}

const vnop_table* vnop_running_table() { return tls_running; }

void vnop_layer_build_generic(vnop_table* t, const char* name, const vnop_table* below, vnop_fn every) {
  assert(below != nullptr);
  t->name = name;
  t->below = below;
  t->slots.fill(every);
  t->defined.fill(true);
}

int vnop_bypass(void* ap) {
  assert(tls_running != nullptr && tls_running->below != nullptr);
  return vnop_call_below(tls_running, ap);
}

// ---- lock checking
namespace {
void default_violation(const vnodeop_desc& d, int vp_index, lockstate want, const char* when) {
  static const char* names[] = {"U", "S", "E", "L", "X"};
  std::fprintf(stderr, "vnopfs: lock violation: VNOP_%s vnode argument %d must be %s on %s\n", d.vdesc_name,
               vp_index, names[static_cast<int>(want)], when);
  std::abort();
}
std::atomic<lock_violation_handler> violation_handler{&default_violation};

bool state_ok(const vnode* vp, lockstate want) {
  switch (want) {
    case lockstate::X: return true;
    case lockstate::U: return !vp->v_lock.held_exclusive();
    case lockstate::S: return vp->v_lock.held_shared() && !vp->v_lock.held_exclusive();
    case lockstate::E: return vp->v_lock.held_exclusive();
    case lockstate::L: return vp->v_lock.held();
  }
  return true;
}
}  // namespace

void vnop_set_lock_violation_handler(lock_violation_handler h) {
  violation_handler.store(h ? h : &default_violation);
}

void vnop_check_locks(const vnodeop_desc& d, const void* ap, bool entry) {
  const lockstate* col = entry ? d.vdesc_lock_entry : d.vdesc_lock_exit;
  for (int i = 0; d.vdesc_vp_offsets[i] != VDESC_NO_OFFSET; ++i) {
    const vnode* vp = *reinterpret_cast<vnode* const*>(static_cast<const char*>(ap) + d.vdesc_vp_offsets[i]);
    if (vp == nullptr) continue;  // optional vnode arguments (rename's a_tvp)
    if (!state_ok(vp, col[i])) violation_handler.load()(d, i, col[i], entry ? "entry" : "exit");
  }
}

}  // namespace vnopfs

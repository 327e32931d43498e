// vnode.cpp: vnode lifecycle. Both reference counts live under the mount's vnode mutex so "last reference
// gone" and "found in the hash" cannot race: a vnode found terminating is waited for, never revived.
#include <sys/stat.h>

#include <cassert>
#include <mutex>
#include <vector>

#include "vnopfs/mount.h"
#include "vnopfs/vnops.h"

namespace vnopfs {

vtype vtype_from_mode(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return vtype::VREG;
    case S_IFDIR: return vtype::VDIR;
    case S_IFBLK: return vtype::VBLK;
    case S_IFCHR: return vtype::VCHR;
    case S_IFLNK: return vtype::VLNK;
    case S_IFSOCK: return vtype::VSOCK;
    case S_IFIFO: return vtype::VFIFO;
    default: return vtype::VNON;
  }
}

const char* vtype_name(vtype t) {
  static const char* names[] = {"VNON", "VREG", "VDIR", "VBLK", "VCHR", "VLNK", "VSOCK", "VFIFO"};
  return names[static_cast<int>(t)];
}

int vnode_create(mount* mp, const vnode_param& p, vnode** vpp) {
  auto* vp = new (std::nothrow) vnode;
  if (vp == nullptr) return ENOMEM;
  vp->v_type = p.type;
  vp->v_flag = p.flags;
  vp->v_mount = mp;
  vp->v_op = p.ops;
  vp->v_data = p.fsnode;
  vp->v_id = p.id;
  vp->v_iocount = 1;
  {
    std::lock_guard g(mp->mnt_vnode_mutex);
    mp->mnt_vnode_count++;
  }
  *vpp = vp;
  return 0;
}

void vnode_get(vnode* vp) {
  std::lock_guard g(vp->v_mount->mnt_vnode_mutex);
  assert(vp->v_iocount + vp->v_usecount > 0 && "vnode_get on an unreferenced vnode");
  vp->v_iocount++;
}

// Runs the end of a vnode's life outside the mutex: inactive (unlinked inodes are freed there), reclaim
// (the filesystem and the cache drop their state), then out of the hash and gone. A vnode held when its
// inactive returns (the cache keeps its failed writes: vnode.h, v_holdcount) is kept idle instead of
// reclaimed: the hold is checked after inactive because inactive's own write-back is what usually fails.
// An idle vnode whose holds went is reclaimed without a second inactive (inactive = false).
static void vnode_terminate(vnode* vp, bool inactive) {
  mount* mp = vp->v_mount;
  if (inactive) {
    vnop_inactive_args ia{&vnop_inactive_desc, vp, const_cast<vfs_context*>(&vfs_context::kernel())};
    (void)vnop_dispatch(vp, &ia);
    bool kept = false;
    {
      std::unique_lock g(mp->mnt_vnode_mutex);
      if (vp->v_lflag & VL_RECYCLE) {
        // The file is gone (its inode may be handed out again): no idle vnode may stay in the hash for it.
        // A hold now is a push's (the flusher's), which needs nothing from this thread.
        while (vp->v_holdcount > 0) mp->mnt_vnode_cv.wait(g);
      } else if (vp->v_holdcount > 0) {
        vp->v_lflag = (vp->v_lflag & ~VL_TERMINATE) | VL_INACTIVE;
        kept = true;
      }
    }
    if (kept) {  // vp may be reclaimed by another thread from here on: only mp is touched
      mp->mnt_vnode_cv.notify_all();  // vfs_hash_get waiters may have it now
      return;
    }
  }
  vnop_reclaim_args ra{&vnop_reclaim_desc, vp, const_cast<vfs_context*>(&vfs_context::kernel())};
  int err = vnop_dispatch(vp, &ra);
  assert(err == 0 && "VNOP_RECLAIM must not fail");
  (void)err;
  {
    std::lock_guard g(mp->mnt_vnode_mutex);
    auto it = mp->mnt_vnodes.find(vp->v_id);
    if (it != mp->mnt_vnodes.end() && it->second == vp) mp->mnt_vnodes.erase(it);
    mp->mnt_vnode_count--;
    vp->v_lflag |= VL_DEAD;
  }
  mp->mnt_vnode_cv.notify_all();
  delete vp;
}

enum class end_of_life { None, Inactive, Reclaim };

// Drops one reference under the mutex and says what the caller must run: inactive (then reclaim unless
// held), reclaim alone (an idle vnode whose holds went), or nothing (references remain, or the vnode is
// idle and still held: a cache pass or a sync took and put a reference of an idle vnode).
static end_of_life vnode_unref(vnode* vp, int32_t vnode::*count) {
  std::lock_guard g(vp->v_mount->mnt_vnode_mutex);
  assert(vp->*count > 0);
  vp->*count -= 1;
  if (vp->v_iocount != 0 || vp->v_usecount != 0 || (vp->v_lflag & VL_TERMINATE)) return end_of_life::None;
  if (vp->v_lflag & VL_INACTIVE) {
    if (vp->v_holdcount > 0) return end_of_life::None;
    vp->v_lflag |= VL_TERMINATE;
    return end_of_life::Reclaim;
  }
  vp->v_lflag |= VL_TERMINATE;
  return end_of_life::Inactive;
}

static void vnode_end(vnode* vp, end_of_life e) {
  if (e != end_of_life::None) vnode_terminate(vp, e == end_of_life::Inactive);
}

void vnode_put(vnode* vp) { vnode_end(vp, vnode_unref(vp, &vnode::v_iocount)); }

void vnode_ref(vnode* vp) {
  std::lock_guard g(vp->v_mount->mnt_vnode_mutex);
  assert(vp->v_iocount > 0 && "vnode_ref needs an iocount");
  vp->v_usecount++;
}

void vnode_rele(vnode* vp) { vnode_end(vp, vnode_unref(vp, &vnode::v_usecount)); }

void vnode_hold(vnode* vp) {
  std::lock_guard g(vp->v_mount->mnt_vnode_mutex);
  vp->v_holdcount++;
}

// Never reclaims here: the cache drops its hold under its mutex or on a completion thread, where a
// VNOP_RECLAIM (which waits for the vnode's writes and may read an inode block) must not run.
void vnode_drop(vnode* vp) {
  mount* mp = vp->v_mount;
  std::lock_guard g(mp->mnt_vnode_mutex);
  assert(vp->v_holdcount > 0);
  // A recycled vnode's terminator waits for the last hold (vnode_terminate).
  if (--vp->v_holdcount == 0 && (vp->v_lflag & VL_RECYCLE)) mp->mnt_vnode_cv.notify_all();
}

void vnode_recycle(vnode* vp) {
  std::lock_guard g(vp->v_mount->mnt_vnode_mutex);
  vp->v_lflag |= VL_RECYCLE;
}

static bool idle_unheld(const vnode* vp) {
  return (vp->v_lflag & VL_INACTIVE) && !(vp->v_lflag & VL_TERMINATE) && vp->v_iocount == 0 &&
         vp->v_usecount == 0 && vp->v_holdcount == 0;
}

void vfs_reclaim_idle(mount* mp) {
  std::vector<vnode*> vps;
  {
    std::lock_guard g(mp->mnt_vnode_mutex);
    for (auto& [id, vp] : mp->mnt_vnodes) {
      if (!idle_unheld(vp)) continue;
      vp->v_lflag |= VL_TERMINATE;  // ours now: vfs_hash_get waits, nobody else terminates it
      vps.push_back(vp);
    }
  }
  for (vnode* vp : vps) vnode_terminate(vp, false);
}

size_t vfs_busy_vnodes(mount* mp) {
  std::lock_guard g(mp->mnt_vnode_mutex);
  size_t n = 0;
  for (auto& [id, vp] : mp->mnt_vnodes) {
    const bool idle = (vp->v_lflag & VL_INACTIVE) && !(vp->v_lflag & VL_TERMINATE) && vp->v_iocount == 0 &&
                      vp->v_usecount == 0;
    if (!idle) n++;
  }
  return n;
}

int vfs_hash_get(mount* mp, uint64_t id, vnode** vpp) {
  std::unique_lock g(mp->mnt_vnode_mutex);
  for (;;) {
    auto it = mp->mnt_vnodes.find(id);
    if (it == mp->mnt_vnodes.end()) return ENOENT;
    vnode* vp = it->second;
    if (vp->v_lflag & VL_TERMINATE) {
      mp->mnt_vnode_cv.wait(g);  // until it is out of the hash
      continue;
    }
    vp->v_iocount++;
    vp->v_lflag &= ~VL_INACTIVE;  // in use again: its next last reference runs VNOP_INACTIVE
    *vpp = vp;
    return 0;
  }
}

int vfs_hash_insert(vnode* vp, vnode** existing) {
  mount* mp = vp->v_mount;
  std::unique_lock g(mp->mnt_vnode_mutex);
  *existing = nullptr;
  for (;;) {
    auto it = mp->mnt_vnodes.find(vp->v_id);
    if (it == mp->mnt_vnodes.end()) {
      // Created on a table vfs_set_vnops has replaced since: it joins the others on the new one.
      for (const vnop_table* old : mp->mnt_vnops_retired)
        if (vp->v_op == old) __atomic_store_n(&vp->v_op, mp->mnt_vnops, __ATOMIC_RELEASE);
      mp->mnt_vnodes.emplace(vp->v_id, vp);
      return 0;
    }
    vnode* other = it->second;
    if (other->v_lflag & VL_TERMINATE) {
      mp->mnt_vnode_cv.wait(g);
      continue;
    }
    other->v_iocount++;
    other->v_lflag &= ~VL_INACTIVE;
    *existing = other;
    return 0;
  }
}

const vnop_table* vfs_vnops(const mount* mp) { return __atomic_load_n(&mp->mnt_vnops, __ATOMIC_ACQUIRE); }

size_t vfs_set_vnops(mount* mp, const vnop_table* t) {
  std::lock_guard g(mp->mnt_vnode_mutex);
  const vnop_table* old = mp->mnt_vnops;
  if (old == t) return 0;
  mp->mnt_vnops_retired.push_back(old);
  __atomic_store_n(&mp->mnt_vnops, t, __ATOMIC_RELEASE);
  size_t n = 0;
  for (auto& [id, vp] : mp->mnt_vnodes) {
    // v_op is read without a lock by vnop_dispatch on the mount's own threads: one atomic store, so each
    // op runs wholly on the old stack or wholly on the new.
    if (vp->v_op != old) continue;
    __atomic_store_n(&vp->v_op, t, __ATOMIC_RELEASE);
    n++;
  }
  return n;
}

void vn_lock_pair(vnode* a, vnode* b) {
  if (a == b || b == nullptr) {
    if (a) a->v_lock.lock();
    return;
  }
  if (a == nullptr) {
    b->v_lock.lock();
    return;
  }
  if (a > b) std::swap(a, b);
  a->v_lock.lock();
  b->v_lock.lock();
}

void vn_unlock_pair(vnode* a, vnode* b) {
  if (a) a->v_lock.unlock();
  if (b && b != a) b->v_lock.unlock();
}

}  // namespace vnopfs

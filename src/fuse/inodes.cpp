// inodes.cpp: FUSE inode numbers and lookup counts (the kernel's references), each entry holding one
// vnode usecount. vnode_rele may run VNOP_INACTIVE/RECLAIM (I/O): it is always called outside mu_.
#include <cassert>
#include <vector>

#include "src/fuse/frontend.h"

namespace vnopfs::fuse {

void inode_table::set_root(vnode* vp) {
  root_id_ = vp->v_id;
  root_ = vp;
  vnode_ref(vp);
}

int inode_table::get(fuse_ino_t ino, vnode** vpp) {
  {
    std::lock_guard g(mu_);
    if (ino == FUSE_ROOT_ID && root_ != nullptr) {
      vnode_get(root_);
      *vpp = root_;
      return 0;
    }
    auto it = map_.find(ino);
    if (it != map_.end()) {
      vnode_get(it->second.vp);
      *vpp = it->second.vp;
      return 0;
    }
  }
  // Forgotten by the kernel (or never looked up in this session): file handles still name it.
  if (ino == 0) return ESTALE;
  int err = VFS_VGET(mp_, to_vid(ino), vpp, vfs_context::kernel());
  if (err == ENOENT || err == EINVAL) err = ESTALE;
  return err;
}

uint32_t inode_table::facts(fuse_ino_t ino) {
  std::lock_guard g(mu_);
  vnode* vp = nullptr;
  if (ino == FUSE_ROOT_ID) {
    vp = root_;
  } else if (auto it = map_.find(ino); it != map_.end()) {
    vp = it->second.vp;
  }
  return vp ? vp->v_facts.load(std::memory_order_acquire) : 0;
}

void inode_table::add_lookup(vnode* vp) {
  fuse_ino_t ino = to_fuse(vp->v_id);
  if (ino == FUSE_ROOT_ID) return;  // pinned for the whole mount
  vnode* old = nullptr;
  {
    std::lock_guard g(mu_);
    auto [it, fresh] = map_.try_emplace(ino, entry{vp, 0, 0});
    if (fresh) {
      vnode_ref(vp);
    } else if (it->second.vp != vp) {
      // The old vnode of this number is being torn down (its entry outlived it only if nothing counted it):
      // cannot happen while the entry holds a usecount, but keep the table consistent anyway.
      old = it->second.vp;
      it->second.vp = vp;
      vnode_ref(vp);
    }
    it->second.nlookup++;
  }
  if (old) vnode_rele(old);
}

void inode_table::drop_if_unused(std::unique_lock<std::mutex>& g,
                                 std::unordered_map<fuse_ino_t, entry>::iterator it) {
  if (it->second.nlookup != 0 || it->second.nopen != 0) return;
  vnode* vp = it->second.vp;
  map_.erase(it);
  g.unlock();
  vnode_rele(vp);
}

void inode_table::forget(fuse_ino_t ino, uint64_t n) {
  if (ino == FUSE_ROOT_ID) return;
  std::unique_lock g(mu_);
  auto it = map_.find(ino);
  if (it == map_.end()) return;
  it->second.nlookup = n >= it->second.nlookup ? 0 : it->second.nlookup - n;
  drop_if_unused(g, it);
}

void inode_table::add_open(vnode* vp) {
  fuse_ino_t ino = to_fuse(vp->v_id);
  if (ino == FUSE_ROOT_ID) return;
  std::lock_guard g(mu_);
  auto [it, fresh] = map_.try_emplace(ino, entry{vp, 0, 0});
  if (fresh) vnode_ref(vp);
  it->second.nopen++;
}

void inode_table::drop_open(fuse_ino_t ino) {
  if (ino == FUSE_ROOT_ID) return;
  std::unique_lock g(mu_);
  auto it = map_.find(ino);
  if (it == map_.end()) return;
  assert(it->second.nopen > 0);
  if (it->second.nopen > 0) it->second.nopen--;
  drop_if_unused(g, it);
}

void inode_table::release_all() {
  std::vector<vnode*> drop;
  {
    std::lock_guard g(mu_);
    for (auto& [ino, e] : map_) drop.push_back(e.vp);
    map_.clear();
    if (root_) drop.push_back(root_);
    root_ = nullptr;
  }
  for (vnode* vp : drop) vnode_rele(vp);
}

size_t inode_table::size() {
  std::lock_guard g(mu_);
  return map_.size();
}

}  // namespace vnopfs::fuse

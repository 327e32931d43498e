// syncpath.cpp: the ext2-sync table (ext2_wpath::sync), the scrupulous driver of the COHERENT seed: every op
// that may change something is followed, before it returns to its caller, by the writes of what it changed,
// waited for: the file data of its regular-file vnodes, their in-core inodes, the metadata blocks it dirtied
// on the device vnode (inode table, bitmaps, indirect blocks, directory blocks, xattr blocks, group
// descriptors and superblock), the inodes freed at a last reference, and then a device flush. It is a table
// over ext2_vnop_table rather than a branch in each op so that the ext2 code stays one, and so that what
// "the op changed" is found the same way for every op: its vnode arguments (vnodeop_desc) and the vnode it
// hands back. Unlike the sync layer (IO_SYNC on data writes only), metadata is covered too, and after a
// create, rename or chmod as much as after a write.
//
// Only the outermost op of a thread writes: an op that reaches another through the table (a vnode_put
// inside remove ending in VNOP_INACTIVE) may hold buffers busy that the flush would wait for; the outer
// op's flush covers the inner one's changes (they are all on the device vnode or on its own vnodes).
#include "vnopfs/cluster.h"
#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

thread_local int tls_depth = 0;

struct depth_scope {
  depth_scope() { tls_depth++; }
  ~depth_scope() { tls_depth--; }
};

// Writes what the op changed (the header comment) and waits; the first error.
int sync_changes(vnode* const* vps, size_t n) {
  mount* mp = vps[0]->v_mount;
  ext2_mount* m = ext2_mount_of(mp);
  if (m == nullptr || !m->m_mounted_rw || m->m_rdonly) return 0;
  int err = 0;
  auto keep = [&err](int e) { if (e && !err) err = e; };
  bool wrote = false, data_unflushed = false;
  for (size_t i = 0; i < n; i++) {  // data before the metadata that points at it
    vnode* vp = vps[i];
    if (vp == nullptr || vp->v_type != vtype::VREG || VTOI(vp) == nullptr || !buf_vnode_isdirty(vp)) continue;
    keep(cluster_push(vp, IO_SYNC));
    keep(buf_flushdirtyblks(vp, MNT_WAIT));
    wrote = data_unflushed = true;
  }
  for (size_t i = 0; i < n; i++) {
    vnode* vp = vps[i];
    ext2_inode_info* ip = vp ? VTOI(vp) : nullptr;
    if (ip == nullptr || (vp->v_flag & VSYSTEM)) continue;
    std::lock_guard g(ip->i_lock);
    if (ip->i_dirty) keep(ext2_iupdate(ip, false));
  }
  if (ext2_pending_frees(m)) {  // its device flush covers the data written above too
    keep(ext2_release_deferred(m));
    wrote = true;
    data_unflushed = false;
  }
  if (buf_vnode_isdirty(m->m_devvp)) {
    // The data is stable before any pointer to it can be (docs/durability.md, rule 7).
    if (data_unflushed) keep(ext2_dev_flush(m));
    keep(ext2_sbupdate(m, false));
    keep(buf_flushdirtyblks(m->m_devvp, MNT_WAIT));
    wrote = true;
  }
  if (wrote) keep(ext2_dev_flush(m));
  return err;
}

template <class A>
int sync_op(A* ap) {
  int err;
  {
    depth_scope d;
    err = vnop_call_below(&ext2_sync_vnop_table, ap);
  }
  if (tls_depth > 0) return err;
  vnode* vps[6];
  size_t n = vnop_arg_vnodes(*ap->a_desc, ap, vps, 5);
  if constexpr (requires { ap->a_vpp; }) {
    if (err == 0 && ap->a_vpp && *ap->a_vpp) vps[n++] = *ap->a_vpp;
  }
  if (n == 0 || vps[0] == nullptr) return err;
  try {
    int serr = sync_changes(vps, n);
    return err ? err : serr;
  } catch (const std::bad_alloc&) {
    return err ? err : ENOMEM;
  }
}

}  // namespace

vnop_table ext2_sync_vnop_table;

void ext2_sync_table_init() {
  // Every op that can change data, metadata or an inode (reads and readdirs: the access time).
  vnop_layer_build(&ext2_sync_vnop_table, "ext2-sync", &ext2_vnop_table, {
      vnop_entry(sync_op<vnop_read_args>),
      vnop_entry(sync_op<vnop_write_args>),
      vnop_entry(sync_op<vnop_setattr_args>),
      vnop_entry(sync_op<vnop_allocate_args>),
      vnop_entry(sync_op<vnop_ioctl_args>),
      vnop_entry(sync_op<vnop_inactive_args>),
      vnop_entry(sync_op<vnop_reclaim_args>),
      vnop_entry(sync_op<vnop_create_args>),
      vnop_entry(sync_op<vnop_mknod_args>),
      vnop_entry(sync_op<vnop_mkdir_args>),
      vnop_entry(sync_op<vnop_symlink_args>),
      vnop_entry(sync_op<vnop_link_args>),
      vnop_entry(sync_op<vnop_remove_args>),
      vnop_entry(sync_op<vnop_rmdir_args>),
      vnop_entry(sync_op<vnop_rename_args>),
      vnop_entry(sync_op<vnop_readdir_args>),
      vnop_entry(sync_op<vnop_setxattr_args>),
      vnop_entry(sync_op<vnop_removexattr_args>),
  });
}

}  // namespace vnopfs::ext2

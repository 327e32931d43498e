// read.cpp: VNOP_READ through cluster_read (holes read as zeros, read-ahead on sequential access), or the
// mover of the mount's write path (ext2-buf: bufpath.cpp, ext2-direct: direct.cpp), and the access time
// under the mount's atime rules.
#include <sys/stat.h>

#include <new>

#include "vnopfs/cluster.h"
#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

// The kernel's atime_needs_update + relatime_need_update, with the mount's flags (FUSE's kernel side
// updates no atime, so noatime/nodiratime/relatime/strictatime are ours): no update on a read-only mount,
// with noatime, with nodiratime on a directory, or for an inode flagged noatime (chattr +A); strictatime
// updates on every access; relatime (the default) only when atime is not newer than mtime or ctime, or a
// day old.
void ext2_touch_atime(ext2_inode_info* ip) {
  ext2_mount* m = ip->i_mnt;
  const uint32_t mf = m->m_mp->mnt_flag;
  if (m->m_rdonly || (mf & MNT_NOATIME)) return;
  std::lock_guard g(ip->i_lock);
  if (ip->i_di.base.i_flags & EXT2_NOATIME_FL) return;
  if ((mf & MNT_NODIRATIME) && S_ISDIR(ext2_i_mode(ip))) return;
  struct timespec now = ext2_now();
  struct timespec at = ext2_get_time(ip, EXT2_IACC);
  if (at.tv_sec == now.tv_sec && at.tv_nsec == now.tv_nsec) return;
  if (!(mf & MNT_STRICTATIME)) {
    struct timespec mt = ext2_get_time(ip, EXT2_IUPD);
    struct timespec ct = ext2_get_time(ip, EXT2_ICHG);
    auto le = [](const timespec& a, const timespec& b) {
      return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec <= b.tv_nsec);
    };
    if (!le(at, mt) && !le(at, ct) && now.tv_sec - at.tv_sec < 24 * 3600) return;
  }
  ext2_set_time_lazy(ip, EXT2_IACC, now);
}

int ext2_vnop_read(vnop_read_args* ap) {
  vnode* vp = ap->a_vp;
  if (vp->v_type == vtype::VDIR) return EISDIR;
  if (vp->v_type != vtype::VREG) return EINVAL;
  uio* u = ap->a_uio;
  if (u->offset() < 0) return EINVAL;
  if (u->resid() == 0) return 0;
  ext2_inode_info* ip = VTOI(vp);
  uint64_t size;
  {
    std::lock_guard g(ip->i_lock);
    size = ext2_i_size(ip);
  }
  if (static_cast<uint64_t>(u->offset()) >= size) return 0;
  try {
    int err;
    switch (ip->i_mnt->m_wpath) {  // ext2.h, ext2_wpath
      case ext2_wpath::buf: err = ext2_buf_read(vp, u, size); break;
      case ext2_wpath::direct: err = ext2_direct_read(vp, u, size); break;
      default: err = cluster_read(vp, u, static_cast<off_t>(size), ap->a_ioflag); break;
    }
    ext2_touch_atime(ip);
    return err;
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
}

}  // namespace vnopfs::ext2

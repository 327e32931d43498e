// ioctl.cpp: the FUSE ioctl op, for chattr/lsattr. Since Linux 5.13 the kernel turns FS_IOC_GETFLAGS /
// FS_IOC_SETFLAGS and FS_IOC_FSGETXATTR / FS_IOC_FSSETXATTR into its fileattr ops; FUSE's fileattr ops open
// the inode themselves and send one FUSE_IOCTL with the sizes filled in (a "restricted" ioctl: the kernel
// copies exactly in_size bytes in and out_size bytes back, no FUSE_IOCTL_RETRY), with FUSE_IOCTL_DIR for a
// directory (served because session.cpp wants FUSE_CAP_IOCTL_DIR). The kernel has already checked
// ownership and CAP_LINUX_IMMUTABLE; VNOP_IOCTL checks again (its contract does not trust the caller).
// Every other command: ENOTTY, as a filesystem without it answers.
#include <linux/fs.h>
#include <sys/ioctl.h>

#include <cstring>

#include "src/fuse/frontend.h"

namespace vnopfs::fuse {

namespace {

// FS_XFLAG_* <-> FS_*_FL for the flags both interfaces name (FS_XFLAG_COMMON as far as ext2 has them).
struct xmap { uint32_t xflag, fl; };
constexpr xmap kXmap[] = {{FS_XFLAG_IMMUTABLE, FS_IMMUTABLE_FL}, {FS_XFLAG_APPEND, FS_APPEND_FL},
                          {FS_XFLAG_SYNC, FS_SYNC_FL},           {FS_XFLAG_NOATIME, FS_NOATIME_FL},
                          {FS_XFLAG_NODUMP, FS_NODUMP_FL}};

uint32_t xflags_of(uint32_t fl) {
  uint32_t x = 0;
  for (const xmap& m : kXmap) if (fl & m.fl) x |= m.xflag;
  return x;
}

int get_flags(vnode* vp, vfs_context& ctx, uint32_t* fl) {
  vn_shared l(vp);
  return VNOP_IOCTL(vp, FIOGETFLAGS, fl, 0, &ctx);
}

int set_flags(vnode* vp, vfs_context& ctx, uint32_t fl) {
  vn_exclusive l(vp);
  return VNOP_IOCTL(vp, FIOSETFLAGS, &fl, 0, &ctx);
}

// A flag change sets the inode's ctime, but the kernel keeps the attributes it cached for attr_timeout
// across a FUSE_IOCTL: stat right after chattr would show the old ctime (generic/277). Attributes only
// (offset -1): no page is touched, nothing waits.
void attrs_changed(frontend& f, fuse_ino_t ino) {
  if (f.se) (void)fuse_lowlevel_notify_inval_inode(f.se, ino, -1, 0);
}

int do_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, const void* in_buf, size_t in_bufsz,
             size_t out_bufsz) {
  frontend& f = fe(req);
  vfs_context ctx = make_context(req, false);
  iocount_ref vp;
  switch (cmd) {
    case FS_IOC_GETFLAGS:
    case FS_IOC32_GETFLAGS: {
      if (out_bufsz < sizeof(uint32_t)) return EINVAL;
      TRY(f.inodes->get(ino, vp.out()));
      uint32_t fl = 0;
      TRY(get_flags(vp.get(), ctx, &fl));
      fuse_reply_ioctl(req, 0, &fl, sizeof fl);
      return 0;
    }
    case FS_IOC_SETFLAGS:
    case FS_IOC32_SETFLAGS: {
      if (in_bufsz < sizeof(uint32_t)) return EINVAL;
      TRY(f.inodes->get(ino, vp.out()));
      uint32_t fl;
      std::memcpy(&fl, in_buf, sizeof fl);
      TRY(set_flags(vp.get(), ctx, fl));
      attrs_changed(f, ino);
      fuse_reply_ioctl(req, 0, nullptr, 0);
      return 0;
    }
    case FS_IOC_FSGETXATTR: {
      if (out_bufsz < sizeof(fsxattr)) return EINVAL;
      TRY(f.inodes->get(ino, vp.out()));
      uint32_t fl = 0;
      TRY(get_flags(vp.get(), ctx, &fl));
      fsxattr fa{};
      fa.fsx_xflags = xflags_of(fl);
      fuse_reply_ioctl(req, 0, &fa, sizeof fa);
      return 0;
    }
    case FS_IOC_FSSETXATTR: {
      if (in_bufsz < sizeof(fsxattr)) return EINVAL;
      fsxattr fa;
      std::memcpy(&fa, in_buf, sizeof fa);
      uint32_t known = 0;
      for (const xmap& m : kXmap) known |= m.xflag;
      // ext2 has no extent size hints, project ids or other xflags: refused, as ext2's fileattr_set does.
      if ((fa.fsx_xflags & ~known) || fa.fsx_extsize || fa.fsx_projid || fa.fsx_cowextsize) return EOPNOTSUPP;
      TRY(f.inodes->get(ino, vp.out()));
      uint32_t fl = 0;
      TRY(get_flags(vp.get(), ctx, &fl));
      for (const xmap& m : kXmap) fl = (fa.fsx_xflags & m.xflag) ? (fl | m.fl) : (fl & ~m.fl);
      TRY(set_flags(vp.get(), ctx, fl));
      attrs_changed(f, ino);
      fuse_reply_ioctl(req, 0, nullptr, 0);
      return 0;
    }
    default:
      return ENOTTY;
  }
}

}  // namespace

void ll_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void*, fuse_file_info*, unsigned,
              const void* in_buf, size_t in_bufsz, size_t out_bufsz) {
  run(req, [&] { return do_ioctl(req, ino, cmd, in_buf, in_bufsz, out_bufsz); });
}

}  // namespace vnopfs::fuse

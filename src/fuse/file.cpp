// file.cpp: open files: open, create, read, write(_buf), flush, release, fsync, fallocate, lseek,
// copy_file_range.
//
// ioflag (as vn_write does): IO_UNIT always; IO_APPEND for O_APPEND unless the kernel owns appends (writeback
// cache) or the write is a page writeback; IO_SYNC for O_SYNC/O_DSYNC (+IO_DSYNC for O_DSYNC alone) and for
// -o sync; IO_NOCACHE for O_DIRECT. Locks: reads hold the vnode shared; writes hold it exclusive (a write
// may extend the file; see docs/fuse.md for why not shared inside EOF); fallocate exclusive.
#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <vector>

#include "src/fuse/frontend.h"
#include "src/fuse/invalidator.h"

namespace vnopfs::fuse {

namespace {

handle* fh_of(const fuse_file_info* fi) { return reinterpret_cast<handle*>(fi->fh); }

int read_ioflag(const frontend&, int flags) {
  int io = 0;
  if (flags & O_DIRECT) io |= IO_NOCACHE;
  return io;
}

int write_ioflag(const frontend& f, int flags, bool writepage) {
  int io = IO_UNIT;
  if ((flags & O_APPEND) && !f.writeback && !writepage) io |= IO_APPEND;
  if ((flags & O_SYNC) == O_SYNC) io |= IO_SYNC;
  else if (flags & O_DSYNC) io |= IO_SYNC | IO_DSYNC;
  if (flags & O_DIRECT) io |= IO_NOCACHE;
  if (f.opts->sync) io |= IO_SYNC;
  return io;
}

// Reply to open/create: the handle and the kernel cache flags for the mode.
void set_open_flags(const frontend& f, fuse_file_info* fi) {
  if (f.direct_io) {
    fi->direct_io = 1;
  } else if (f.mp->mnt_flag & MNT_STRICTATIME) {
    // strictatime: every read must reach us to update atime (FUSE inodes are S_NOATIME; the kernel serves
    // cached pages silently), so each open starts without the pages of the last one.
    fi->keep_cache = 0;
  } else {
    // We are the only way to the image: the kernel's cached pages are never stale, so keep them (the
    // kernel still drops them when it sees the size or mtime change: auto_inval_data).
    fi->keep_cache = 1;
  }
}

int truncate_on_open(vnode* vp, vfs_context& ctx) {
  if (vp->v_type != vtype::VREG) return 0;
  vnode_attr va;
  va.va_active = VA_SIZE;
  va.va_size = 0;
  vn_exclusive l(vp);
  return VNOP_SETATTR(vp, &va, &ctx);
}

int open_handle(fuse_req_t req, vnode* vp, fuse_file_info* fi, vfs_context& ctx) {
  frontend& f = fe(req);
  TRY(VNOP_OPEN(vp, fi->flags, &ctx));
  auto* h = new handle{vp, f.inodes->to_fuse(vp->v_id), fi->flags};
  vnode_attr va;
  if (VNOP_GETATTR(vp, &va, &ctx) == 0) h->size_hint = va.va_size;
  f.inodes->add_open(vp);
  fi->fh = reinterpret_cast<uint64_t>(h);
  set_open_flags(f, fi);
  return 0;
}

void close_handle(fuse_req_t req, fuse_file_info* fi) {
  frontend& f = fe(req);
  handle* h = fh_of(fi);
  if (!h) return;
  vfs_context ctx = make_context(req, false);
  (void)VNOP_CLOSE(h->vp, h->flags, &ctx);  // release's error is invisible to close(2) anyway
  fuse_ino_t ino = h->ino;
  delete h;
  fi->fh = 0;
  f.inodes->drop_open(ino);
}

int do_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  frontend& f = fe(req);
  vfs_context ctx = make_context(req, true);
  iocount_ref vp;
  TRY(f.inodes->get(ino, vp.out()));
  if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY) {
    set_fsetid_from_kernel(f, request_kills_suidgid(FUSE_OPEN, ino), &ctx);
    TRY(truncate_on_open(vp.get(), ctx));
  }
  TRY(open_handle(req, vp.get(), fi, ctx));
  if (fuse_reply_open(req, fi) != 0) close_handle(req, fi);
  return 0;
}

int do_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  frontend& f = fe(req);
  int err = 0;
  if (!name_ok(f, name, &err)) return err;
  vfs_context ctx = make_context(req, true);
  iocount_ref dvp;
  TRY(f.inodes->get(parent, dvp.out()));
  componentname cn{name, std::strlen(name)};
  iocount_ref vp;
  bool created = true;
  {
    vn_exclusive l(dvp.get());
    vnode_attr va;
    va.va_active = VA_MODE;
    va.va_mode = (mode & 07777) | S_IFREG;
    va.va_type = vtype::VREG;
    err = VNOP_CREATE(dvp.get(), &cn, &va, vp.out(), &ctx);
    if (err == EEXIST && !(fi->flags & O_EXCL)) {
      // Created by someone else since the kernel's lookup: open what is there (open(2)'s O_CREAT rule).
      created = false;
      err = VNOP_LOOKUP(dvp.get(), &cn, vp.out(), &ctx);
    }
  }
  if (err) return err;
  if (!created && (fi->flags & O_TRUNC)) {
    set_fsetid_from_kernel(f, request_kills_suidgid(FUSE_CREATE, parent), &ctx);
    TRY(truncate_on_open(vp.get(), ctx));
  }
  fuse_entry_param e;
  TRY(make_entry(req, vp.get(), ctx, &e));
  err = open_handle(req, vp.get(), fi, ctx);
  if (err) {
    f.inodes->forget(e.ino, 1);
    return err;
  }
  if (fuse_reply_create(req, &e, fi) != 0) {
    close_handle(req, fi);
    f.inodes->forget(e.ino, 1);
  }
  return 0;
}

// One read buffer per worker thread: reads are at most max_read (1 MiB) and the reply copies it out.
std::vector<char>& read_buffer(size_t size) {
  thread_local std::vector<char> buf;
  if (buf.size() < size) buf.resize(size);
  return buf;
}

int do_read(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi) {
  frontend& f = fe(req);
  handle* h = fh_of(fi);
  if (!h) return EBADF;
  vfs_context ctx = make_context(req, false);
  auto& buf = read_buffer(size);
  uio u(buf.data(), size, off, UIO_READ, UIO_USERSPACE);
  {
    vn_shared l(h->vp);
    TRY(VNOP_READ(h->vp, &u, read_ioflag(f, h->flags), &ctx));
  }
  fuse_reply_buf(req, buf.data(), size - u.resid());
  return 0;
}

// VNOP_WRITE under the vnode lock ext2 asks for: shared for a write inside EOF (as this handle last saw
// it) without IO_APPEND, exclusive otherwise; ERESTART from a shared attempt (it would extend) means "again,
// exclusive" and moved nothing.
int write_locked(handle* h, uio* u, int ioflag, vfs_context& ctx) {
  vnode* vp = h->vp;
  off_t end = u->offset() + static_cast<off_t>(u->resid());
  int err = 0;
  if (!(ioflag & IO_APPEND) && end <= h->size_hint.load(std::memory_order_relaxed)) {
    vn_shared l(vp);
    err = VNOP_WRITE(vp, u, ioflag, &ctx);
    if (err != ERESTART) return err;
  }
  {
    vn_exclusive l(vp);
    err = VNOP_WRITE(vp, u, ioflag, &ctx);
  }
  off_t now = u->offset();
  off_t hint = h->size_hint.load(std::memory_order_relaxed);
  while (now > hint && !h->size_hint.compare_exchange_weak(hint, now, std::memory_order_relaxed)) {}
  return err;
}

// Writes the uio through VNOP_WRITE and replies the bytes written.
int write_uio(fuse_req_t req, handle* h, uio* u, int ioflag, vfs_context& ctx) {
  size_t want = u->resid();
  off_t start = u->offset();
  // A writer without CAP_FSETID makes ext2 clear set-ID bits, but the kernel keeps the mode it cached for
  // attr_timeout across a write (only size and times are marked stale): stat right after the write would
  // still show them. The filesystem says when it cleared them (vfs_context::setid_cleared).
  ctx.setid_cleared = false;
  int err = write_locked(h, u, ioflag, ctx);
  size_t done = want - u->resid();
  if (err && done == 0) return err;
  frontend& f = fe(req);
  if (ctx.setid_cleared && f.se)
    fuse_lowlevel_notify_inval_inode(f.se, h->ino, -1, 0);  // attributes only: no page, no wait
  if ((ioflag & IO_NOCACHE) && done > 0 && !f.direct_io && f.inval) {
    // An O_DIRECT write bypasses the kernel's page cache, and for an asynchronous one (AIO, io_uring) the
    // kernel skips the invalidation it does after a synchronous one: pages that buffered readers filled
    // while this write was on its way keep the old bytes (generic/451). Drop them before the reply
    // completes the write, but never by blocking this worker on the kernel: the invalidation waits for
    // pages under writeback, whose FUSE_WRITE needs a free worker (invalidator.h: generic/095 deadlocked).
    // No vnode lock is held here.
    f.inval->invalidate(h->ino, start, static_cast<off_t>(done), std::chrono::milliseconds(200));
  }
  fuse_reply_write(req, done);
  return 0;
}

// The writer's credentials as the privilege clearing needs them: CAP_FSETID from the kernel's
// FUSE_WRITE_KILL_SUIDGID, and the groups only when that bit is set (a set-group-ID file without group-exec
// keeps its bit for a writer in its group) or the kernel cannot tell us (no killpriv v2).
vfs_context write_context(fuse_req_t req, const frontend& f, fuse_ino_t ino) {
  bool kill = request_kills_suidgid(FUSE_WRITE, ino);
  vfs_context ctx = make_context(req, kill || !f.kinit.killpriv_v2);
  set_fsetid_from_kernel(f, kill, &ctx);
  return ctx;
}

int do_write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* bufv, off_t off, fuse_file_info* fi) {
  frontend& f = fe(req);
  handle* h = fh_of(fi);
  if (!h) return EBADF;
  vfs_context ctx = write_context(req, f, ino);
  int ioflag = write_ioflag(f, fi->flags ? fi->flags : h->flags, fi->writepage);
  uio u(off, UIO_WRITE, UIO_USERSPACE);
  bool in_memory = true;
  for (size_t i = bufv->idx; i < bufv->count; i++)
    if (bufv->buf[i].flags & FUSE_BUF_IS_FD) in_memory = false;
  std::unique_ptr<char[]> copy;
  if (in_memory) {
    // The request's own memory becomes the uio's iovecs: no copy before the buffer cache.
    for (size_t i = bufv->idx; i < bufv->count; i++) {
      const fuse_buf& b = bufv->buf[i];
      size_t skip = i == bufv->idx ? bufv->off : 0;
      if (b.size > skip) u.addiov(static_cast<char*>(b.mem) + skip, b.size - skip);
    }
  } else {
    // fd-backed (spliced) data: into memory first.
    size_t len = fuse_buf_size(bufv);
    copy.reset(new char[len]);
    fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
    dst.buf[0].mem = copy.get();
    ssize_t n = fuse_buf_copy(&dst, bufv, static_cast<fuse_buf_copy_flags>(0));
    if (n < 0) return static_cast<int>(-n);
    u.addiov(copy.get(), static_cast<size_t>(n));
  }
  return write_uio(req, h, &u, ioflag, ctx);
}

int do_write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off, fuse_file_info* fi) {
  frontend& f = fe(req);
  handle* h = fh_of(fi);
  if (!h) return EBADF;
  vfs_context ctx = write_context(req, f, ino);
  uio u(off, UIO_WRITE, UIO_USERSPACE);
  u.addiov(const_cast<char*>(data), size);
  return write_uio(req, h, &u, write_ioflag(f, fi->flags ? fi->flags : h->flags, fi->writepage), ctx);
}

int do_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  frontend& f = fe(req);
  vfs_context ctx = make_context(req, false);
  iocount_ref vp;
  handle* h = fi ? fh_of(fi) : nullptr;
  if (h) {
    vnode_get(h->vp);
    *vp.out() = h->vp;
  } else {
    TRY(f.inodes->get(ino, vp.out()));
  }
  TRY(VNOP_FSYNC(vp.get(), datasync ? MNT_DWAIT : MNT_WAIT, &ctx));
  fuse_reply_err(req, 0);
  return 0;
}

int do_fallocate(fuse_req_t req, int mode, off_t offset, off_t length, fuse_file_info* fi) {
  handle* h = fh_of(fi);
  if (!h) return EBADF;
  vfs_context ctx = make_context(req, true);
  // FALLOCATE carries no KILL_SUIDGID bit: on a set-ID file ask the caller's capabilities.
  vnode_attr va;
  if (VNOP_GETATTR(h->vp, &va, &ctx) == 0 && (va.va_mode & (S_ISUID | S_ISGID))) ctx.fsetid = caller_fsetid(req);
  {
    vn_exclusive l(h->vp);
    TRY(VNOP_ALLOCATE(h->vp, mode, offset, length, &ctx));
  }
  // The kernel keeps the mode it cached across a FALLOCATE: when ext2 has just cleared set-ID bits
  // (killpriv v2 hands that to us), stat would show them for another attr_timeout (generic/683, 684).
  // Attributes only (offset -1): no page is touched and no inode lock is needed.
  if (ctx.setid_cleared) fuse_lowlevel_notify_inval_inode(fe(req).se, h->ino, -1, 0);
  fuse_reply_err(req, 0);
  return 0;
}

int do_lseek(fuse_req_t req, off_t off, int whence, fuse_file_info* fi) {
  handle* h = fh_of(fi);
  if (!h) return EBADF;
  unsigned long cmd;
  if (whence == SEEK_DATA) cmd = FIOSEEKDATA;
  else if (whence == SEEK_HOLE) cmd = FIOSEEKHOLE;
  else return EINVAL;  // SEEK_SET/CUR/END are the kernel's own
  vfs_context ctx = make_context(req, false);
  off_t o = off;
  int err = 0;
  {
    vn_shared l(h->vp);
    err = VNOP_IOCTL(h->vp, cmd, static_cast<void*>(&o), h->flags, &ctx);
  }
  // A table without FIOSEEK*: ENOSYS makes the kernel answer from the size alone (all data, hole at EOF).
  if (err == ENOTSUP || err == ENOTTY) return ENOSYS;
  if (err) return err;
  fuse_reply_lseek(req, o);
  return 0;
}

// copy_file_range: a read+write loop through the VNOPs, never holding both vnode locks at once.
int do_copy_file_range(fuse_req_t req, off_t off_in, fuse_file_info* fi_in, off_t off_out, fuse_file_info* fi_out,
                       size_t len) {
  frontend& f = fe(req);
  handle* hin = fh_of(fi_in);
  handle* hout = fh_of(fi_out);
  if (!hin || !hout) return EBADF;
  vfs_context ctx = make_context(req, false);
  constexpr size_t kChunk = 1u << 20;
  std::unique_ptr<char[]> buf(new char[std::min(len, kChunk) + 1]);
  size_t total = 0;
  int err = 0;
  int wflags = write_ioflag(f, hout->flags, false) & ~IO_APPEND;
  while (total < len) {
    size_t n = std::min(len - total, kChunk);
    uio r(buf.get(), n, off_in + static_cast<off_t>(total), UIO_READ, UIO_USERSPACE);
    {
      vn_shared l(hin->vp);
      err = VNOP_READ(hin->vp, &r, read_ioflag(f, hin->flags), &ctx);
    }
    if (err) break;
    size_t got = n - r.resid();
    if (got == 0) break;  // EOF of the source
    uio w(buf.get(), got, off_out + static_cast<off_t>(total), UIO_WRITE, UIO_USERSPACE);
    err = write_locked(hout, &w, wflags, ctx);
    total += got - w.resid();
    if (err || w.resid() != 0) break;
    if (got < n) break;
  }
  if (err && total == 0) return err;
  fuse_reply_write(req, total);
  return 0;
}

}  // namespace

void ll_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  run(req, [&] { return do_open(req, ino, fi); });
}
void ll_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  run(req, [&] { return do_create(req, parent, name, mode, fi); });
}
void ll_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  run(req, [&] { return do_read(req, size, off, fi); });
}
void ll_write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* bufv, off_t off, fuse_file_info* fi) {
  run(req, [&] { return do_write_buf(req, ino, bufv, off, fi); });
}
void ll_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  run(req, [&] { return do_write(req, ino, buf, size, off, fi); });
}
void ll_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  // close(2): the data is already in the VNOPs (writethrough/none) or was written back by the kernel before
  // FLUSH (writeback). Durability is fsync's job; a close does not wait for the disk, as on kernel ext2.
  fuse_reply_err(req, 0);
}
void ll_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  run(req, [&] {
    close_handle(req, fi);
    fuse_reply_err(req, 0);
    return 0;
  });
}
void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  run(req, [&] { return do_fsync(req, ino, datasync, fi); });
}
void ll_fallocate(fuse_req_t req, fuse_ino_t, int mode, off_t offset, off_t length, fuse_file_info* fi) {
  run(req, [&] { return do_fallocate(req, mode, offset, length, fi); });
}
void ll_lseek(fuse_req_t req, fuse_ino_t, off_t off, int whence, fuse_file_info* fi) {
  run(req, [&] { return do_lseek(req, off, whence, fi); });
}
void ll_copy_file_range(fuse_req_t req, fuse_ino_t, off_t off_in, fuse_file_info* fi_in, fuse_ino_t, off_t off_out,
                        fuse_file_info* fi_out, size_t len, int flags) {
  run(req, [&] {
    if (flags != 0) return EINVAL;
    return do_copy_file_range(req, off_in, fi_in, off_out, fi_out, len);
  });
}

// Directories share the handle type (opendir pins the vnode like open).
int dir_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  frontend& f = fe(req);
  vfs_context ctx = make_context(req, true);
  iocount_ref vp;
  TRY(f.inodes->get(ino, vp.out()));
  if (vp.get()->v_type != vtype::VDIR) return ENOTDIR;
  TRY(VNOP_OPEN(vp.get(), fi->flags, &ctx));
  auto* h = new handle{vp.get(), f.inodes->to_fuse(vp.get()->v_id), fi->flags};
  f.inodes->add_open(vp.get());  // dirs: size_hint unused
  fi->fh = reinterpret_cast<uint64_t>(h);
  if (fuse_reply_open(req, fi) != 0) close_handle(req, fi);
  return 0;
}
void dir_close(fuse_req_t req, fuse_file_info* fi) { close_handle(req, fi); }

}  // namespace vnopfs::fuse

// physio.cpp: buf_physio, direct I/O between a uio's memory and the device (buf.h). The I/O is a cluster
// header flagged B_PHYS whose request points at the caller's memory instead of member buffers, so it leaves
// through the same VNOP_STRATEGY and device entry point as every cached I/O, and is counted the same way.
#include <cstdlib>
#include <cstring>
#include <memory>

#include "cache/buf_internal.h"

namespace vnopfs {

namespace {

int physio_once(bufcache* c, vnode* vp, daddr64_t lblkno, daddr64_t blkno, const iovec* iov, size_t skip,
                size_t len, bool read) {
  buf* h = hdr_get(c, vp, B_PHYS | (read ? uint32_t{B_READ} : 0u));
  h->b_lblkno = lblkno;
  h->b_blkno = blkno;
  h->b_bcount = static_cast<uint32_t>(len);
  dev::io_request* r = &h->b_io;
  r->clear_iov();
  for (size_t left = len; left > 0; iov++, skip = 0) {
    if (iov->iov_len <= skip) continue;
    size_t n = std::min(iov->iov_len - skip, left);
    r->add_iov(static_cast<char*>(iov->iov_base) + skip, n);
    left -= n;
  }
  VNOP_STRATEGY(h);
  int err = buf_biowait(h);
  std::lock_guard g(c->mtx);
  hdr_put_locked(c, h);
  return err;
}

}  // namespace

int buf_physio(vnode* vp, daddr64_t lblkno, daddr64_t blkno, uio* u, size_t len) {
  bufcache* c = cache_of(vp);
  const bool read = u->rw() == UIO_READ;
  int err = physio_once(c, vp, lblkno, blkno, u->iov(), u->skip(), len, read);
  if (err == EINVAL) {  // the device wants aligned memory (O_DIRECT): once more through a bounce buffer
    void* mem = nullptr;
    if (posix_memalign(&mem, 4096, len) != 0) return ENOMEM;
    std::unique_ptr<void, decltype(&std::free)> bounce(mem, &std::free);
    const uio::mark at = u->save();
    if (!read) {
      uiomove(mem, len, u);
      u->restore(at);
    }
    iovec one{mem, len};
    err = physio_once(c, vp, lblkno, blkno, &one, 0, len, read);
    if (err || !read) {
      if (!err) u->update(len);
      return err;
    }
    uiomove(mem, len, u);
    return 0;
  }
  if (!err) u->update(len);
  return err;
}

}  // namespace vnopfs

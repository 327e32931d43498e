// bufpath.cpp: the ext2-buf write path (ext2_wpath::buf), the classic BSD buffer path of ffs_write/ffs_read
// before clustering: one buffer per logical block, read in with bread when the write covers it only partly
// and it holds file data, filled, and left with bdwrite (bwrite under IO_SYNC). Nothing gathers blocks: the
// mount's cache has max_io_bytes of one block, so the push of these buffers (flusher, fsync, memory
// pressure) writes each one by itself, and reads bread one block at a time with no read-ahead.
#include <algorithm>
#include <cstring>

#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

int ext2_buf_write(vnode* vp, uio* u, size_t len, uint64_t oldEOF, int ioflag) {
  const uint64_t bs = VTOI(vp)->i_mnt->m_block_size;
  for (size_t left = len; left > 0;) {
    const uint64_t off = static_cast<uint64_t>(u->offset());
    const uint64_t lbn = off / bs, within = off % bs, b0 = lbn * bs;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(bs - within, left));
    BufRef bp;
    if (n == bs) {
      bp = buf_getblk(vp, static_cast<daddr64_t>(lbn), BLK_WRITE);  // all of it comes from the uio
    } else if (b0 < oldEOF) {
      TRY(buf_bread(vp, static_cast<daddr64_t>(lbn), &bp));  // a hole reads as zeros
      if (oldEOF < b0 + bs)  // the bytes past the old EOF are the file's zeros, whatever the disk holds
        std::memset(bp.data() + (oldEOF - b0), 0, static_cast<size_t>(b0 + bs - oldEOF));
    } else {
      bp = buf_getblk(vp, static_cast<daddr64_t>(lbn), BLK_WRITE);  // past the old EOF: zeros around the data
      buf_clear(bp.get());
    }
    uiomove(bp.data() + within, n, u);
    if (ioflag & IO_SYNC) {
      TRY(buf_bwrite(std::move(bp)));
    } else {
      buf_bdwrite(std::move(bp));
    }
    left -= n;
  }
  return 0;
}

int ext2_buf_read(vnode* vp, uio* u, uint64_t filesize) {
  const uint64_t bs = VTOI(vp)->i_mnt->m_block_size;
  while (u->resid() > 0 && static_cast<uint64_t>(u->offset()) < filesize) {
    const uint64_t off = static_cast<uint64_t>(u->offset());
    const uint64_t lbn = off / bs, within = off % bs;
    const size_t n = static_cast<size_t>(std::min<uint64_t>({bs - within, u->resid(), filesize - off}));
    BufRef bp;
    TRY(buf_bread(vp, static_cast<daddr64_t>(lbn), &bp));
    uiomove(bp.data() + within, n, u);
  }
  return 0;
}

}  // namespace vnopfs::ext2

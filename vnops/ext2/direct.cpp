// direct.cpp: the ext2-direct write path (ext2_wpath::direct), the DO_DIRECT_IO path of the IRP seed: file
// data is never cached. VNOP_WRITE and VNOP_READ map the range (the blocks of a write were allocated by
// write.cpp before) and move whole blocks with buf_physio straight between the uio's memory and the device,
// one I/O per physically contiguous run; a partial block is read into a bounce block, changed and written
// back (the caller holds the vnode lock exclusive for that: write.cpp). Metadata goes through the cache as on
// every table.
//
// Coherence with the cache: other paths may still leave file data in it (the zeroing of a truncate's tail,
// fallocate, a write past EOF zeroing the old last block: ext2_zero_range_cached). So a direct I/O first
// writes the file's dirty buffers (an older dirty buffer pushed later would overwrite the new bytes; a read
// must see them), and a write drops the cached copies of its range afterwards. The kernel's page cache is
// the frontend's business, as for O_DIRECT on the other tables (src/fuse/file.cpp).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "vnopfs/cluster.h"
#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

constexpr uint64_t kMaxRun = 4u << 20;  // bytes of one direct I/O

struct bounce_block {
  std::unique_ptr<char, decltype(&std::free)> mem{nullptr, &std::free};
  char* get(size_t bs) {
    if (!mem) {
      void* p = nullptr;
      if (posix_memalign(&p, 4096, bs) != 0) return nullptr;
      mem.reset(static_cast<char*>(p));
    }
    return mem.get();
  }
};

// The physical run from byte off (block-aligned) of at most len bytes: *pbn -1 for a hole, *run its bytes.
int map_run(vnode* vp, uint64_t off, uint64_t len, daddr64_t* pbn, size_t* run) {
  vnop_blockmap_args a{&vnop_blockmap_desc, vp, static_cast<off_t>(off), static_cast<size_t>(len), pbn, run,
                       VNODE_READ, nullptr};
  TRY(ext2_vnop_blockmap(&a));
  if (*run == 0) return EIO;
  return 0;
}

int flush_cached(vnode* vp) {
  if (!buf_vnode_isdirty(vp)) return 0;
  TRY(cluster_push(vp, IO_SYNC));
  return buf_flushdirtyblks(vp, MNT_WAIT);
}

// Block lbn of the file into blk (bs bytes): zeros for a hole.
int read_block(vnode* vp, uint64_t lbn, uint64_t bs, char* blk) {
  daddr64_t pbn;
  size_t run;
  TRY(map_run(vp, lbn * bs, bs, &pbn, &run));
  if (pbn < 0) {
    std::memset(blk, 0, bs);
    return 0;
  }
  uio b(blk, bs, 0, UIO_READ, UIO_SYSSPACE);
  return buf_physio(vp, static_cast<daddr64_t>(lbn), pbn, &b, bs);
}

// Writes len bytes (whole blocks, from a block-aligned offset) from u straight to the blocks they map to,
// in runs of contiguous blocks.
int physio_blocks(vnode* vp, uio* u, size_t len) {
  const uint64_t bs = VTOI(vp)->i_mnt->m_block_size;
  for (size_t left = len; left > 0;) {
    const uint64_t off = static_cast<uint64_t>(u->offset());
    daddr64_t pbn;
    size_t run;
    TRY(map_run(vp, off, std::min<uint64_t>(left, kMaxRun), &pbn, &run));
    if (pbn < 0) return EIO;  // write.cpp allocated every block of the round
    run = std::min<size_t>(run / bs * bs, left);
    TRY(buf_physio(vp, static_cast<daddr64_t>(off / bs), pbn, u, run));
    left -= run;
  }
  return 0;
}

}  // namespace

int ext2_direct_write(vnode* vp, uio* u, size_t len, uint64_t oldEOF) {
  const uint64_t bs = VTOI(vp)->i_mnt->m_block_size;
  TRY(flush_cached(vp));
  bounce_block bounce;
  int err = 0;
  for (size_t left = len; left > 0 && !err;) {
    const uint64_t off = static_cast<uint64_t>(u->offset());
    const uint64_t lbn = off / bs, within = off % bs, b0 = lbn * bs;
    if (within == 0 && left >= bs) {  // whole blocks, straight from the uio
      const size_t whole = static_cast<size_t>(left / bs * bs);
      if ((err = physio_blocks(vp, u, whole))) break;
      left -= whole;
      continue;
    }
    // A partial block: read, change, write back.
    const size_t n = static_cast<size_t>(std::min<uint64_t>(bs - within, left));
    char* blk = bounce.get(bs);
    if (blk == nullptr) {
      err = ENOMEM;
      break;
    }
    if (b0 >= oldEOF) {
      std::memset(blk, 0, bs);  // a block past the old EOF: its disk contents are not the file's
    } else {
      if ((err = read_block(vp, lbn, bs, blk))) break;
      if (oldEOF < b0 + bs) std::memset(blk + (oldEOF - b0), 0, static_cast<size_t>(b0 + bs - oldEOF));
    }
    daddr64_t pbn;
    size_t run;
    if ((err = map_run(vp, b0, bs, &pbn, &run))) break;
    if (pbn < 0) {
      err = EIO;
      break;
    }
    const uio::mark at = u->save();
    uiomove(blk + within, n, u);
    uio b(blk, bs, 0, UIO_WRITE, UIO_SYSSPACE);
    if ((err = buf_physio(vp, static_cast<daddr64_t>(lbn), pbn, &b, bs))) {
      u->restore(at);
      break;
    }
    left -= n;
  }
  // Every cached copy of the file goes, not only those of this range: the zeroing of the old last block
  // before a write past EOF (write.cpp, zero_gap) went through the cache too. They are clean (written
  // above, or the range's old bytes), and a file of this table rarely has any.
  buf_invalidate_range(vp, 0, INT64_MAX);
  return err;
}

int ext2_direct_write_blocks(vnode* vp, uio* u, size_t len) {
  const uint64_t bs = VTOI(vp)->i_mnt->m_block_size;
  const daddr64_t first = static_cast<daddr64_t>(static_cast<uint64_t>(u->offset()) / bs);
  int err = physio_blocks(vp, u, len);
  // Clean copies of the range (read before this write, or by a read that ran beside it) are now stale. The
  // invalidation waits for a buffer busy in a read, so no copy of the old bytes outlives this call.
  buf_invalidate_range(vp, first, first + static_cast<daddr64_t>(len / bs));
  return err;
}

int ext2_direct_read(vnode* vp, uio* u, uint64_t filesize) {
  const uint64_t bs = VTOI(vp)->i_mnt->m_block_size;
  TRY(flush_cached(vp));
  bounce_block bounce;
  while (u->resid() > 0 && static_cast<uint64_t>(u->offset()) < filesize) {
    const uint64_t off = static_cast<uint64_t>(u->offset());
    const uint64_t lbn = off / bs, within = off % bs;
    const uint64_t avail = std::min<uint64_t>(u->resid(), filesize - off);
    if (within == 0 && avail >= bs) {  // whole blocks, straight into the uio
      daddr64_t pbn;
      size_t run;
      TRY(map_run(vp, off, std::min<uint64_t>(avail / bs * bs, kMaxRun), &pbn, &run));
      run = run / bs * bs;
      if (pbn < 0) {
        uiozero(run, u);
      } else {
        TRY(buf_physio(vp, static_cast<daddr64_t>(lbn), pbn, u, run));
      }
      continue;
    }
    char* blk = bounce.get(bs);
    if (blk == nullptr) return ENOMEM;
    TRY(read_block(vp, lbn, bs, blk));
    uiomove(blk + within, static_cast<size_t>(std::min<uint64_t>(bs - within, avail)), u);
  }
  return 0;
}

}  // namespace vnopfs::ext2

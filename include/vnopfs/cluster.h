// cluster.h: the cluster layer (cache/cluster.cpp), after XNU bsd/vfs/vfs_cluster.c.
//
// Works on runs of a file vnode's buffers: gathers contiguous dirty blocks into large writes (write-behind
// clusters, a sparse dirty map past clusters_per_vnode), reads missing runs in one I/O and reads ahead on
// sequential access. It never allocates disk blocks itself: it asks VNOP_BLOCKMAP for runs (VNODE_READ for
// reads: -1 = hole, read as zeros; VNODE_WRITE for writes: the filesystem maps or allocates there) and
// issues one VNOP_STRATEGY per contiguous physical run (a B_CLUSTER header over the buffers).
//
// Locks: the caller holds the vnode lock as VNOP_READ/VNOP_WRITE do (shared or exclusive) and no
// filesystem lock that VNOP_BLOCKMAP takes; the cluster layer takes per-vnode cluster state under the cache
// mutex, once per run of blocks, and never holds it across I/O or a copy.
#pragma once

#include <sys/types.h>

#include "vnopfs/uio.h"
#include "vnopfs/vnode.h"

namespace vnopfs {

// The file size the cluster layer may use (XNU ubc_setsize): the filesystem calls it with the new size
// before copying data past EOF (extending write) and after invalidating buffers past it (truncate). Clusters
// and read-ahead never reach past it; blocks past EOF are not written.
void cluster_setsize(vnode* vp, off_t size);

// Copies uio_resid bytes from uio into vp's buffers at uio_offset and marks them dirty. Works per run of up
// to max_io_bytes: takes the run's buffers busy in one pass, maps the run with one VNOP_BLOCKMAP(VNODE_READ)
// (b_blkno set on mapped blocks, so the push does not map them again; holes are left to the push's
// VNODE_WRITE), copies with no cache lock held, then marks dirty and releases the run in one pass.
// - oldEOF: the file size before this write; a partial first/last block below oldEOF that is not in core
//   is read first (one I/O), a partial block at or past oldEOF is zero-filled instead.
// - newEOF: the size after the write (the copy stops there: the caller clips).
// - IO_HEADZEROFILL: zero [headOff, uio_offset); IO_TAILZEROFILL: zero [end of data, tailOff). Both are
//   written as dirty data (holes inside the file are zero-filled this way by ext2's extending writes).
// - IO_SYNC: pushes the written range and waits before return (returns the write error).
// - IO_NOCACHE: writes the range through and releases its buffers B_NOCACHE.
// Write-behind: a full cluster (max_io_bytes) is pushed at once asynchronously; past clusters_per_vnode
// clusters the vnode switches to a sparse dirty map that cluster_push writes in offset order.
// Returns 0 or an errno; on error the uio shows what was copied.
int cluster_write(vnode* vp, uio* uio, off_t oldEOF, off_t newEOF, off_t headOff, off_t tailOff, int ioflag);

// Copies from vp's buffers into uio, up to filesize. Misses read the whole missing run (up to max_io_bytes)
// in one I/O per physical run; holes read as zeros. Sequential access grows an async read-ahead window
// (doubling up to readahead_max_bytes); random access does none; IO_RAOFF and IO_NOCACHE turn it off.
int cluster_read(vnode* vp, uio* uio, off_t filesize, int ioflag);

// Writes out vp's clusters and sparse map. flags: IO_SYNC waits for them and every write in flight and
// returns the vnode's write error if one is recorded; 0 starts them asynchronously.
int cluster_push(vnode* vp, int flags);

}  // namespace vnopfs

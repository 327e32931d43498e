// spec.cpp: the device vnode (mnt_devvp), after XNU's specfs for block devices: metadata buffers by physical
// block. Its table sends strategy straight to the device, writes through vn_bwrite, and fsyncs by flushing
// its dirty buffers and then the device.
#include <condition_variable>
#include <mutex>

#include "cache/buf_internal.h"
#include "vnopfs/result.h"

namespace vnopfs {

namespace {

int spec_strategy(vnop_strategy_args* ap) { return buf_strategy(buf_vnode(ap->a_bp), ap->a_bp); }

int spec_blockmap(vnop_blockmap_args* ap) {  // the device vnode maps onto itself
  bufcache* c = cache_of(ap->a_vp);
  *ap->a_bpn = ap->a_foffset >> c->bshift;
  *ap->a_run = ap->a_size;
  return 0;
}

// A device flush (fdatasync of the backing store), waited for.
int device_flush(dev::device* d) {
  struct waiter {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    int error = 0;
  } w;
  dev::io_request r;
  r.op = dev::io_op::flush;
  r.owner = &w;
  r.done = [](dev::io_request* rq, int error, size_t) {
    auto* wp = static_cast<waiter*>(rq->owner);
    std::lock_guard g(wp->m);
    wp->error = error;
    wp->done = true;
    wp->cv.notify_all();
  };
  d->submit(&r);
  std::unique_lock g(w.m);
  w.cv.wait(g, [&] { return w.done; });
  return w.error;
}

int spec_fsync(vnop_fsync_args* ap) {
  vnode* vp = ap->a_vp;
  bool wait = ap->a_waitfor != MNT_NOWAIT;
  int err = buf_flushdirtyblks(vp, wait ? MNT_WAIT : MNT_NOWAIT);
  if (!wait) return err;
  int ferr = device_flush(cache_of(vp)->device);
  return err ? err : ferr;
}

int spec_reclaim(vnop_reclaim_args* ap) {
  (void)buf_vnode_reclaim(ap->a_vp);
  return 0;
}

const vnop_table* spec_table() {
  static vnop_table t;
  static std::once_flag once;
  std::call_once(once, [] { vnop_table_build(&t, "spec", {spec_strategy, vn_bwrite, spec_blockmap, spec_fsync, spec_reclaim}); });
  return &t;
}

}  // namespace

int spec_create_devvp(bufcache* c) {
  vnode* vp = nullptr;
  // v_id UINT64_MAX: never a filesystem's inode number, so it cannot collide in the mount's hash.
  TRY(vnode_create(c->mp, {vtype::VBLK, spec_table(), nullptr, UINT64_MAX, VSYSTEM}, &vp));
  c->devvp = vp;
  return 0;
}

}  // namespace vnopfs

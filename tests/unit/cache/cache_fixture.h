// cache_fixture.h: a mount over a device with the buffer cache on it, and a tiny filesystem table for file
// vnodes: logical block n of file vnode `base` lives at physical block base + n, except blocks in the hole
// set, which read as holes until a VNODE_WRITE blockmap allocates them, and blocks in the bad set, whose
// blockmap fails with EIO (a run never reaches across one). A recording layer under the cache
// keeps every request (op, offset, length) so tests can count and order device I/O, and can fail writes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "vnopfs/buf.h"
#include "vnopfs/cluster.h"
#include "vnopfs/device.h"
#include "vnopfs/mount.h"
#include "vnopfs/vnops.h"
#include "src/dev/mem.h"

namespace cachetest {

using namespace vnopfs;

struct io_rec {
  dev::io_op op;
  uint64_t offset, length;
};

// Records every request and can fail writes overlapping [fail_lo, fail_hi) (completing them itself, from a
// thread of its own, never inside submit).
class recorder final : public dev::device_wrapper {
 public:
  explicit recorder(dev::device* below) : device_wrapper(below), th_([this] { loop(); }) {}
  ~recorder() override {
    {
      std::lock_guard g(m_);
      stop_ = true;
      cv_.notify_all();
    }
    th_.join();
  }
  void submit(dev::io_request* r) override {
    {
      std::lock_guard g(m_);
      log_.push_back({r->op, r->offset, r->length});
      if (r->op == dev::io_op::write && r->offset < fail_hi_ && r->offset + r->length > fail_lo_) {
        failed_++;
        failq_.push_back(r);
        cv_.notify_all();
        return;
      }
    }
    below_->submit(r);
  }
  std::vector<io_rec> log(dev::io_op op) {
    std::lock_guard g(m_);
    std::vector<io_rec> out;
    for (auto& x : log_)
      if (x.op == op) out.push_back(x);
    return out;
  }
  std::vector<io_rec> all() {
    std::lock_guard g(m_);
    return log_;
  }
  size_t count(dev::io_op op) { return log(op).size(); }
  void clear() {
    std::lock_guard g(m_);
    log_.clear();
  }
  void fail_writes(uint64_t lo, uint64_t hi) {
    std::lock_guard g(m_);
    fail_lo_ = lo;
    fail_hi_ = hi;
  }
  uint64_t failed() {
    std::lock_guard g(m_);
    return failed_;
  }

 private:
  void loop() {
    std::unique_lock g(m_);
    for (;;) {
      cv_.wait(g, [&] { return stop_ || !failq_.empty(); });
      if (failq_.empty()) return;
      dev::io_request* r = failq_.front();
      failq_.pop_front();
      g.unlock();
      r->done(r, EIO, 0);
      g.lock();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<io_rec> log_;
  std::deque<dev::io_request*> failq_;
  uint64_t fail_lo_ = 0, fail_hi_ = 0, failed_ = 0;
  bool stop_ = false;
  std::thread th_;
};

// The file vnode's private node.
struct tnode {
  daddr64_t base;
  std::mutex m;
  std::set<daddr64_t> holes;
  std::set<daddr64_t> bad;  // blockmap of these fails (EIO)
  std::atomic<int> blockmaps{0};
};

inline int t_blockmap(vnop_blockmap_args* ap) {
  auto* n = static_cast<tnode*>(ap->a_vp->v_data);
  n->blockmaps++;
  uint32_t bs = bufcache_getconfig(ap->a_vp->v_mount).block_size;
  daddr64_t lb = ap->a_foffset / bs;
  size_t nblk = std::max<size_t>(1, ap->a_size / bs);
  std::lock_guard g(n->m);
  if (n->bad.count(lb)) return EIO;
  for (size_t k = 1; k < nblk; k++)
    if (n->bad.count(lb + static_cast<daddr64_t>(k))) {
      nblk = k;
      break;
    }
  if (ap->a_flags & VNODE_WRITE) {
    for (size_t k = 0; k < nblk; k++) n->holes.erase(lb + static_cast<daddr64_t>(k));
  }
  bool hole = n->holes.count(lb) != 0;
  size_t k = 1;
  while (k < nblk && (n->holes.count(lb + static_cast<daddr64_t>(k)) != 0) == hole) k++;
  *ap->a_bpn = hole ? -1 : n->base + lb;
  *ap->a_run = k * bs;
  return 0;
}

inline int t_strategy(vnop_strategy_args* ap) {
  buf* bp = ap->a_bp;
  vnode* vp = buf_vnode(bp);
  if (buf_blkno(bp) == BUF_UNMAPPED) {
    daddr64_t bpn;
    size_t run;
    uint32_t bs = bufcache_getconfig(vp->v_mount).block_size;
    bool read = buf_flags(bp) & B_READ;
    int err = VNOP_BLOCKMAP(vp, static_cast<off_t>(buf_lblkno(bp)) * bs, buf_count(bp), &bpn, &run,
                            read ? VNODE_READ : VNODE_WRITE, const_cast<vfs_context*>(&vfs_context::kernel()));
    if (err || (bpn < 0 && !read)) {
      buf_seterror(bp, err ? err : EIO);
      buf_biodone(bp);
      return 0;
    }
    if (bpn < 0) {
      buf_clear(bp);
      buf_biodone(bp);
      return 0;
    }
    buf_setblkno(bp, bpn);
  }
  return buf_strategy(vp->v_mount->mnt_devvp, bp);
}

inline int t_reclaim(vnop_reclaim_args* ap) {
  (void)buf_vnode_reclaim(ap->a_vp);
  delete static_cast<tnode*>(ap->a_vp->v_data);
  ap->a_vp->v_data = nullptr;
  return 0;
}

inline const vnop_table* file_table() {
  static vnop_table t;
  static std::once_flag once;
  std::call_once(once, [] { vnop_table_build(&t, "cachetest", {t_blockmap, t_strategy, vn_bwrite, t_reclaim}); });
  return &t;
}

struct fixture {
  std::unique_ptr<dev::mem_device> mem;
  std::unique_ptr<recorder> rec;
  mount mp;
  std::vector<vnode*> vps;
  int create_err = 0;

  explicit fixture(bufcache_config cfg = small_config(), uint64_t dev_bytes = 256u << 20) {
    dev::mem_options mo;
    mo.size = dev_bytes;
    mo.completion_threads = 2;
    mem = dev::make_mem_device(mo);
    rec = std::make_unique<recorder>(mem.get());
    mp.mnt_device = rec.get();
    create_err = bufcache_create(&mp, rec.get(), cfg);
  }
  ~fixture() {
    for (vnode* vp : vps) vnode_put(vp);
    if (mp.mnt_cache) bufcache_destroy(&mp);
  }
  static bufcache_config small_config() {
    bufcache_config c;
    c.cache_bytes = 8u << 20;
    return c;
  }
  // A file vnode whose block n lives at physical block base + n.
  vnode* file(uint64_t id, daddr64_t base, std::set<daddr64_t> holes = {}) {
    auto* n = new tnode;
    n->base = base;
    n->holes = std::move(holes);
    vnode* vp = nullptr;
    if (vnode_create(&mp, {vtype::VREG, file_table(), n, id}, &vp) != 0) return nullptr;
    vps.push_back(vp);
    return vp;
  }
  // Drops the fixture's reference: the vnode is reclaimed now.
  void release(vnode* vp) {
    std::erase(vps, vp);
    vnode_put(vp);
  }
  uint32_t bs() const { return bufcache_getconfig(&mp).block_size; }
  bufcache_stats stats() const { return bufcache_getstats(&mp); }
};

inline void fill(std::vector<char>& v, uint64_t seed) {
  for (size_t i = 0; i < v.size(); i++) v[i] = static_cast<char>((seed * 131 + i * 7 + (i >> 12)) & 0xff);
}

}  // namespace cachetest

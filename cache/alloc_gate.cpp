// alloc_gate.cpp: the allocation gate (buf.h). Why a gate and not dependencies: the flusher's ordered
// pass writes file data, flushes, then writes the metadata, but a filesystem sets the pointer to a new
// block (an indirect block, an inode's i_block) before the block's data is in the cache. A pointer set
// after the pass's data step and written by its metadata step reached the image before its data, and a
// SIGKILL then left another file's old bytes in the file (scripts/killloop, 2 files in 100 kills). With
// the gate held exclusive from the data step until the metadata writes are issued, every pointer the pass
// writes was set, and its data dirtied or written, before the data step began.
//
// Writer-preferring: a waiting flusher stops new holders, so a stream of overlapping writers cannot starve
// it; a holder waits at most one metadata pass (a data push, two device flushes and the metadata issue).
#include "cache/buf_internal.h"

namespace vnopfs {

void alloc_gate::enter() {
  std::unique_lock g(mtx_);
  cv_.wait(g, [&] { return !exclusive_ && !wanted_; });
  holders_++;
}

void alloc_gate::leave() {
  std::lock_guard g(mtx_);
  if (--holders_ == 0 && wanted_) cv_.notify_all();
}

bool alloc_gate::lock_exclusive(std::chrono::milliseconds timeout) {
  std::unique_lock g(mtx_);
  wanted_ = true;
  const bool got = cv_.wait_for(g, timeout, [&] { return holders_ == 0; });
  wanted_ = false;
  if (got) {
    exclusive_ = true;
  } else {
    cv_.notify_all();  // holders kept out while it was wanted may enter again
  }
  return got;
}

void alloc_gate::unlock_exclusive() {
  std::lock_guard g(mtx_);
  exclusive_ = false;
  cv_.notify_all();
}

buf_alloc_hold::buf_alloc_hold(vnode* vp) : c_(cache_of(vp)) {
  if (c_) c_->gate.enter();
}

buf_alloc_hold::~buf_alloc_hold() {
  if (c_) c_->gate.leave();
}

}  // namespace vnopfs

// sync_io.cpp: submit one request and wait for it (mount time, tools, tests).
#include <condition_variable>
#include <mutex>
#include <new>

#include "vnopfs/device.h"

namespace vnopfs::dev {
namespace {

struct waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int error = 0;
  size_t bytes = 0;
};

void on_done(io_request* r, int error, size_t bytes) {
  auto* w = static_cast<waiter*>(r->owner);
  std::lock_guard lk(w->mu);  // notify under the lock: the waiter's stack frame outlives this call
  w->error = error;
  w->bytes = bytes;
  w->done = true;
  w->cv.notify_one();
}

}  // namespace

int dev_sync_io(device& d, io_op op, uint64_t offset, void* buf, size_t len, uint32_t attrs, size_t* bytes) {
  waiter w;
  io_request r;
  r.op = op;
  r.attrs = attrs;
  r.offset = offset;
  try {
    if (op == io_op::read || op == io_op::write) r.add_iov(buf, len);
    else if (op == io_op::unmap) r.length = len;
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
  r.done = on_done;
  r.owner = &w;
  d.submit(&r);
  std::unique_lock lk(w.mu);
  w.cv.wait(lk, [&] { return w.done; });
  if (bytes) *bytes = w.bytes;
  return w.error;
}

}  // namespace vnopfs::dev

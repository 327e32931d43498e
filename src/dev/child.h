// child.h: the request a layer sends down on behalf of its caller's request (IoAllocateIrp + completion
// routine; IOKit's nested IOStorageCompletion). The child borrows the parent's iovecs (the parent's
// submitter keeps them alive until the parent completes, which is after the child completes).
#pragma once

#include "vnopfs/device.h"

namespace vnopfs::dev {

struct child_request : io_request {
  io_request* parent = nullptr;
  void* layer = nullptr;
  uint64_t aux = 0;  // the layer's own use (faults: the injected error of a torn write)

  // A copy of parent's op, attrs, range and memory; done/owner for the layer to set.
  static child_request* make(io_request* p, void* layer, io_done_fn done) {
    auto* c = new child_request;  // may throw bad_alloc: callers catch it
    c->op = p->op;
    c->attrs = p->attrs;
    c->offset = p->offset;
    c->length = p->length;
    c->iov = p->iov;
    c->parent = p;
    c->layer = layer;
    c->done = done;
    return c;
  }
};

}  // namespace vnopfs::dev

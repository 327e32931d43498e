// switch.cpp: see switch.h.
#include "src/dev/switch.h"

#include <cerrno>
#include <new>

#include "src/dev/child.h"

namespace vnopfs::dev {

switch_device::~switch_device() {
  // Nothing is submitted any more (the owner's contract). Wait for what is below, then fail what is parked.
  while (!gate_.close(std::chrono::milliseconds(1000))) {}
  req_list left = take_parked();
  while (!left.empty()) {
    io_request& r = left.front();
    left.pop_front();
    r.done(&r, EIO, 0);
  }
}

void switch_device::submit(io_request* r) {
  if (gate_.try_enter()) return send(r);
  std::unique_lock g(mu_);
  // resume() may have opened the gate between our try and the lock: it empties the list under the lock
  // after opening, so a request parked after that would wait for the next resume. Try again under it.
  if (gate_.try_enter()) {
    g.unlock();
    return send(r);
  }
  parked_.push_back(*r);
}

void switch_device::send(io_request* r) {
  child_request* c;
  try {
    c = child_request::make(r, this, &child_done);
  } catch (const std::bad_alloc&) {
    // Out of memory for the child: the request goes down counted only until submit returns (a swap does
    // not wait for its completion; the layers it passes wait for it in their destructors). Completing it
    // here with ENOMEM would run its completion inside submit, which the device contract forbids.
    target()->submit(r);
    gate_.leave();
    return;
  }
  target()->submit(c);
}

void switch_device::child_done(io_request* cr, int err, size_t bytes) {
  auto* c = static_cast<child_request*>(cr);
  auto* self = static_cast<switch_device*>(c->layer);
  io_request* p = c->parent;
  delete c;
  p->done(p, err, bytes);
  self->gate_.leave();  // last touch of the switch: suspend() or the destructor may go on now
}

bool switch_device::suspend(std::chrono::milliseconds timeout) {
  if (gate_.close(timeout)) return true;
  release_parked();  // the gate is open again: what was parked meanwhile goes down
  return false;
}

void switch_device::resume(device* target) {
  target_.store(target, std::memory_order_release);
  gate_.open();
  release_parked();
}

req_list switch_device::take_parked() {
  req_list l;
  std::lock_guard g(mu_);
  l.swap(parked_);
  return l;
}

void switch_device::release_parked() {
  req_list l = take_parked();
  while (!l.empty()) {
    io_request& r = l.front();
    l.pop_front();
    submit(&r);  // the gate is open: straight down (or parked again by a suspend that came meanwhile)
  }
}

size_t switch_device::parked() const {
  std::lock_guard g(mu_);
  return parked_.size();
}

}  // namespace vnopfs::dev

// deferred.h: a thread that hands requests back to their layer later.
//
// A layer without threads of its own (partition, faults) must still never run done inside submit: a request
// it refuses or delays goes on a deferred_queue, and the queue's thread calls the layer's `run` function for
// it once r->dev_deadline_ns (CLOCK_MONOTONIC ns; 0 = now) has passed. `run` then completes or forwards it.
// The queue links requests through q_hook and allocates nothing, so it works when memory is short.
//
// The thread starts with the queue (constructing one may throw std::system_error: the layer's factory catches
// it) and is owned by the layer holding the queue; the destructor runs every queued request (waiting for its
// deadline) and joins the thread.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "src/dev/req_list.h"

namespace vnopfs::dev {

class deferred_queue {
 public:
  using run_fn = void (*)(void* ctx, io_request* r);
  deferred_queue(run_fn run, void* ctx);
  ~deferred_queue();
  deferred_queue(const deferred_queue&) = delete;
  deferred_queue& operator=(const deferred_queue&) = delete;

  void push(io_request* r);  // r->dev_deadline_ns set by the caller

 private:
  void loop();

  run_fn run_;
  void* ctx_;
  std::mutex mu_;
  std::condition_variable cv_;
  req_list items_;  // sorted by dev_deadline_ns, FIFO among equal deadlines
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace vnopfs::dev

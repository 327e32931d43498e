// mem.cpp: in-memory device with an optional volatile write cache.
#include "src/dev/mem.h"

#include <cinttypes>
#include <cstring>
#include <new>

#include "src/dev/log.h"

namespace vnopfs::dev {

std::unique_ptr<mem_device> make_mem_device(const mem_options& o) {
  if (o.sector_size == 0 || o.size % o.sector_size) {
    DEV_LOG("mem: size %" PRIu64 " not a multiple of sector size %u", o.size, o.sector_size);
    return nullptr;
  }
  try {
    return std::make_unique<mem_device>(o);
  } catch (const std::exception& e) {
    DEV_LOG("mem: %" PRIu64 " bytes: %s", o.size, e.what());
    return nullptr;
  }
}

mem_device::mem_device(const mem_options& o) : o_(o), data_(o.size) {
  if (o_.volatile_cache) {
    durable_.resize(o_.size);
    dirty_.resize(o_.size / o_.sector_size);
  }
  int n = o_.completion_threads > 0 ? o_.completion_threads : 1;
  try {
    for (int i = 0; i < n; i++) threads_.emplace_back([this] { loop(); });
  } catch (...) {  // no destructor for a half-built object: stop the threads that started
    {
      std::lock_guard lk(q_mu_);
      stop_ = true;
    }
    q_cv_.notify_all();
    for (auto& t : threads_) t.join();
    throw;
  }
}

mem_device::~mem_device() {
  {
    std::lock_guard lk(q_mu_);
    stop_ = true;
  }
  q_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void mem_device::submit(io_request* r) {
  st_.on_submit(r);
  std::lock_guard lk(q_mu_);
  queue_.push_back(*r);
  q_cv_.notify_one();
}

void mem_device::loop() {
  pthread_setname_np(pthread_self(), "mem-io");
  std::unique_lock lk(q_mu_);
  for (;;) {
    if (queue_.empty()) {
      if (stop_) return;  // destructor: everything queued has been executed
      q_cv_.wait(lk);
      continue;
    }
    io_request* r = &queue_.front();
    queue_.pop_front();
    lk.unlock();
    int err = 0;
    size_t bytes = 0;
    execute(r, &err, &bytes);
    finish(st_, r, err, bytes);
    lk.lock();
  }
}

void mem_device::execute(io_request* r, int* err, size_t* bytes) {
  if (r->op != io_op::flush && (r->offset > o_.size || r->length > o_.size - r->offset)) {
    DEV_LOG("%s: %s [%" PRIu64 ", +%" PRIu64 ") beyond device size %" PRIu64, name().c_str(),
            io_op_name(r->op), r->offset, r->length, o_.size);
    *err = EIO;
    return;
  }
  std::lock_guard lk(data_mu_);
  uint64_t off = r->offset;
  switch (r->op) {
    case io_op::read:
      for (const iovec& v : r->iov) {
        memcpy(v.iov_base, &data_[off], v.iov_len);
        off += v.iov_len;
      }
      *bytes = r->length;
      return;
    case io_op::write:
      for (const iovec& v : r->iov) {
        memcpy(&data_[off], v.iov_base, v.iov_len);
        off += v.iov_len;
      }
      if (r->attrs & IO_ATTR_FUA) make_durable(r->offset, r->length);
      else mark_dirty(r->offset, r->length);
      *bytes = r->length;
      return;
    case io_op::unmap:
      memset(&data_[off], 0, r->length);
      mark_dirty(r->offset, r->length);
      *bytes = r->length;
      return;
    case io_op::flush:
      flush_all();
      return;
  }
  *err = EINVAL;
}

void mem_device::mark_dirty(uint64_t off, uint64_t len) {
  if (!o_.volatile_cache || len == 0) return;
  for (uint64_t s = off / o_.sector_size; s <= (off + len - 1) / o_.sector_size; s++) {
    if (!dirty_[s]) {
      dirty_[s] = true;
      dirty_list_.push_back(s);
    }
  }
}

// Exactly the bytes of a FUA write become durable; other non-durable bytes of the same sectors stay so.
void mem_device::make_durable(uint64_t off, uint64_t len) {
  if (o_.volatile_cache) memcpy(&durable_[off], &data_[off], len);
}

void mem_device::flush_all() {
  if (!o_.volatile_cache) return;
  for (uint64_t s : dirty_list_) {
    memcpy(&durable_[s * o_.sector_size], &data_[s * o_.sector_size], o_.sector_size);
    dirty_[s] = false;
  }
  dirty_list_.clear();
}

void mem_device::power_loss() {
  std::lock_guard lk(data_mu_);
  if (!o_.volatile_cache) return;
  for (uint64_t s : dirty_list_) {
    memcpy(&data_[s * o_.sector_size], &durable_[s * o_.sector_size], o_.sector_size);
    dirty_[s] = false;
  }
  dirty_list_.clear();
  // A FUA write into a dirty sector made only its own bytes durable: data_ now equals durable_ everywhere.
}

uint64_t mem_device::dirty_sectors() const {
  std::lock_guard lk(data_mu_);
  return dirty_list_.size();
}

void mem_device::peek(uint64_t off, void* buf, size_t len) const {
  std::lock_guard lk(data_mu_);
  if (off > o_.size || len > o_.size - off) return;
  memcpy(buf, &data_[off], len);
}

}  // namespace vnopfs::dev

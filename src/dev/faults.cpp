// faults.cpp: rule-driven failures, delays and torn writes.
#include "src/dev/faults.h"

#include <algorithm>
#include <new>

#include "src/dev/child.h"
#include "src/dev/log.h"

namespace vnopfs::dev {

// A deferred request with this error is a delayed one: it goes down when its deadline passes.
static constexpr int kForward = -1;

std::unique_ptr<faults_device> make_faults(device* below) {
  try {
    return std::make_unique<faults_device>(below);
  } catch (const std::exception& e) {  // bad_alloc, or system_error from starting the deferred thread
    DEV_LOG("faults over %s: %s", below->name().c_str(), e.what());
    return nullptr;
  }
}

faults_device::faults_device(device* below) : device_wrapper(below), deferred_(&run_deferred, this) {}

faults_device::~faults_device() {
  gate_.wait_idle();  // every request held (deferred) or sent down has completed
}

int faults_device::add_rule(const fault_rule& rule) {
  std::lock_guard lk(mu_);
  rules_.push_back({next_id_, rule, std::mt19937_64(rule.seed)});
  return next_id_++;
}

bool faults_device::remove_rule(int id) {
  std::lock_guard lk(mu_);
  auto it = std::find_if(rules_.begin(), rules_.end(), [&](const rule_state& s) { return s.id == id; });
  if (it == rules_.end()) return false;
  rules_.erase(it);
  return true;
}

void faults_device::clear_rules() {
  std::lock_guard lk(mu_);
  rules_.clear();
}

uint64_t faults_device::fired(int id) const {
  std::lock_guard lk(mu_);
  for (const rule_state& s : rules_)
    if (s.id == id) return s.fired;
  return 0;
}

fault_counts faults_device::counts() const {
  std::lock_guard lk(mu_);
  return counts_;
}

static bool overlaps(const io_request* r, const fault_rule& f) {
  if (r->op == io_op::flush) return true;
  uint64_t end = r->offset + std::max<uint64_t>(r->length, 1);
  return r->offset < f.hi && end > f.lo;
}

bool faults_device::choose(const io_request* r, fault_rule* out) {
  std::lock_guard lk(mu_);
  for (rule_state& s : rules_) {
    const fault_rule& f = s.rule;
    if (!(f.ops & op_bit(r->op)) || !overlaps(r, f)) continue;
    s.matched++;
    if (f.every_nth > 1 && s.matched % f.every_nth != 0) continue;
    if (f.probability < 1.0 && std::uniform_real_distribution<double>(0.0, 1.0)(s.rng) >= f.probability) continue;
    if (f.limit && s.fired >= f.limit) continue;
    s.fired++;
    *out = f;
    switch (f.action) {
      case fault_action::fail: counts_.failed++; break;
      case fault_action::delay: counts_.delayed++; break;
      case fault_action::tear: (r->op == io_op::write ? counts_.torn : counts_.failed)++; break;
      case fault_action::shortw:
        (r->op == io_op::write || r->op == io_op::read ? counts_.shortened : counts_.failed)++;
        break;
      case fault_action::drop:
        (r->op == io_op::write || r->op == io_op::flush ? counts_.dropped : counts_.failed)++;
        break;
    }
    return true;
  }
  counts_.passed++;
  return false;
}

void faults_device::submit(io_request* r) {
  st_.on_submit(r);
  gate_.enter();
  fault_rule f;
  if (!choose(r, &f)) return send_down(r, 0, 0);
  switch (f.action) {
    case fault_action::fail:
      return defer(r, f.error, 0);
    case fault_action::delay:
      return defer(r, kForward, f.delay_ns);
    case fault_action::tear: {
      if (r->op != io_op::write) return defer(r, f.error, 0);
      uint64_t sec = std::max<uint32_t>(below_->sector_size(), 1);
      uint64_t keep = f.tear_bytes ? f.tear_bytes : r->length / 2 / sec * sec;
      keep = std::min(keep, r->length);
      DEV_LOG("%s: tearing write [%llu, +%llu) after %llu bytes", name().c_str(), (unsigned long long)r->offset,
              (unsigned long long)r->length, (unsigned long long)keep);
      return send_down(r, keep, f.error);
    }
    case fault_action::shortw: {
      if (r->op != io_op::write && r->op != io_op::read) return defer(r, f.error, 0);
      uint64_t sec = std::max<uint32_t>(below_->sector_size(), 1);
      uint64_t keep = std::min(f.tear_bytes ? f.tear_bytes : r->length / 2 / sec * sec, r->length);
      DEV_LOG("%s: short %s [%llu, +%llu): %llu bytes", name().c_str(), r->op == io_op::write ? "write" : "read",
              (unsigned long long)r->offset, (unsigned long long)r->length, (unsigned long long)keep);
      if (keep == 0) return defer(r, 0, 0, 0);  // a transfer of nothing, reported as such
      return send_down(r, keep, 0, /*cut=*/true);
    }
    case fault_action::drop:
      if (r->op == io_op::write) return defer(r, 0, 0, r->length);  // the lie: all of it, "written"
      if (r->op == io_op::flush) return defer(r, 0, 0, 0);
      return defer(r, f.error, 0);
  }
}

void faults_device::defer(io_request* r, int err, uint64_t delay_ns, uint64_t bytes) {
  r->dev_error = err;
  r->dev_bytes = bytes;
  r->dev_deadline_ns = delay_ns ? now_ns() + delay_ns : 0;
  deferred_.push(r);
}

void faults_device::run_deferred(void* ctx, io_request* r) {
  auto* self = static_cast<faults_device*>(ctx);
  if (r->dev_error == kForward) return self->send_down(r, 0, 0);
  finish(self->st_, r, r->dev_error, size_t(r->dev_bytes));
  self->gate_.leave();
}

// Sends r down as a child; tear_len != 0 (or cut) cuts a read or write to that prefix, and tear_err is
// reported at completion.
void faults_device::send_down(io_request* r, uint64_t tear_len, int tear_err, bool cut) {
  child_request* c;
  try {
    c = child_request::make(r, this, &child_done);
    if (tear_len || tear_err || cut) {
      // Keep the first tear_len bytes of the iovecs.
      c->clear_iov();
      uint64_t left = tear_len;
      for (const iovec& v : r->iov) {
        if (!left) break;
        size_t n = size_t(std::min<uint64_t>(left, v.iov_len));
        c->add_iov(v.iov_base, n);
        left -= n;
      }
      c->aux = uint64_t(tear_err);
    }
  } catch (const std::bad_alloc&) {
    return defer(r, ENOMEM, 0);
  }
  if (tear_err && tear_len == 0) {  // nothing of it to write: a torn write of 0 bytes is a failure
    delete c;
    return defer(r, tear_err, 0);
  }
  below_->submit(c);
}

void faults_device::child_done(io_request* cr, int err, size_t bytes) {
  auto* c = static_cast<child_request*>(cr);
  auto* self = static_cast<faults_device*>(c->layer);
  io_request* p = c->parent;
  if (!err && c->aux) err = int(c->aux);
  delete c;
  finish(self->st_, p, err, bytes);
  self->gate_.leave();
}

}  // namespace vnopfs::dev

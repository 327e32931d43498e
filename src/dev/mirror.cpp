// mirror.cpp: RAID-1 over member devices, with a state record per member (mirror.h).
#include "src/dev/mirror.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>

#include <boost/container/small_vector.hpp>

#include "src/dev/child.h"
#include "src/dev/log.h"

namespace vnopfs::dev {

struct mirror_device::member {
  std::unique_ptr<dev_stack> stack;
  device* dev = nullptr;
  std::string label, state_path;
  std::atomic<bool> live{true};
  std::atomic<bool> syncing{false};  // added while mounted, being copied: written, not read, not counted
  std::atomic<uint64_t> inflight{0}, reads{0}, last_read_end{UINT64_MAX}, sync_bytes{0};
  // under state_mu_:
  int error = 0;
  io_op failed_op = io_op::read;
  uint64_t events = 0;
  bool resynced = false;
  bool removed = false;
  mirror_record rec;
  bool has_rec = false;
};

struct mirror_device::op_state {
  io_request* parent = nullptr;
  std::atomic<unsigned> pending{0};
  std::atomic<bool> ok{false};
  std::atomic<uint64_t> min_bytes{UINT64_MAX};
  std::atomic<int> req_err{0};
  uint32_t tried = 0;  // reads: members asked so far
  bool tracked = false;  // in writes_ (a background copy runs): sync_retire at completion
};

namespace {
// A write child to a member being copied (its success counts for nothing): the top bit of child aux.
constexpr uint64_t kSyncChild = 1ull << 63;
}  // namespace

namespace {

// Errors that say something about the request, not about the member: every member would give the same.
bool request_error(int e) { return e == EINVAL || e == ENOMEM; }

std::string errstr(int e) { return std::strerror(e); }

std::string dir_of(const std::string& p) {
  size_t s = p.rfind('/');
  return s == std::string::npos ? "." : s == 0 ? "/" : p.substr(0, s);
}

std::string new_set_id() {
  std::random_device rd;
  uint64_t v = (uint64_t(rd()) << 32) ^ rd() ^ now_ns();
  char b[17];
  std::snprintf(b, sizeof b, "%016" PRIx64, v);
  return b;
}

}  // namespace

int read_mirror_record(const std::string& path, mirror_record* r) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buf[4096];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  int e = n < 0 ? errno : 0;
  ::close(fd);
  if (e) return e;
  std::string text(buf, size_t(n));
  if (text.rfind("vnopfs-mirror 1\n", 0) != 0) return EINVAL;
  *r = {};
  bool has_set = false, has_events = false;
  for (size_t q = 0, nl; (nl = text.find('\n', q)) != std::string::npos; q = nl + 1) {
    std::string line = text.substr(q, nl - q);
    size_t sp = line.find(' ');
    if (sp == std::string::npos) continue;
    std::string k = line.substr(0, sp), v = line.substr(sp + 1);
    if (k == "set") r->set_id = v, has_set = !v.empty();
    else if (k == "events") {
      char* end = nullptr;
      r->events = std::strtoull(v.c_str(), &end, 10);
      has_events = end != v.c_str() && !*end;
    } else if (k == "clean") r->clean = v == "1";
    else if (k == "member") r->member = v;
  }
  return has_set && has_events ? 0 : EINVAL;
}

int write_mirror_record(const std::string& path, const mirror_record& r) {
  std::string text = "vnopfs-mirror 1\nset " + r.set_id + "\nevents " + std::to_string(r.events) + "\nclean " +
                     (r.clean ? "1" : "0") + "\nmember " + r.member + "\n";
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  int e = 0;
  for (size_t off = 0; off < text.size() && !e;) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) e = n < 0 ? errno : EIO;
    else off += size_t(n);
  }
  if (!e && ::fsync(fd) != 0) e = errno;
  if (::close(fd) != 0 && !e) e = errno;
  if (!e && ::rename(tmp.c_str(), path.c_str()) != 0) e = errno;
  if (e) {
    (void)::unlink(tmp.c_str());
    return e;
  }
  // The rename is durable once the directory is.
  int dfd = ::open(dir_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return errno;
  if (::fsync(dfd) != 0) e = errno;
  ::close(dfd);
  return e;
}

mirror_device::mirror_device(std::vector<mirror_member_spec> members, const mirror_options& o)
    : o_(o), deferred_(&run_deferred, this) {
  members_.reserve(kMaxMembers);
  for (auto& s : members) {
    auto m = std::make_unique<member>();
    m->stack = std::move(s.stack);
    m->dev = m->stack->top();
    m->label = s.label;
    m->state_path = s.state_path;
    members_.push_back(std::move(m));
  }
  n_.store(members_.size(), std::memory_order_release);
}

mirror_device::~mirror_device() {
  {
    std::lock_guard g(sync_mu_);
    sync_stop_ = true;
    sync_cv_.notify_all();
  }
  if (sync_thread_.joinable()) sync_thread_.join();  // it releases what it parked
  gate_.wait_idle();  // every request completed, held ones included (the updater released them)
  {
    std::lock_guard lk(state_mu_);
    stop_ = true;
    state_cv_.notify_all();
  }
  if (updater_.joinable()) updater_.join();
  if (!opened_ || o_.readonly) return;
  // A clean stop: every member in service flushed and its record says clean, one event further on.
  for (size_t i = 0; i < members_.size(); i++)
    if (members_[i]->live.load())
      if (int e = dev_sync_io(*members_[i]->dev, io_op::flush, 0, nullptr, 0)) fail_member(i, e, io_op::flush, 0, 0);
  std::lock_guard lk(state_mu_);
  if (in_service_ == 0) {
    DEV_LOG("mirror: stopped with no member in service; records left at the last events each had");
    return;
  }
  uint64_t ev = events_ + 1;
  size_t n = 0;
  for (auto& m : members_) {
    if (!m->live.load()) continue;
    if (int e = write_mirror_record(m->state_path, {set_id_, ev, true, m->label})) {
      DEV_LOG("mirror: member %s: cannot mark its state record %s clean: %s (the next mount resyncs it)",
              m->label.c_str(), m->state_path.c_str(), std::strerror(e));
      continue;
    }
    m->events = ev;
    n++;
  }
  events_ = ev;
  DEV_LOG("mirror: stopped; %zu of %zu members clean at events %" PRIu64 "%s", n, members_.size(), ev,
          n < members_.size() ? " (the others are stale: resynced or refused at the next mount)" : "");
}

std::string mirror_device::name() const {
  std::string s = "mirror(";
  for (size_t i = 0, n = count(); i < n; i++) s += (i ? ", " : "") + members_[i]->dev->name();
  return s + ")";
}

device* mirror_device::member_device(size_t i) const { return members_.at(i)->dev; }
dev_stack* mirror_device::member_stack(size_t i) const { return members_.at(i)->stack.get(); }

uint64_t mirror_device::events() const {
  std::lock_guard lk(state_mu_);
  return events_;
}

size_t mirror_device::in_service() const {
  std::lock_guard lk(state_mu_);
  return in_service_;
}

bool mirror_device::degraded() const {
  std::lock_guard lk(state_mu_);  // members_ grows under it (add_member)
  size_t n = 0;
  for (auto& m : members_) n += !m->removed;
  return in_service_ < n;
}

std::vector<mirror_member_status> mirror_device::status() const {
  std::lock_guard lk(state_mu_);
  std::vector<mirror_member_status> v;
  for (auto& m : members_) {
    mirror_member_status s;
    s.label = m->label;
    s.device = m->dev->name();
    s.in_service = m->live.load();
    s.syncing = m->syncing.load();
    s.sync_bytes = m->sync_bytes.load(std::memory_order_relaxed);
    s.removed = m->removed;
    s.resynced = m->resynced;
    s.error = m->error;
    s.failed_op = m->failed_op;
    s.events = m->events;
    s.reads = m->reads.load(std::memory_order_relaxed);
    s.stats = m->dev->stats();
    v.push_back(std::move(s));
  }
  return v;
}

// ---- I/O

void mirror_device::submit(io_request* r) {
  const bool in_range = r->op == io_op::flush || (r->offset <= size_ && r->length <= size_ - r->offset);
  op_state* op = nullptr;
  if (in_range) {
    try {
      op = new op_state;
      op->parent = r;
    } catch (const std::bad_alloc&) {
    }
  }
  // While a member is being copied, a write over the chunk in copy waits for it (before it is counted).
  if (op && (r->op == io_op::write || r->op == io_op::unmap) && sync_active_.load(std::memory_order_acquire) &&
      sync_admit(r, op))
    return;
  st_.on_submit(r);
  gate_.enter();
  if (!in_range) {
    DEV_LOG("mirror: %s [%" PRIu64 ", +%" PRIu64 ") beyond the mirror's %" PRIu64 " bytes: EIO", io_op_name(r->op),
            r->offset, r->length, size_);
    return defer(r, EIO);
  }
  if (!op) return defer(r, ENOMEM);
  if (r->op == io_op::read) return submit_read(r, op);

  boost::container::small_vector<child_request*, 4> kids;
  auto drop = [&](int err) {
    for (auto* c : kids) delete c;
    if (op->tracked) sync_retire(op);
    delete op;
    defer(r, err);
  };
  try {
    for (size_t i = 0, n = count(); i < n; i++) {
      bool copying = members_[i]->syncing.load();
      if (!members_[i]->live.load() && !copying) continue;
      auto* c = child_request::make(r, this, &multi_done);
      c->aux = i | (copying ? kSyncChild : 0);
      c->owner = op;
      // The members work in parallel; only the last may use the submitter's thread.
      c->attrs &= ~uint32_t{IO_ATTR_INLINE};
      kids.push_back(c);
    }
  } catch (const std::bad_alloc&) {
    return drop(ENOMEM);
  }
  bool any_live = false;
  for (auto* c : kids) any_live |= !(c->aux & kSyncChild);
  if (!any_live) return drop(EIO);  // no member in service (one being copied cannot answer alone)
  if (r->attrs & IO_ATTR_INLINE) kids.back()->attrs |= IO_ATTR_INLINE;
  op->pending.store(unsigned(kids.size()), std::memory_order_relaxed);
  for (child_request* c : kids) {  // op and c may be gone once submitted
    member& m = *members_[c->aux & ~kSyncChild];
    m.inflight.fetch_add(1, std::memory_order_relaxed);
    m.dev->submit(c);
  }
}

int mirror_device::pick_reader(const io_request* r, uint32_t tried) const {
  size_t n = count();
  for (size_t i = 0; i < n; i++)
    if (members_[i]->live.load() && !(tried & (1u << i)) && members_[i]->last_read_end.load() == r->offset)
      return int(i);
  int best = -1;
  size_t start = size_t(rr_.fetch_add(1, std::memory_order_relaxed));
  for (size_t k = 0; k < n; k++) {
    size_t i = (start + k) % n;
    if (!members_[i]->live.load() || (tried & (1u << i))) continue;
    if (best < 0 || members_[i]->inflight.load() < members_[size_t(best)]->inflight.load()) best = int(i);
  }
  return best;
}

void mirror_device::submit_read(io_request* r, op_state* op) {
  bool retry = op->tried != 0;
  int i = pick_reader(r, op->tried);
  if (i < 0) {
    int e = op->req_err.load() ? op->req_err.load() : EIO;
    delete op;
    if (!retry) return defer(r, e);  // never complete inside submit
    return complete(r, e, 0);
  }
  child_request* c;
  try {
    c = child_request::make(r, this, &read_done);
  } catch (const std::bad_alloc&) {
    delete op;
    if (!retry) return defer(r, ENOMEM);
    return complete(r, ENOMEM, 0);
  }
  op->tried |= 1u << i;
  c->aux = uint64_t(i);
  c->owner = op;
  if (retry) c->attrs &= ~uint32_t{IO_ATTR_INLINE};  // on a member's completion thread now
  member& m = *members_[size_t(i)];
  m.inflight.fetch_add(1, std::memory_order_relaxed);
  m.reads.fetch_add(1, std::memory_order_relaxed);
  m.last_read_end.store(r->offset + r->length, std::memory_order_relaxed);
  m.dev->submit(c);
}

void mirror_device::read_done(io_request* cr, int err, size_t bytes) {
  auto* c = static_cast<child_request*>(cr);
  auto* self = static_cast<mirror_device*>(c->layer);
  auto* op = static_cast<op_state*>(c->owner);
  size_t i = size_t(c->aux);
  delete c;
  self->members_[i]->inflight.fetch_sub(1, std::memory_order_relaxed);
  io_request* p = op->parent;
  if (!err) {
    delete op;
    return self->complete(p, 0, bytes);
  }
  if (request_error(err)) op->req_err = err;
  else self->fail_member(i, err, io_op::read, p->offset, p->length);
  self->submit_read(p, op);  // the next member in service, or the error
}

void mirror_device::multi_done(io_request* cr, int err, size_t bytes) {
  auto* c = static_cast<child_request*>(cr);
  auto* self = static_cast<mirror_device*>(c->layer);
  auto* op = static_cast<op_state*>(c->owner);
  bool copying = c->aux & kSyncChild;
  size_t i = size_t(c->aux & ~kSyncChild);
  io_op o = c->op;
  uint64_t off = c->offset, len = c->length;
  delete c;
  self->members_[i]->inflight.fetch_sub(1, std::memory_order_relaxed);
  if (copying) {
    if (err) self->fail_sync(i, err, io_op_name(o));
  } else if (!err) {
    op->ok.store(true);
    uint64_t cur = op->min_bytes.load();
    while (bytes < cur && !op->min_bytes.compare_exchange_weak(cur, bytes)) {}
  } else if (request_error(err)) {
    op->req_err = err;
  } else {
    self->fail_member(i, err, o, off, len);
  }
  if (op->pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  io_request* p = op->parent;
  int e = op->ok.load() ? 0 : op->req_err.load() ? op->req_err.load() : EIO;
  size_t b = e ? 0 : size_t(op->min_bytes.load());
  if (op->tracked) self->sync_retire(op);
  delete op;
  self->complete(p, e, b);
}

// A successful write, flush or unmap completed while the records do not yet say who left service waits
// for them: acknowledged data must never live only on members a restart could take for stale ones (or
// the other way round).
void mirror_device::complete(io_request* p, int err, size_t bytes) {
  if (!err && p->op != io_op::read) {
    std::lock_guard lk(state_mu_);
    if (persisted_gen_ != membership_gen_) {
      p->dev_bytes = bytes;
      held_.push_back(*p);
      return;
    }
  }
  finish(st_, p, err, bytes);
  gate_.leave();
}

void mirror_device::defer(io_request* r, int err) {
  r->dev_error = err;
  r->dev_deadline_ns = 0;
  deferred_.push(r);
}

void mirror_device::run_deferred(void* ctx, io_request* r) {
  auto* self = static_cast<mirror_device*>(ctx);
  finish(self->st_, r, r->dev_error, 0);
  self->gate_.leave();
}

void mirror_device::fail_member(size_t i, int err, io_op op, uint64_t off, uint64_t len) {
  std::lock_guard lk(state_mu_);
  member& m = *members_[i];
  if (!m.live.load()) return;  // logged once, when it left
  m.live.store(false);
  m.error = err;
  m.failed_op = op;
  in_service_--;
  membership_gen_++;
  DEV_LOG("mirror: member %s failed (%s [%" PRIu64 ", +%" PRIu64 "): %s): out of service, degraded: %zu of %zu "
          "members left%s",
          m.label.c_str(), io_op_name(op), off, len, std::strerror(err), in_service_, members_.size(),
          in_service_ ? "" : "; every request fails with EIO from now on");
  state_cv_.notify_all();
}

// Writes the records after a member left service, then releases the completions held meanwhile.
void mirror_device::updater() {
  std::unique_lock lk(state_mu_);
  for (;;) {
    state_cv_.wait(lk, [&] { return stop_ || membership_gen_ != persisted_gen_; });
    if (membership_gen_ == persisted_gen_) {
      if (stop_) return;
      continue;
    }
    uint64_t gen = membership_gen_, ev = events_ + 1;
    std::vector<size_t> live;
    for (size_t i = 0; i < members_.size(); i++)
      if (members_[i]->live.load()) live.push_back(i);
    lk.unlock();
    std::vector<std::pair<size_t, int>> bad;
    if (!o_.readonly)
      for (size_t i : live)
        if (int e = write_mirror_record(members_[i]->state_path, {set_id_, ev, false, members_[i]->label}))
          bad.emplace_back(i, e);
    for (auto [i, e] : bad) {
      // A member whose record cannot say it is current must not be taken for current later.
      DEV_LOG("mirror: member %s: state record %s: %s", members_[i]->label.c_str(), members_[i]->state_path.c_str(),
              std::strerror(e));
      fail_member(i, e, io_op::write, 0, 0);
    }
    lk.lock();
    if (in_service_ == 0) {  // no record written: nothing to count
      persisted_gen_ = membership_gen_;
    } else {
      events_ = ev;
      persisted_gen_ = gen;
    }
    for (size_t i : live)
      if (members_[i]->live.load()) members_[i]->events = ev;
    if (membership_gen_ != persisted_gen_) continue;  // a record failed: once more
    if (in_service_) DEV_LOG("mirror: state records at events %" PRIu64 " on the %zu members in service", ev, in_service_);
    req_list out;
    out.swap(held_);
    // With no member left the acknowledged data is on a failed member only: not a success.
    bool none = in_service_ == 0;
    lk.unlock();
    while (!out.empty()) {
      io_request& p = out.front();
      out.pop_front();
      finish(st_, &p, none ? EIO : 0, none ? 0 : size_t(p.dev_bytes));
      gate_.leave();
    }
    lk.lock();
  }
}

// ---- opening the set

std::string mirror_device::resync(size_t from, size_t to, int* target_error) {
  member& s = *members_[from];
  member& d = *members_[to];
  uint64_t chunk = std::max<uint64_t>(o_.resync_chunk / sector_ * sector_, sector_);
  void* buf = std::aligned_alloc(std::max<uint32_t>(sector_, 4096), chunk);
  if (!buf) return "mirror: resync of '" + d.label + "': out of memory";
  uint64_t t0 = now_ns();
  std::string err;
  for (uint64_t off = 0; off < size_ && err.empty(); off += chunk) {
    size_t len = size_t(std::min(chunk, size_ - off));
    if (int e = dev_sync_io(*s.dev, io_op::read, off, buf, len))
      err = "reading '" + s.label + "' at " + std::to_string(off) + ": " + errstr(e);
    else if (int e2 = dev_sync_io(*d.dev, io_op::write, off, buf, len))
      err = "writing '" + d.label + "' at " + std::to_string(off) + ": " + errstr(*target_error = e2);
  }
  std::free(buf);
  if (err.empty())
    if (int e = dev_sync_io(*d.dev, io_op::flush, 0, nullptr, 0))
      err = "flushing '" + d.label + "': " + errstr(*target_error = e);
  if (!err.empty()) return "mirror: resync of '" + d.label + "' from '" + s.label + "' failed: " + err;
  double secs = double(now_ns() - t0) / 1e9;
  DEV_LOG("mirror: resynced %s from %s: %" PRIu64 " MiB in %.2f s (%.0f MiB/s)", d.label.c_str(), s.label.c_str(),
          size_ >> 20, secs, secs > 0 ? double(size_ >> 20) / secs : 0.0);
  d.resynced = true;
  return {};
}

std::string mirror_device::open() {
  size_t n = members_.size();
  size_ = UINT64_MAX;
  sector_ = 512;
  for (auto& m : members_) {
    size_ = std::min(size_, m->dev->size());
    sector_ = std::max(sector_, m->dev->sector_size());
  }
  std::string set;
  const member* set_from = nullptr;
  for (auto& m : members_) {
    int e = read_mirror_record(m->state_path, &m->rec);
    if (e == ENOENT) continue;
    if (e)
      return "mirror member '" + m->label + "': state record '" + m->state_path +
             "': " + (e == EINVAL ? std::string("not a vnopfs mirror record") : errstr(e));
    m->has_rec = true;
    if (set.empty()) {
      set = m->rec.set_id;
      set_from = m.get();
    } else if (m->rec.set_id != set) {
      return "mirror member '" + m->label + "' belongs to another mirror (its record '" + m->state_path +
             "' says set " + m->rec.set_id + ", member '" + set_from->label + "' says set " + set + ")";
    }
  }
  std::vector<std::string> why(n);
  size_t src = 0;
  uint64_t top = 0;
  if (set.empty()) {
    set = new_set_id();
    for (size_t i = 1; i < n; i++)
      why[i] = "has no state record: a new mirror, whose members are copies of the first, '" + members_[0]->label + "'";
  } else {
    for (auto& m : members_)
      if (m->has_rec) top = std::max(top, m->rec.events);
    src = n;
    for (size_t i = 0; i < n && src == n; i++)
      if (members_[i]->has_rec && members_[i]->rec.events == top) src = i;
    // A member written outside the mirror after its clean stop (a plain mount, e2fsck -y, dd) has an image
    // newer than its record, which a clean stop writes after its last flush. With another current member
    // beside it, which copy is right cannot be told: refused, whatever mirror_resync says.
    std::vector<size_t> current, touched;
    for (size_t i = 0; i < n; i++) {
      member& m = *members_[i];
      if (!m.has_rec || m.rec.events != top) continue;
      current.push_back(i);
      struct stat is{}, rs{};
      if (m.rec.clean && ::stat(m.label.c_str(), &is) == 0 && S_ISREG(is.st_mode) &&
          ::stat(m.state_path.c_str(), &rs) == 0 &&
          (is.st_mtim.tv_sec > rs.st_mtim.tv_sec ||
           (is.st_mtim.tv_sec == rs.st_mtim.tv_sec && is.st_mtim.tv_nsec > rs.st_mtim.tv_nsec)))
        touched.push_back(i);
    }
    if (!touched.empty() && current.size() > 1) {
      std::string t, others;
      for (size_t i : touched) t += (t.empty() ? "'" : ", '") + members_[i]->label + "'";
      for (size_t i : current)
        if (std::find(touched.begin(), touched.end(), i) == touched.end())
          others += (others.empty() ? "'" : ", '") + members_[i]->label + "'";
      return "mirror member " + t + " was written outside the mirror after its clean stop (the image is newer " +
             "than its .mirror record)" + (others.empty() ? std::string(", and so was every other current member") :
                                           ", " + others + " not") +
             ": which copy is current cannot be told; delete the .mirror record of each member to be overwritten " +
             "and mount again (a member without a record is copied from one that has one)";
    }
    const std::string cur = " (current: events " + std::to_string(top) + " on '" + members_[src]->label + "')";
    for (size_t i = 0; i < n; i++) {
      member& m = *members_[i];
      if (!m.has_rec) why[i] = "has no state record" + cur;
      else if (m.rec.events < top)
        why[i] = "is stale: it missed writes (events " + std::to_string(m.rec.events) + ")" + cur;
      else if (i != src && !members_[src]->rec.clean)
        why[i] = "may differ from '" + members_[src]->label + "': the mirror was not stopped cleanly (events " +
                 std::to_string(top) + ", clean flag off)";
    }
  }
  set_id_ = set;
  for (size_t i = 0; i < n; i++) members_[i]->events = members_[i]->has_rec ? members_[i]->rec.events : 0;
  std::string refused;
  for (size_t i = 0; i < n; i++) {
    if (why[i].empty()) continue;
    member& m = *members_[i];
    if (o_.readonly) {
      m.live.store(false);
      m.error = ESTALE;
      DEV_LOG("mirror: read-only: member %s %s: left out of service", m.label.c_str(), why[i].c_str());
    } else if (o_.stale == mirror_stale::refuse) {
      refused += (refused.empty() ? "" : "; ") + ("mirror member '" + m.label + "' " + why[i]);
    } else {
      DEV_LOG("mirror: member %s %s: resyncing it from %s", m.label.c_str(), why[i].c_str(),
              members_[src]->label.c_str());
      int target_error = 0;
      if (std::string e = resync(src, i, &target_error); !e.empty()) {
        if (!target_error) return e;  // the source failed: nothing current to serve from with confidence
        // The member cannot be written: the mount goes on without it (its record stays behind).
        DEV_LOG("%s: member %s out of service, degraded", e.c_str(), m.label.c_str());
        m.live.store(false);
        m.error = target_error;
        m.failed_op = io_op::write;
      }
    }
  }
  if (!refused.empty())
    return refused + ": refused (mirror_resync=no); mount with -o mirror_resync=yes to copy '" +
           members_[src]->label + "' over it, or leave it out of mirror=";
  in_service_ = 0;
  for (auto& m : members_) in_service_ += m->live.load();
  events_ = top + 1;
  if (!o_.readonly) {
    for (auto& m : members_) {
      if (!m->live.load()) continue;
      if (int e = write_mirror_record(m->state_path, {set_id_, events_, false, m->label}))
        return "mirror member '" + m->label + "': cannot write its state record '" + m->state_path + "': " + errstr(e);
      m->events = events_;
    }
  } else {
    events_ = top;
  }
  std::string who;
  for (auto& m : members_)
    who += (who.empty() ? "" : ", ") + m->label + (m->resynced ? " (resynced)" : m->live.load() ? "" : " (out of service)");
  DEV_LOG("mirror: set %s at events %" PRIu64 ", %zu of %zu members in service: %s", set_id_.c_str(), events_,
          in_service_, n, who.c_str());
  opened_ = true;
  updater_ = std::thread([this] { updater(); });
  return {};
}

// ---- membership while mounted

bool mirror_device::syncing() const { return sync_active_.load(std::memory_order_acquire); }

bool mirror_device::sync_admit(io_request* r, op_state* op) {
  std::lock_guard g(sync_mu_);
  uint64_t lo = r->offset, hi = r->offset + r->length;
  if (win_set_ && lo < win_hi_ && win_lo_ < hi) {
    delete op;
    parked_.push_back(*r);  // submitted again by the copy when its chunk is on the new member
    return true;
  }
  op->tracked = true;
  writes_.push_back({op, {lo, hi}});
  return false;
}

void mirror_device::sync_retire(op_state* op) {
  std::lock_guard g(sync_mu_);
  for (size_t k = 0; k < writes_.size(); k++)
    if (writes_[k].first == op) {
      writes_[k] = writes_.back();
      writes_.pop_back();
      break;
    }
  if (win_set_) sync_cv_.notify_all();
}

void mirror_device::fail_sync(size_t i, int err, const char* what) {
  std::lock_guard lk(state_mu_);
  member& m = *members_[i];
  if (!m.syncing.load()) return;
  m.syncing.store(false);
  m.error = err;
  m.failed_op = io_op::write;
  DEV_LOG("mirror: member %s failed while being copied (%s: %s): left out of service", m.label.c_str(), what,
          std::strerror(err));
}

// The copy of a member added while mounted (add_member): chunk by chunk from a member in service, with the
// writes over the chunk held back (see mirror.h), then a flush; then it joins.
void mirror_device::background_sync(size_t to) {
  member& d = *members_[to];
  uint64_t chunk = std::max<uint64_t>(o_.resync_chunk / sector_ * sector_, sector_);
  void* buf = std::aligned_alloc(std::max<uint32_t>(sector_, 4096), chunk);
  uint64_t t0 = now_ns();
  std::string from;
  auto release_window = [&] {
    req_list out;
    {
      std::lock_guard g(sync_mu_);
      win_set_ = false;
      out.swap(parked_);
    }
    while (!out.empty()) {  // back through submit: admitted now that the window is gone
      io_request& r = out.front();
      out.pop_front();
      submit(&r);
    }
  };
  if (!buf) fail_sync(to, ENOMEM, "copy buffer");
  for (uint64_t off = 0; buf && off < size_ && d.syncing.load();) {
    size_t len = size_t(std::min(chunk, size_ - off));
    {
      std::unique_lock g(sync_mu_);
      if (sync_stop_) break;
      win_lo_ = off;
      win_hi_ = off + len;
      win_set_ = true;
      sync_cv_.wait(g, [&] {
        if (sync_stop_) return true;
        for (auto& w : writes_)
          if (w.second.first < win_hi_ && win_lo_ < w.second.second) return false;
        return true;
      });
      if (sync_stop_) {
        g.unlock();
        release_window();
        break;
      }
    }
    int src = -1;
    for (size_t i = 0, n = count(); i < n && src < 0; i++)
      if (members_[i]->live.load()) src = int(i);
    if (src < 0) {
      fail_sync(to, EIO, "no member in service to copy from");
      release_window();
      break;
    }
    member& sm = *members_[size_t(src)];
    from = sm.label;
    if (int e = dev_sync_io(*sm.dev, io_op::read, off, buf, len, 0)) {
      fail_member(size_t(src), e, io_op::read, off, len);  // and the chunk again, from the next one
      release_window();
      continue;
    }
    if (int e = dev_sync_io(*d.dev, io_op::write, off, buf, len, 0)) fail_sync(to, e, "copy write");
    release_window();
    off += len;
    d.sync_bytes.store(off, std::memory_order_relaxed);
  }
  std::free(buf);
  bool done = d.syncing.load() && d.sync_bytes.load() >= size_;
  if (done)
    if (int e = dev_sync_io(*d.dev, io_op::flush, 0, nullptr, 0, 0)) {
      fail_sync(to, e, "flush");
      done = false;
    }
  {
    std::lock_guard lk(state_mu_);
    if (done && d.syncing.load()) {
      d.syncing.store(false);
      d.live.store(true);
      d.resynced = true;
      in_service_++;
      membership_gen_++;  // the updater writes every record in service, the new one included, one event on
      state_cv_.notify_all();
      double secs = double(now_ns() - t0) / 1e9;
      DEV_LOG("mirror: member %s copied from %s in the background: %" PRIu64 " MiB in %.2f s (%.0f MiB/s); in "
              "service, %zu members",
              d.label.c_str(), from.c_str(), size_ >> 20, secs, secs > 0 ? double(size_ >> 20) / secs : 0.0,
              in_service_);
    } else if (d.syncing.load()) {  // stopped by the unmount
      d.syncing.store(false);
      DEV_LOG("mirror: the copy of %s stopped at %" PRIu64 " of %" PRIu64 " MiB (unmount): it stays stale",
              d.label.c_str(), d.sync_bytes.load() >> 20, size_ >> 20);
    }
  }
  std::lock_guard g(sync_mu_);
  sync_active_.store(false, std::memory_order_release);
}

std::string mirror_device::add_member(mirror_member_spec spec) {
  if (o_.readonly) return "mirror: a read-only mount writes no member: remount read-write first";
  if (sync_active_.load()) return "mirror: a member is already being copied: wait for it (vnopfs-ctl ... status)";
  if (count() >= kMaxMembers) return "mirror: already " + std::to_string(kMaxMembers) + " members";
  device* dev = spec.stack->top();
  if (dev->size() < size_)
    return "mirror member '" + spec.label + "' has " + std::to_string(dev->size()) + " bytes, the mirror " +
           std::to_string(size_);
  if (dev->sector_size() > sector_)
    return "mirror member '" + spec.label + "' needs " + std::to_string(dev->sector_size()) +
           "-byte alignment, the mirror's requests have " + std::to_string(sector_);
  {
    std::lock_guard lk(state_mu_);
    for (auto& m : members_)
      if (m->label == spec.label && !m->removed) return "mirror member '" + spec.label + "' is already a member";
  }
  // A restart before the copy is done must find it stale.
  if (int e = write_mirror_record(spec.state_path, {set_id_, 0, false, spec.label}))
    return "mirror member '" + spec.label + "': cannot write its state record '" + spec.state_path + "': " + errstr(e);
  auto m = std::make_unique<member>();
  m->stack = std::move(spec.stack);
  m->dev = dev;
  m->label = spec.label;
  m->state_path = spec.state_path;
  m->live.store(false);
  m->syncing.store(true);
  size_t i;
  {
    std::lock_guard lk(state_mu_);
    members_.push_back(std::move(m));
    i = members_.size() - 1;
    n_.store(members_.size(), std::memory_order_release);
  }
  if (sync_thread_.joinable()) sync_thread_.join();  // an earlier copy, finished
  {
    std::lock_guard g(sync_mu_);
    sync_stop_ = false;
    win_set_ = false;
    sync_active_.store(true, std::memory_order_release);
  }
  DEV_LOG("mirror: member %s added: copying %" PRIu64 " MiB onto it in the background (writes go to it "
          "already; it serves reads once the copy is done)",
          members_[i]->label.c_str(), size_ >> 20);
  sync_thread_ = std::thread([this, i] { background_sync(i); });
  return {};
}

std::string mirror_device::remove_member(const std::string& label) {
  std::lock_guard lk(state_mu_);
  std::string names;
  for (auto& mp : members_) {
    member& m = *mp;
    if (m.removed) continue;
    names += (names.empty() ? "'" : ", '") + m.label + "'";
    if (m.label != label) continue;
    if (m.syncing.load()) {  // the copy sees it and stops
      m.syncing.store(false);
      m.removed = true;
      DEV_LOG("mirror: member %s removed while being copied: the copy stops", m.label.c_str());
      return {};
    }
    if (m.live.load() && in_service_ == 1) return "mirror member '" + label + "' is the last one in service";
    if (m.live.load()) {
      m.live.store(false);
      in_service_--;
      membership_gen_++;  // the others' records go one event on: this one is stale from now on
      state_cv_.notify_all();
    }
    m.removed = true;
    DEV_LOG("mirror: member %s removed: out of service for good, %zu in service", m.label.c_str(), in_service_);
    return {};
  }
  return "no mirror member '" + label + "' (members: " + names + ")";
}

std::unique_ptr<mirror_device> make_mirror(std::vector<mirror_member_spec> members, const mirror_options& o,
                                           std::string* msg) {
  if (members.size() < 2 || members.size() > 32) {
    *msg = "a mirror needs 2 to 32 members (" + std::to_string(members.size()) + " given)";
    return nullptr;
  }
  try {
    auto m = std::make_unique<mirror_device>(std::move(members), o);
    if (std::string e = m->open(); !e.empty()) {
      *msg = e;
      return nullptr;
    }
    return m;
  } catch (const std::exception& e) {  // bad_alloc, or system_error from a thread
    *msg = std::string("mirror: ") + e.what();
    return nullptr;
  }
}

}  // namespace vnopfs::dev

// mirror.h: RAID-1 over two or more member devices (-o mirror=a.img+b.img; docs/dev.md, "A mirror").
//
// I/O:
// - write, flush, unmap go to every member in service as one child each; the caller's request completes
//   once, when the last child has. One child succeeding is success (bytes: the least any member did); a
//   member whose child fails leaves service ("failed": the array is degraded) with one log line, and gets
//   no more requests. Every member failing gives EIO (or the members' common request error, EINVAL or
//   ENOMEM, which says nothing about a member's health and takes none out of service). Overlapping writes
//   in flight at once are not ordered between members (md's RAID-1 does not either): each member may apply
//   them in another order. The buffer cache never issues them (a block is busy while it is written); two
//   processes' overlapping O_DIRECT writes can, and then the members may differ in that range.
// - read goes to one member in service: the one whose last read ended where this one starts (a
//   sequential stream stays on one member's read-ahead), else the one with the fewest reads in flight,
//   round-robin among equals. A failed read takes that member out of service and is tried on the next one;
//   the caller sees an error only when no member could serve it.
//
// Membership state (why and where: docs/dev.md): each member has a state record beside it (a small text
// file, written atomically: temp file, fsync, rename, fsync of the directory) holding the set's id, an
// events counter and a clean flag, after md's superblock events. The counter goes up on every member in
// service at every mount, whenever a member leaves service, and at a clean stop (clean flag set); a member
// whose counter is behind the highest missed writes. A successful write completed after a member left
// service is held back until the records of the members still in service say so, so a crash never leaves
// a stale member looking current. make_mirror reads the records and, before serving anything, resyncs each
// stale member (full copy from a current one) or refuses the set naming the member and the counters
// (mirror_options::stale). After an unclean stop (clean flag off on the current members) the current
// members other than the first are resynced too (blocks in flight at the crash may differ). A current member
// whose image file is newer than its clean record was written outside the mirror: with another current
// member beside it the set is refused (which copy is right cannot be told). A member the
// copy cannot write to is left out of service (degraded, its record behind); a failed read of the source
// refuses the set.
//
// Threads: completions run on the members' threads; refused requests complete on the layer's deferred
// thread ("mirror-deferred" is the deferred_queue's); the records are written by one thread of the layer.
// The destructor waits for everything submitted, flushes each member in service and marks it clean.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "src/dev/deferred.h"
#include "src/dev/gate.h"
#include "src/dev/req_list.h"
#include "src/dev/stack.h"
#include "src/dev/stats.h"
#include "vnopfs/device.h"

namespace vnopfs::dev {

// One member: its device with its own layers (-o mirror_layers=), the path the messages name, and where
// its state record lives.
struct mirror_member_spec {
  std::unique_ptr<dev_stack> stack;
  std::string label;
  std::string state_path;
};

enum class mirror_stale : uint8_t { resync, refuse };

struct mirror_options {
  mirror_stale stale = mirror_stale::resync;
  bool readonly = false;  // nothing written: stale members are left out of service instead of resynced
  uint64_t resync_chunk = 1u << 20;
};

// The state record of one member.
struct mirror_record {
  std::string set_id;  // 16 hex digits, chosen when the set is first opened
  uint64_t events = 0;
  bool clean = false;
  std::string member;  // the member's label when written (for people reading the file)
};
// 0, ENOENT (no record), EINVAL (not a record of ours), or the errno of the read.
int read_mirror_record(const std::string& path, mirror_record* r);
int write_mirror_record(const std::string& path, const mirror_record& r);  // 0 or errno; atomic

struct mirror_member_status {
  std::string label;
  std::string device;   // the member's top device name
  bool in_service = true;
  bool syncing = false;     // added while mounted, being copied in the background (writes go to it already)
  uint64_t sync_bytes = 0;  // how far the background copy has come
  bool removed = false;     // taken out with remove_member
  bool resynced = false;  // copied from a current member at open
  int error = 0;          // why it left service
  io_op failed_op = io_op::read;
  uint64_t events = 0;    // its record's counter, as last written (or read, for a member out of service)
  uint64_t reads = 0;     // reads the mirror sent it
  device_stats stats;     // its top device's counters
};

class mirror_device final : public device {
 public:
  struct member;
  mirror_device(std::vector<mirror_member_spec> members, const mirror_options& o);  // use make_mirror
  ~mirror_device() override;

  void submit(io_request* r) override;
  uint64_t size() const override { return size_; }
  uint32_t sector_size() const override { return sector_; }
  std::string name() const override;
  device_stats stats() const override { return st_.snapshot(); }

  std::vector<mirror_member_status> status() const;
  uint64_t events() const;
  size_t in_service() const;
  bool degraded() const;  // fewer members in service than members not removed
  device* member_device(size_t i) const;  // its top (tests)
  dev_stack* member_stack(size_t i) const;

  // make_mirror's steps; "" or the message.
  std::string open();

  // ---- membership while mounted (vnopfs-ctl MOUNTPOINT mirror-add | mirror-remove; docs/dev.md)
  // Adds a member and copies the mirror onto it in the background. The caller guarantees that no request
  // is in flight in the mirror during the call (the daemon suspends the device switch above it): from then
  // on every write also goes to the new member, and the copy holds back the writes that overlap the chunk it
  // is copying (and waits for those in flight there) so that no older copy lands over a newer write. Reads
  // never go to it, and its writes' success counts for nothing, until the copy and a flush are done; then it
  // joins the service and the records of every member in service are written at a new event count. Its own
  // record is written first with events 0: a restart before the end finds it stale. One copy at a time.
  // "" or the message (nothing changed): too many members, too small, a copy running, a record that cannot
  // be written. A copy that fails (the new member's write fails, or no member is left to read from) logs it
  // and leaves the member out of service.
  std::string add_member(mirror_member_spec spec);
  // Takes a member out of service for good (the copy, if it is the one being copied, stops); the records of
  // the others go one event further, so it is stale from now on. Refused for the last member in service.
  // "" or the message.
  std::string remove_member(const std::string& label);
  // True while a background copy runs.
  bool syncing() const;

 private:
  struct op_state;
  void submit_read(io_request* r, op_state* op);
  int pick_reader(const io_request* r, uint32_t tried) const;
  void fail_member(size_t i, int err, io_op op, uint64_t off, uint64_t len);
  void complete(io_request* p, int err, size_t bytes);
  void defer(io_request* r, int err);
  void updater();
  std::string resync(size_t from, size_t to, int* target_error);  // *target_error: the copy could not be written
  void background_sync(size_t to);
  // Background copy: writes overlapping the chunk being copied wait; the copy waits for the writes in flight
  // over it. Both under sync_mu_. True when r was parked (submit returns at once).
  bool sync_admit(io_request* r, op_state* op);
  void sync_retire(op_state* op);
  void fail_sync(size_t i, int err, const char* what);
  size_t count() const { return n_.load(std::memory_order_acquire); }
  static void read_done(io_request* c, int err, size_t bytes);
  static void multi_done(io_request* c, int err, size_t bytes);
  static void run_deferred(void* ctx, io_request* r);

  // Capacity reserved for kMaxMembers at construction, so add_member's push_back never moves the vector:
  // I/O paths read members_[i] for i < count() without a lock; the vector itself changes only under
  // state_mu_.
  static constexpr size_t kMaxMembers = 32;
  std::vector<std::unique_ptr<member>> members_;
  std::atomic<size_t> n_{0};
  const mirror_options o_;
  uint64_t size_ = 0;
  uint32_t sector_ = 512;
  std::string set_id_;
  stats_keeper st_;
  mutable std::atomic<uint64_t> rr_{0};  // read round-robin

  mutable std::mutex state_mu_;  // below, and members' in_service changes
  std::condition_variable state_cv_;
  uint64_t events_ = 0;          // the counter the in-service members' records hold (or are about to)
  uint64_t membership_gen_ = 0;  // bumped when a member leaves service
  uint64_t persisted_gen_ = 0;   // the membership the records say
  size_t in_service_ = 0;
  req_list held_;                // successful completions waiting for the records
  bool stop_ = false;
  bool opened_ = false;
  std::thread updater_;

  // The background copy (add_member).
  std::atomic<bool> sync_active_{false};  // a member is being copied: writes are checked against the chunk
  mutable std::mutex sync_mu_;            // below
  std::condition_variable sync_cv_;
  bool win_set_ = false;
  uint64_t win_lo_ = 0, win_hi_ = 0;       // the chunk being copied
  req_list parked_;                        // writes over it, until it is done
  std::vector<std::pair<op_state*, std::pair<uint64_t, uint64_t>>> writes_;  // tracked writes in flight
  bool sync_stop_ = false;
  std::thread sync_thread_;

  inflight_gate gate_;
  deferred_queue deferred_;
};

// Opens the set (records, resync or refusal, the events bump; see above). nullptr and *msg when refused.
std::unique_ptr<mirror_device> make_mirror(std::vector<mirror_member_spec> members, const mirror_options& o,
                                           std::string* msg);

}  // namespace vnopfs::dev

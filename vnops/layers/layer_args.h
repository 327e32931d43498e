// layer_args.h: the rule that picks which calls a layer acts on, from the arguments of a layer named on
// -o layers= (`faults:op=write:errno=EIO:every=3`; layer_args and parse_errno are in vnopfs/layer.h), and
// rule_layer, the base of the layers that act on them (faults, delay).
//
// Syntax: NAME[:KEY=VALUE]... Keys are the layer's own; an unknown key, a missing '=' or a bad value is an
// error naming it. The rule keys every acting layer understands:
//   op=NAME[/NAME...]   VNOPs the rule applies to (vnop.def names: write, read, lookup...; "*" = all; default all)
//   ino=N               only calls whose first vnode has this id (ext2: the inode number)
//   path=/A/B           only calls on the vnode reached by that path from the root (learnt from LOOKUPs
//                       passing through the layer; a file reached before the layer saw its lookup is missed)
//   every=N             the Nth, 2Nth ... matching call (default 1: every one)
//   after=N             only after N matching calls have passed (default 0)
//   count=N             at most N times in all (default unlimited)
//   prob=P              each otherwise chosen call with probability P (0..1, default 1), drawn from
//   seed=S              a generator seeded with S (default 1): the same seed gives the same choices
// Thread safety: rule::match may be called from any number of threads at once (one mutex inside, held only
// for the counters and the generator, never across a VNOP).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "vnopfs/layer.h"
#include "vnopfs/vnops.h"

namespace vnopfs {

class layer_rule {
 public:
  // Takes the rule keys out of args. false and *err on a bad value.
  bool configure(layer_args* args, std::string* err);
  // Is this call (ap: any VNOP args struct) one the rule picks? Counts it either way.
  bool match(void* ap);
  // Feeds a LOOKUP's result to the path matcher (called by the layer after a successful lookup).
  void note_lookup(const vnop_lookup_args* ap);
  bool wants_lookups() const { return !path_.empty(); }
  // Takes ops the layer cannot act on out of the rule: an error naming the first if op= named it
  // explicitly, silently when it came from the default "all".
  bool exclude_ops(std::initializer_list<const vnodeop_desc*> ds, std::string* err);
  std::string describe() const;

 private:
  std::vector<bool> ops_ = std::vector<bool>(VNOP_COUNT, true);
  bool explicit_ops_ = false;
  bool any_ino_ = true;
  uint64_t ino_ = 0;
  std::string path_;  // normalised: "/a/b"
  uint64_t every_ = 1, after_ = 0, count_ = UINT64_MAX;
  double prob_ = 1.0;
  uint64_t seed_ = 1;
  std::mutex mu_;
  uint64_t seen_ = 0, fired_ = 0;           // [mu_]
  std::mt19937_64 rng_;                     // [mu_]
  std::unordered_map<uint64_t, std::string> paths_;  // [mu_] vnode id -> path, prefixes of path_ only
};

// A layer whose every slot runs one function: calls its rule picks go to picked(), the rest (and those
// picked() lets through) to the table below; a successful LOOKUP is fed to the rule's path matcher.
class rule_layer : public layer {
 public:
  rule_layer(const char* name, const vnop_table* below);
  const vnop_table* table() const override { return &self_.table; }
  const char* name() const override { return name_; }
  layer_rule& rule() { return rule_; }

 protected:
  // A call the rule picked, before it goes down: an errno fails it there (nothing below runs), -1 passes it.
  virtual int picked(void* ap) = 0;

 private:
  struct owned_table {  // the table first: the running table's address is this struct's
    vnop_table table;
    rule_layer* owner;
  };
  static int call(void* ap);
  owned_table self_{};
  const char* name_;
  layer_rule rule_;
};

}  // namespace vnopfs

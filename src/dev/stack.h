// stack.h: device layers stacked over a backend by name (-o dev_layers=, docs/dev.md), bottom first, each
// written NAME[:KEY=VALUE[:KEY=VALUE...]], the form VNOP layers take (-o layers=):
//
//   faults[:op=OP|OP..][:errno=E][:action=fail|delay|tear][:every=N][:prob=P][:seed=S][:limit=N]
//         [:lo=BYTES][:hi=BYTES][:us=N][:tear=BYTES]
//       one rule of src/dev/faults.h (none: a pass-through that counts); OP is read, write, flush, unmap or
//       all; E a name (EIO, ENOSPC, EROFS, ENOMEM, EINVAL, EAGAIN) or a number
//   partition:start=BYTES[:length=BYTES]
//       a byte window of the device below (length: to its end); sizes take K/M/G
//   record:log=PATH
//       every write, flush and unmap that reaches the device below, to a log (src/dev/record.h)
//
// parse_dev_layers checks a list (',' or '+' between layers) without touching anything; dev_stack builds it
// and owns the layers and the backend, destroying them top first.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "vnopfs/device.h"

namespace vnopfs::dev {

struct dev_layer_spec {
  std::string name;
  std::vector<std::pair<std::string, std::string>> args;
  std::string text;  // as written
};

// The names parse_dev_layers accepts, in the order the messages list them.
const std::vector<std::string>& dev_layer_names();

// "" or a message naming the bad layer or argument (an unknown name lists the known ones).
std::string parse_dev_layers(const std::string& list, std::vector<dev_layer_spec>* out);

class dev_stack {
 public:
  explicit dev_stack(std::unique_ptr<device> backend) : backend_(std::move(backend)) {}
  ~dev_stack();
  dev_stack(const dev_stack&) = delete;
  dev_stack& operator=(const dev_stack&) = delete;

  // Stacks the layers of specs over the current top. "" or the message of the first layer that failed
  // (the layers built before it stay).
  std::string push(const std::vector<dev_layer_spec>& specs);
  // The runtime swap, in two steps (the daemon's set_dev_layers). build_over builds the layers of specs over
  // the keep-th layer (the backend for 0), beside the layers there now, touching nothing of the stack: on an
  // error nothing is left built. replace then puts them in place of the layers above the first `keep`,
  // moving those to *old (bottom first) for the caller to destroy, top first, once nothing is in flight in
  // them (the device switch over the stack has drained: src/dev/switch.h).
  std::string build_over(size_t keep, const std::vector<dev_layer_spec>& specs,
                         std::vector<std::unique_ptr<device>>* built) const;
  void replace(size_t keep, std::vector<std::unique_ptr<device>> built, std::vector<std::unique_ptr<device>>* old);
  size_t layer_count() const { return layers_.size(); }
  device* top() const { return layers_.empty() ? backend_.get() : layers_.back().get(); }
  device* backend() const { return backend_.get(); }
  // Bottom first: the backend, then each layer.
  std::vector<device*> members() const;

 private:
  // One layer over below; nullptr and *err on failure.
  static std::unique_ptr<device> build(const dev_layer_spec& s, device* below, std::string* err);

  std::unique_ptr<device> backend_;
  std::vector<std::unique_ptr<device>> layers_;
};

}  // namespace vnopfs::dev

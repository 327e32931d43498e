// dev_fixture.cpp: building each kind of device under test.
#include "dev_fixture.h"

namespace devtest {

static std::unique_ptr<device> open_file(dut& d, bool direct, bool sort, int* err) {
  file_options o;
  o.direct = direct;
  o.sort_queue = sort;
  o.create_size = kDevSize + (2u << 20);
  return make_file_device(d.path, o, err);
}

static std::unique_ptr<device> open_backend(dut& d, int* err) {
  if (d.kind.rfind("uring", 0) == 0) {
    uring_options o;
    o.direct = d.direct;
    return make_uring_device(d.path, o, err);
  }
  return open_file(d, d.direct, d.kind != "file-nosort", err);
}

static void build(dut& d) {
  int err = 0;
  if (d.kind == "mem" || d.kind == "faults(mem)") {
    mem_options o;
    o.size = kDevSize;
    o.volatile_cache = true;
    o.completion_threads = 2;
    d.mem = make_mem_device(o);
    d.dev = d.mem.get();
    if (d.kind == "faults(mem)") {
      d.layer = make_faults(d.mem.get());
      d.dev = d.layer.get();
    }
    return;
  }
  if (d.kind == "uring" || d.kind == "uring+direct") {
    // the backing file must exist before uring opens it
    file_options fo;
    fo.create_size = kDevSize;
    if (!std::filesystem::exists(d.path)) {
      auto f = make_file_device(d.path, fo, &err);
      if (!f) { d.skip = "cannot create " + d.path + ": " + strerror(err); return; }
    }
  }
  d.base = open_backend(d, &err);
  if (!d.base) {
    d.skip = d.kind + " unavailable here: " + strerror(err);
    return;
  }
  d.dev = d.base.get();
  if (d.kind == "partition(file)") {
    d.part_start = 1u << 20;
    d.layer = make_partition(d.base.get(), d.part_start, kDevSize);
    d.dev = d.layer.get();
  }
}

std::unique_ptr<dut> make_dut(const std::string& kind) {
  auto d = std::make_unique<dut>();
  d->kind = kind;
  d->direct = kind.find("+direct") != std::string::npos;
  if (kind != "mem" && kind != "faults(mem)") d->path = temp_path("dev");
  build(*d);
  return d;
}

void dut::crash() {
  if (mem) {
    mem->power_loss();
    return;
  }
  layer.reset();
  base.reset();
  dev = nullptr;
  build(*this);
}

uint32_t io_align(const dut& d) { return d.direct ? d.dev->sector_size() : 1; }

}  // namespace devtest

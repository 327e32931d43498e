// dev_stack_test.cpp: device layers by name (src/dev/stack.h, -o dev_layers=): parsing, messages, and a
// stack built over a mem device that does what its layers say.
#include <catch2/catch.hpp>

#include "dev_fixture.h"
#include "src/dev/record.h"
#include "src/dev/stack.h"

using namespace devtest;

TEST_CASE("dev_layers: names, arguments and their errors", "[dev][stack]") {
  std::vector<dev_layer_spec> v;
  CHECK(parse_dev_layers("", &v) == "");
  CHECK(v.empty());
  REQUIRE(parse_dev_layers("partition:start=1M:length=2M+faults:op=write|flush:errno=ENOSPC,record:log=/x", &v) == "");
  REQUIRE(v.size() == 3);
  CHECK(v[0].name == "partition");
  CHECK(v[0].args.size() == 2);
  CHECK(v[1].name == "faults");
  CHECK(v[2].args[0].second == "/x");
  CHECK(parse_dev_layers("mirror", &v) == "unknown device layer 'mirror' (known: faults, partition, record)");
  CHECK(parse_dev_layers("record", &v) == "device layer 'record' needs log=PATH");
  CHECK(parse_dev_layers("partition:length=5", &v) == "device layer 'partition' needs start=BYTES");
  CHECK(parse_dev_layers("faults:op=sideways", &v) == "device layer 'faults': bad value 'sideways' for op");
  CHECK(parse_dev_layers("faults:colour=red", &v).find("unknown argument 'colour'") != std::string::npos);
  CHECK(parse_dev_layers("faults:prob", &v) == "device layer 'faults': 'prob' is not KEY=VALUE");
}

TEST_CASE("dev_layers: a stack over a mem device, bottom first", "[dev][stack]") {
  mem_options o;
  o.size = 4 << 20;
  std::string log = temp_path("stack.log");
  std::vector<dev_layer_spec> specs;
  REQUIRE(parse_dev_layers("partition:start=1M:length=1M+faults:op=unmap:errno=EROFS+record:log=" + log, &specs) == "");
  dev_stack st(make_mem_device(o));
  auto* m = static_cast<mem_device*>(st.backend());
  REQUIRE(st.push(specs) == "");
  REQUIRE(st.members().size() == 4);
  device* top = st.top();
  CHECK(top->name() == "record(faults(partition(1048576+1048576 of mem)))");
  CHECK(top->size() == (1u << 20));
  std::vector<char> a(4096, 'a'), r(4096);
  REQUIRE(dev_sync_io(*top, io_op::write, 8192, a.data(), a.size()) == 0);
  m->peek((1 << 20) + 8192, r.data(), r.size());  // through the partition's offset
  CHECK(r == a);
  CHECK(dev_sync_io(*top, io_op::unmap, 0, nullptr, 4096) == EROFS);  // the faults rule
  CHECK(dev_sync_io(*top, io_op::flush, 0, nullptr, 0) == 0);
  record_log rl;
  REQUIRE(read_record_log(log, &rl) == "");
  REQUIRE(rl.entries.size() == 3);  // write, the failed unmap, flush
  CHECK(rl.entries[1].flags & REC_FAILED);
  CHECK(rl.entries[2].covered == 2);

  dev_stack bad(make_mem_device(o));
  REQUIRE(parse_dev_layers("partition:start=3M:length=2M", &specs) == "");
  CHECK(bad.push(specs).find("does not fit") != std::string::npos);
}

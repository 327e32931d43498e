// vnopfs-replay: reads the log of a `record` device layer (src/dev/record.h, docs/durability.md).
//
//   vnopfs-replay list LOG
//       one line per record: SEQ KIND OFFSET LENGTH COVERED FLAGS (kind write|flush|unmap; covered: the last
//       seq a flush makes stable, 0 for the others; flags: fua,failed,meta or -)
//   vnopfs-replay apply LOG IMAGE [--upto N] [--drop SEQ,SEQ,...]
//       writes records 1..N (default: all) into IMAGE, a copy of the device as it was when the log began,
//       leaving out failed writes and the dropped seqs: what the device would hold after a crash there.
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "src/dev/record.h"

using namespace vnopfs::dev;

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: vnopfs-replay list LOG\n"
               "       vnopfs-replay apply LOG IMAGE [--upto N] [--drop SEQ,SEQ,...]\n");
  return 2;
}

const char* kind_name(record_kind k) {
  switch (k) {
    case record_kind::write: return "write";
    case record_kind::flush: return "flush";
    default: return "unmap";
  }
}

bool parse_u64(const char* s, uint64_t* v) {
  char* end = nullptr;
  errno = 0;
  unsigned long long x = std::strtoull(s, &end, 10);
  if (errno || end == s || *end) return false;
  *v = x;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  std::string cmd = argv[1], path = argv[2];
  record_log log;
  if (std::string e = read_record_log(path, &log); !e.empty()) {
    std::fprintf(stderr, "vnopfs-replay: %s\n", e.c_str());
    return 1;
  }
  if (cmd == "list" && argc == 3) {
    std::printf("# block_size %u device_size %" PRIu64 " records %zu\n", log.block_size, log.device_size,
                log.entries.size());
    for (const record_entry& e : log.entries) {
      std::string f;
      if (e.flags & REC_FUA) f += "fua,";
      if (e.flags & REC_FAILED) f += "failed,";
      if (e.flags & REC_META) f += "meta,";
      if (f.empty()) f = "-,";
      f.pop_back();
      std::printf("%" PRIu64 " %s %" PRIu64 " %" PRIu64 " %" PRIu64 " %s\n", e.seq, kind_name(e.kind), e.offset,
                  e.length, e.covered, f.c_str());
    }
    return 0;
  }
  if (cmd != "apply" || argc < 4) return usage();
  std::string image = argv[3];
  uint64_t upto = 0;
  std::vector<uint64_t> drop;
  for (int i = 4; i < argc; i++) {
    if (!std::strcmp(argv[i], "--upto") && i + 1 < argc) {
      if (!parse_u64(argv[++i], &upto)) return usage();
    } else if (!std::strcmp(argv[i], "--drop") && i + 1 < argc) {
      std::string list = std::string(argv[++i]) + ",";
      for (size_t q = 0, c; (c = list.find(',', q)) != std::string::npos; q = c + 1) {
        if (c == q) continue;
        uint64_t v;
        if (!parse_u64(list.substr(q, c - q).c_str(), &v)) return usage();
        drop.push_back(v);
      }
    } else {
      return usage();
    }
  }
  if (std::string e = replay_record_log(path, log, image, upto, drop); !e.empty()) {
    std::fprintf(stderr, "vnopfs-replay: %s\n", e.c_str());
    return 1;
  }
  return 0;
}

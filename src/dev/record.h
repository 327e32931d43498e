// record.h: the `record` device layer and its log (docs/durability.md): every write, unmap and flush that
// the device below completes, with the data written, appended to a log file in the order the completions
// came back, so that a checker can rebuild what the device held at any point of a run (vnopfs-replay,
// scripts/crashcheck). Reads pass straight through. A layer that is not stacked costs nothing: there is
// no hook in any other path.
//
// Log format (version 1, all integers little-endian):
//   header, 32 bytes: magic "VNOPREC1" (8), u32 version = 1, u32 block_size (the sector size of the device
//     below), u64 device_size (bytes), u64 reserved (0).
//   records, each a 40-byte head followed by `length` bytes of data for a write (none for the others):
//     u64 seq     1, 2, 3 ... in log order (the order of completion)
//     u8  kind    1 = write, 2 = flush, 3 = unmap
//     u8  flags   1 = FUA (the write was stable at its completion), 2 = failed (the device returned an
//                 error: what reached the medium is unknown; data is what was submitted), 4 = metadata
//     u16 0, u32 error (the errno of a failed request, else 0)
//     u64 offset  bytes from the start of the device (0 for a flush)
//     u64 length  bytes written or unmapped (0 for a flush)
//     u64 covered for a flush: the seq of the last record logged before the flush was submitted; the
//                 flush makes every write up to it stable (device.h: writes in flight at the submit of a
//                 flush are not covered). 0 for the others.
// A crash at record N (the device saw records 1..N) leaves stable: every write covered by a flush among
// 1..N, every FUA write; the other writes in 1..N may each be there or not (a device reorders), and a
// write may be torn at sector_size granularity (not modelled by the checker: see docs/durability.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vnopfs/device.h"

namespace vnopfs::dev {

constexpr char kRecordMagic[8] = {'V', 'N', 'O', 'P', 'R', 'E', 'C', '1'};
constexpr uint32_t kRecordVersion = 1;
constexpr size_t kRecordHeaderBytes = 32;
constexpr size_t kRecordHeadBytes = 40;

enum class record_kind : uint8_t { write = 1, flush = 2, unmap = 3 };
enum : uint8_t { REC_FUA = 0x1, REC_FAILED = 0x2, REC_META = 0x4 };

// Stacks a record layer over `below`, logging to the file at log_path (created or truncated, mode 0600).
// nullptr and *err (an errno) when the file cannot be created.
std::unique_ptr<device> make_record(device* below, const std::string& log_path, int* err);

// ---- reading a log (vnopfs-replay, tests)

struct record_entry {
  uint64_t seq = 0;
  record_kind kind = record_kind::write;
  uint8_t flags = 0;
  uint32_t error = 0;
  uint64_t offset = 0, length = 0, covered = 0;
  uint64_t data_pos = 0;  // file offset of the data (writes)
};

struct record_log {
  uint32_t block_size = 0;
  uint64_t device_size = 0;
  std::vector<record_entry> entries;  // in seq order
};

// Reads the header and every record head of the log at path (a torn last record, from a crash of the
// recording process, is ignored). "" or a message.
std::string read_record_log(const std::string& path, record_log* out);

// Applies records 1..upto (0: all) of the log at `path` to the image file `image` (a copy of the device's
// contents when the log began), skipping failed writes and the seqs in `drop`. "" or a message.
std::string replay_record_log(const std::string& path, const record_log& log, const std::string& image,
                              uint64_t upto, const std::vector<uint64_t>& drop);

}  // namespace vnopfs::dev

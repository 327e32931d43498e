// label.h: the partition label of a disk image (MBR or GPT, as sfdisk writes them), read to find partition N
// for -o partition=N. Only the label is read; the partition itself is served through the `partition` layer
// (partition.cpp), which refuses I/O outside the window found here.
//
// MBR: the four primary entries of sector 0 (signature 0x55AA at byte 510); N is 1..4. An entry of type 0
// is empty; an extended container (types 0x05, 0x0f, 0x85) holds no filesystem and is refused; logical
// partitions (5 and up) are not read.
// GPT (sector 0 is a protective MBR, type 0xEE): the primary header at LBA 1 and its entry array, both
// checked against their CRC32; N is 1..NumberOfPartitionEntries and the entry must be in use (type GUID not
// zero) and lie between FirstUsableLBA and LastUsableLBA. The backup header is not consulted: a primary
// label that fails a check is refused, naming the field.
// LBA size: the caller's (512 for an image file, as sfdisk assumes; a block device's logical sector size).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace vnopfs::dev {

struct partition_extent {
  uint64_t start = 0;   // bytes from the start of the disk
  uint64_t length = 0;  // bytes
  std::string scheme;   // "mbr" or "gpt"
};

// Reads len bytes at off into buf; 0 or an errno. Short reads past the end of the disk are the reader's
// to report (EIO).
using label_read_fn = std::function<int(uint64_t off, void* buf, size_t len)>;

// Finds partition n (1-based) of the disk of disk_size bytes. "" and *out, or a message that names the bad
// field ("GPT header: HeaderCRC32 is 0x.. (computed 0x..)") or the missing partition.
std::string find_partition(const label_read_fn& read, uint64_t disk_size, uint32_t lba_size, unsigned n,
                           partition_extent* out);

// The reader over a file descriptor (pread), for the daemon's preflight.
label_read_fn label_reader_fd(int fd);

// CRC-32 (IEEE 802.3, reflected, as zlib and the UEFI specification use), exposed for the tests that write
// labels by hand.
uint32_t crc32_ieee(const void* data, size_t len, uint32_t crc = 0);

}  // namespace vnopfs::dev

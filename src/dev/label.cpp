// label.cpp: MBR and GPT labels (label.h). The on-disk fields are little-endian at fixed offsets (UEFI 2.10
// section 5), decoded byte by byte so the code does not depend on the host's byte order or on packing.
#include "src/dev/label.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace vnopfs::dev {
namespace {

uint64_t le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

std::string read_err(const char* what, int e) { return std::string("cannot read the ") + what + ": " + std::strerror(e); }

bool is_extended(uint8_t type) { return type == 0x05 || type == 0x0f || type == 0x85; }

std::string find_gpt(const label_read_fn& read, uint64_t disk_size, uint32_t lba, unsigned n, partition_extent* out) {
  std::vector<uint8_t> h(lba);
  if (int e = read(lba, h.data(), lba)) return read_err("GPT header (LBA 1)", e);
  if (std::memcmp(h.data(), "EFI PART", 8) != 0)
    return "GPT header: Signature is not 'EFI PART' (the protective MBR says GPT)";
  uint32_t hsize = static_cast<uint32_t>(le(&h[12], 4));
  if (hsize < 92 || hsize > lba) return "GPT header: HeaderSize " + std::to_string(hsize) + " is not in [92, " + std::to_string(lba) + "]";
  uint32_t want = static_cast<uint32_t>(le(&h[16], 4));
  std::vector<uint8_t> z(h.begin(), h.begin() + hsize);
  std::memset(&z[16], 0, 4);
  uint32_t got = crc32_ieee(z.data(), z.size());
  if (got != want) return "GPT header: HeaderCRC32 is " + hex(want) + " (computed " + hex(got) + ")";
  uint64_t my_lba = le(&h[24], 8), first_usable = le(&h[40], 8), last_usable = le(&h[48], 8);
  uint64_t entries_lba = le(&h[72], 8);
  uint32_t count = static_cast<uint32_t>(le(&h[80], 4)), esize = static_cast<uint32_t>(le(&h[84], 4));
  uint32_t ecrc = static_cast<uint32_t>(le(&h[88], 4));
  uint64_t disk_lbas = disk_size / lba;
  if (my_lba != 1) return "GPT header: MyLBA is " + std::to_string(my_lba) + " (the primary header is at LBA 1)";
  if (first_usable > last_usable || last_usable >= disk_lbas)
    return "GPT header: FirstUsableLBA " + std::to_string(first_usable) + " / LastUsableLBA " +
           std::to_string(last_usable) + " do not fit the disk (" + std::to_string(disk_lbas) + " sectors)";
  if (esize < 128 || esize % 128 || esize > 4096)
    return "GPT header: SizeOfPartitionEntry " + std::to_string(esize) + " is not a multiple of 128 in [128, 4096]";
  if (count == 0 || count > 4096)
    return "GPT header: NumberOfPartitionEntries " + std::to_string(count) + " is not in [1, 4096]";
  uint64_t array_bytes = uint64_t{count} * esize;
  if (entries_lba < 2 || entries_lba > disk_lbas || array_bytes > (disk_lbas - entries_lba) * lba)
    return "GPT header: PartitionEntryLBA " + std::to_string(entries_lba) + " with " + std::to_string(count) +
           " entries of " + std::to_string(esize) + " bytes does not fit the disk";
  std::vector<uint8_t> arr(array_bytes);
  if (int e = read(entries_lba * lba, arr.data(), arr.size())) return read_err("GPT partition entry array", e);
  got = crc32_ieee(arr.data(), arr.size());
  if (got != ecrc) return "GPT header: PartitionEntryArrayCRC32 is " + hex(ecrc) + " (computed " + hex(got) + ")";
  if (n < 1 || n > count)
    return "partition " + std::to_string(n) + " does not exist (the GPT has entries 1.." + std::to_string(count) + ")";
  const uint8_t* e = &arr[size_t{n - 1} * esize];
  static const uint8_t zero[16] = {};
  if (std::memcmp(e, zero, 16) == 0)
    return "partition " + std::to_string(n) + " does not exist (GPT entry " + std::to_string(n) +
           ": PartitionTypeGUID is zero, the entry is unused)";
  uint64_t first = le(e + 32, 8), last = le(e + 40, 8);
  if (first > last || first < first_usable || last > last_usable)
    return "GPT entry " + std::to_string(n) + ": StartingLBA " + std::to_string(first) + " / EndingLBA " +
           std::to_string(last) + " not within the usable LBAs [" + std::to_string(first_usable) + ", " +
           std::to_string(last_usable) + "]";
  out->start = first * lba;
  out->length = (last - first + 1) * lba;
  out->scheme = "gpt";
  return {};
}

}  // namespace

uint32_t crc32_ieee(const void* data, size_t len, uint32_t crc) {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < len; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

label_read_fn label_reader_fd(int fd) {
  return [fd](uint64_t off, void* buf, size_t len) -> int {
    auto* p = static_cast<char*>(buf);
    while (len > 0) {
      ssize_t r = ::pread(fd, p, len, static_cast<off_t>(off));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return errno;
      if (r == 0) return EIO;  // past the end
      p += r, off += static_cast<uint64_t>(r), len -= static_cast<size_t>(r);
    }
    return 0;
  };
}

std::string find_partition(const label_read_fn& read, uint64_t disk_size, uint32_t lba_size, unsigned n,
                           partition_extent* out) {
  if (lba_size < 512 || (lba_size & (lba_size - 1)) || lba_size > 65536) lba_size = 512;
  if (disk_size < 2 * uint64_t{lba_size}) return "the disk (" + std::to_string(disk_size) + " bytes) is too small for a label";
  std::vector<uint8_t> s(lba_size);
  if (int e = read(0, s.data(), lba_size)) return read_err("MBR (sector 0)", e);
  if (s[510] != 0x55 || s[511] != 0xAA)
    return "no partition label: the MBR signature (bytes 510-511) is " + hex(s[510]) + " " + hex(s[511]) + ", not 0x55 0xaa";
  for (int i = 0; i < 4; i++)
    if (s[446 + 16 * i + 4] == 0xEE) return find_gpt(read, disk_size, lba_size, n, out);
  if (n < 1 || n > 4)
    return "partition " + std::to_string(n) + " does not exist (an MBR label has primary partitions 1..4; logical ones are not read)";
  const uint8_t* e = &s[446 + 16 * (n - 1)];
  uint8_t type = e[4];
  uint64_t first = le(e + 8, 4), count = le(e + 12, 4);
  if (type == 0 || count == 0)
    return "partition " + std::to_string(n) + " does not exist (MBR entry " + std::to_string(n) + ": PartitionType is 0, the entry is empty)";
  if (is_extended(type))
    return "MBR entry " + std::to_string(n) + ": PartitionType " + hex(type) + " is an extended partition (a container, not a filesystem)";
  if (first == 0 || (first + count) * lba_size > disk_size)
    return "MBR entry " + std::to_string(n) + ": StartingLBA " + std::to_string(first) + " + SizeInLBA " +
           std::to_string(count) + " does not fit the disk (" + std::to_string(disk_size / lba_size) + " sectors)";
  out->start = first * lba_size;
  out->length = count * lba_size;
  out->scheme = "mbr";
  return {};
}

}  // namespace vnopfs::dev

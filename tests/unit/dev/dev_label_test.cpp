// dev_label_test.cpp: MBR and GPT labels (src/dev/label.h), written by hand into a buffer the way sfdisk
// writes them, then read back; each broken field must be refused by a message that names it. sfdisk's own
// output is read by integration case 51.
#include <catch2/catch.hpp>

#include <cstring>
#include <string>
#include <vector>

#include "src/dev/label.h"

using namespace vnopfs::dev;

namespace {

constexpr uint64_t kDisk = 64u << 20;  // bytes
constexpr uint32_t kLba = 512;

void put(std::vector<uint8_t>& d, size_t at, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) d[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

label_read_fn reader(const std::vector<uint8_t>& d) {
  return [&d](uint64_t off, void* buf, size_t len) -> int {
    if (off + len > d.size()) return EIO;
    std::memcpy(buf, d.data() + off, len);
    return 0;
  };
}

void mbr_entry(std::vector<uint8_t>& d, int i, uint8_t type, uint32_t first, uint32_t count) {
  size_t e = 446 + 16 * size_t(i);
  d[e + 4] = type;
  put(d, e + 8, first, 4);
  put(d, e + 12, count, 4);
}

std::vector<uint8_t> mbr_disk() {
  std::vector<uint8_t> d(kDisk);
  d[510] = 0x55, d[511] = 0xAA;
  mbr_entry(d, 0, 0x83, 2048, 20480);
  mbr_entry(d, 1, 0x83, 22528, 40960);
  mbr_entry(d, 2, 0x05, 63488, 2048);
  return d;
}

// GPT as sfdisk writes it: 128 entries of 128 bytes at LBA 2, usable LBAs 34 .. end-34.
constexpr uint32_t kEntries = 128, kEsize = 128;
void gpt_seal(std::vector<uint8_t>& d) {
  put(d, kLba + 88, crc32_ieee(&d[2 * kLba], kEntries * kEsize), 4);
  put(d, kLba + 16, 0, 4);
  put(d, kLba + 16, crc32_ieee(&d[kLba], 92), 4);
}
std::vector<uint8_t> gpt_disk() {
  std::vector<uint8_t> d(kDisk);
  d[510] = 0x55, d[511] = 0xAA;
  mbr_entry(d, 0, 0xEE, 1, 0xffffffff);
  std::memcpy(&d[kLba], "EFI PART", 8);
  put(d, kLba + 8, 0x00010000, 4);
  put(d, kLba + 12, 92, 4);
  put(d, kLba + 24, 1, 8);
  put(d, kLba + 32, kDisk / kLba - 1, 8);
  put(d, kLba + 40, 34, 8);
  put(d, kLba + 48, kDisk / kLba - 34, 8);
  put(d, kLba + 72, 2, 8);
  put(d, kLba + 80, kEntries, 4);
  put(d, kLba + 84, kEsize, 4);
  uint64_t ranges[3][2] = {{2048, 10239}, {10240, 51199}, {51200, 100000}};
  for (int i = 0; i < 3; i++) {
    size_t e = 2 * kLba + size_t(i) * kEsize;
    for (int k = 0; k < 16; k++) d[e + k] = uint8_t(0x10 + k);  // a type GUID: not zero
    d[e + 16] = uint8_t(i + 1);
    put(d, e + 32, ranges[i][0], 8);
    put(d, e + 40, ranges[i][1], 8);
  }
  gpt_seal(d);
  return d;
}

}  // namespace

TEST_CASE("label: crc32 is the IEEE one", "[dev][label]") {
  CHECK(crc32_ieee("123456789", 9) == 0xCBF43926u);  // the check value of CRC-32/ISO-HDLC
  CHECK(crc32_ieee("", 0) == 0);
}

TEST_CASE("label: MBR primary partitions", "[dev][label]") {
  auto d = mbr_disk();
  partition_extent x;
  REQUIRE(find_partition(reader(d), kDisk, kLba, 2, &x) == "");
  CHECK(x.scheme == "mbr");
  CHECK(x.start == 22528ull * 512);
  CHECK(x.length == 40960ull * 512);
  REQUIRE(find_partition(reader(d), kDisk, kLba, 1, &x) == "");
  CHECK(x.start == 2048ull * 512);
  CHECK(find_partition(reader(d), kDisk, kLba, 4, &x).find("MBR entry 4: PartitionType is 0") != std::string::npos);
  CHECK(find_partition(reader(d), kDisk, kLba, 5, &x).find("partition 5 does not exist") != std::string::npos);
  CHECK(find_partition(reader(d), kDisk, kLba, 3, &x).find("extended partition") != std::string::npos);
  mbr_entry(d, 1, 0x83, 22528, 409600);  // past the end of the disk
  CHECK(find_partition(reader(d), kDisk, kLba, 2, &x).find("MBR entry 2: StartingLBA 22528 + SizeInLBA 409600 does not fit") !=
        std::string::npos);
  d[511] = 0;
  CHECK(find_partition(reader(d), kDisk, kLba, 1, &x).find("MBR signature") != std::string::npos);
}

TEST_CASE("label: GPT header, entry array and entries", "[dev][label]") {
  auto d = gpt_disk();
  partition_extent x;
  REQUIRE(find_partition(reader(d), kDisk, kLba, 2, &x) == "");
  CHECK(x.scheme == "gpt");
  CHECK(x.start == 10240ull * 512);
  CHECK(x.length == (51199ull - 10240 + 1) * 512);
  REQUIRE(find_partition(reader(d), kDisk, kLba, 3, &x) == "");
  CHECK(x.start == 51200ull * 512);
  CHECK(find_partition(reader(d), kDisk, kLba, 4, &x).find("GPT entry 4: PartitionTypeGUID is zero") != std::string::npos);
  CHECK(find_partition(reader(d), kDisk, kLba, 129, &x).find("partition 129 does not exist (the GPT has entries 1..128)") !=
        std::string::npos);

  SECTION("a flipped bit in the header") {
    d[kLba + 40] ^= 1;
    CHECK(find_partition(reader(d), kDisk, kLba, 2, &x).find("GPT header: HeaderCRC32 is") != std::string::npos);
  }
  SECTION("a flipped bit in an entry") {
    d[2 * kLba + kEsize + 33] ^= 1;
    CHECK(find_partition(reader(d), kDisk, kLba, 2, &x).find("PartitionEntryArrayCRC32") != std::string::npos);
  }
  SECTION("the signature") {
    d[kLba] = 'X';
    CHECK(find_partition(reader(d), kDisk, kLba, 2, &x).find("Signature") != std::string::npos);
  }
  SECTION("an entry outside the usable LBAs, CRCs right") {
    put(d, 2 * kLba + 2 * kEsize + 40, kDisk / kLba, 8);
    gpt_seal(d);
    CHECK(find_partition(reader(d), kDisk, kLba, 3, &x).find("GPT entry 3: StartingLBA 51200 / EndingLBA") != std::string::npos);
  }
  SECTION("an entry size that is not a multiple of 128, CRC right") {
    put(d, kLba + 84, 100, 4);
    gpt_seal(d);
    CHECK(find_partition(reader(d), kDisk, kLba, 2, &x).find("SizeOfPartitionEntry 100") != std::string::npos);
  }
  SECTION("a read error") {
    CHECK(find_partition(reader(d), kDisk * 2, kLba, 2, &x) == "");  // the label does not read past its array
    std::vector<uint8_t> small(d.begin(), d.begin() + kLba + 100);
    CHECK(find_partition(reader(small), kDisk, kLba, 2, &x).find("cannot read the GPT header") != std::string::npos);
  }
}

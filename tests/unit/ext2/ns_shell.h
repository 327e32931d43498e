// ns_shell.h: small helpers of the namespace tests for driving the e2fsprogs tools on an image file:
// shell commands with captured output, raw block access, debugfs, e2fsck, a temp directory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct ns_tmpdir {
  ns_tmpdir();
  ~ns_tmpdir();
  std::string path;
};

// Runs cmd with /bin/sh; returns stdout. Without rc a non-zero exit fails the test; with rc the exit code
// is stored there and the caller judges it.
std::string ns_sh(const std::string& cmd, int* rc = nullptr);
std::vector<std::string> ns_split(const std::string& s);
// debugfs -R REQ IMG (read-only), stdout only.
std::string ns_debugfs(const std::string& img, const std::string& req);
// debugfs -w -R REQ IMG.
std::string ns_debugfs_w(const std::string& img, const std::string& req);
// e2fsck -fn: REQUIREs exit 0 and prints the output on failure.
void ns_fsck_clean(const std::string& img);
std::vector<uint8_t> ns_read_block(const std::string& img, uint64_t blk, uint32_t bs);
void ns_write_block(const std::string& img, uint64_t blk, const std::vector<uint8_t>& b);

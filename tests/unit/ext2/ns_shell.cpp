#include "ext2/ns_shell.h"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <sstream>

ns_tmpdir::ns_tmpdir() {
  char tmpl[] = "/tmp/vnopfs-ns-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  path = tmpl;
}

ns_tmpdir::~ns_tmpdir() {
  std::string cmd = "rm -rf '" + path + "'";
  if (std::system(cmd.c_str()) != 0) WARN("could not remove " << path);
}

std::string ns_sh(const std::string& cmd, int* rc) {
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  if (rc) {
    *rc = code;
  } else if (code != 0) {
    FAIL("command failed (" << code << "): " << cmd << "\n" << out);
  }
  return out;
}

std::vector<std::string> ns_split(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> v;
  for (std::string w; in >> w;) v.push_back(w);
  return v;
}

std::string ns_debugfs(const std::string& img, const std::string& req) {
  return ns_sh("debugfs -R \"" + req + "\" " + img + " 2>/dev/null");
}

std::string ns_debugfs_w(const std::string& img, const std::string& req) {
  return ns_sh("debugfs -w -R \"" + req + "\" " + img + " 2>/dev/null");
}

void ns_fsck_clean(const std::string& img) {
  int rc;
  std::string out = ns_sh("e2fsck -fn " + img + " 2>&1", &rc);
  INFO(out);
  REQUIRE(rc == 0);
}

std::vector<uint8_t> ns_read_block(const std::string& img, uint64_t blk, uint32_t bs) {
  std::vector<uint8_t> b(bs);
  int fd = open(img.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  ssize_t n = pread(fd, b.data(), bs, off_t(blk * bs));
  close(fd);
  REQUIRE(n == ssize_t(bs));
  return b;
}

void ns_write_block(const std::string& img, uint64_t blk, const std::vector<uint8_t>& b) {
  int fd = open(img.c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  ssize_t n = pwrite(fd, b.data(), b.size(), off_t(blk * b.size()));
  close(fd);
  REQUIRE(n == ssize_t(b.size()));
}

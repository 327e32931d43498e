// stress_test.cpp: concurrency (parallel writers and readers on different files and on different ranges of
// one file, under the vnode locks) and corrupt block pointers (EIO + one log line naming inode, block and
// field; s_errors obeyed).
#include <atomic>
#include <mutex>
#include <random>
#include <thread>

#include <cstdio>

#include <catch2/catch.hpp>

#include "support/ext2_fixture.h"

using namespace ext2test;

namespace {

void model_write(std::string& model, uint64_t off, const std::string& data) {
  if (model.size() < off + data.size()) model.resize(off + data.size(), '\0');
  model.replace(off, data.size(), data);
}

}  // namespace

TEST_CASE("concurrency: parallel writers and readers on files and ranges", "[ext2][stress]") {
  image_config c = GENERATE(image_config{1024, 256, true, true}, image_config{4096, 128, true, true});
  INFO(c.label());
  const uint32_t seed = test_seed();
  // INFO: shown with every failure of this case (WARN is dropped by the JUnit report); stderr: a crash.
  INFO("VNOPFS_SEED=" << seed);
  std::fprintf(stderr, "%s: VNOPFS_SEED=%llu\n", __FILE__, static_cast<unsigned long long>(seed));
  tmpdir t;
  std::string img = t.path + "/img", d = t.path + "/d";
  sh("mkdir -p " + quote(d));
  const int kFiles = 4;
  const size_t kShared = 1u << 20;
  std::vector<std::string> models(kFiles);
  for (int i = 0; i < kFiles; i++) {
    models[i] = pattern(100000 + i * 1000, 10 + i);
    FILE* f = fopen((d + "/f" + std::to_string(i)).c_str(), "wb");
    fwrite(models[i].data(), 1, models[i].size(), f);
    fclose(f);
  }
  std::string shared_model = pattern(kShared, 99);
  {
    FILE* f = fopen((d + "/shared").c_str(), "wb");
    fwrite(shared_model.data(), 1, shared_model.size(), f);
    fclose(f);
  }
  make_image(img, c, 65536, d);
  {
    mounted m(img, false, 8u << 20);  // a small cache: eviction and write-behind under load
    REQUIRE(m.mount_error() == 0);
    std::vector<vnode*> vps;
    for (int i = 0; i < kFiles; i++) vps.push_back(m.vget(ino_of(img, "/f" + std::to_string(i))));
    vnode* sv = m.vget(ino_of(img, "/shared"));
    std::atomic<int> failures{0};
    std::mutex fail_mu;
    std::string first_failure;
    auto fail = [&](const std::string& what) {
      failures++;
      std::lock_guard g(fail_mu);
      if (first_failure.empty()) first_failure = what;
    };
    std::vector<std::thread> threads;
    for (int i = 0; i < kFiles; i++) {  // one writer per file: in-EOF (shared lock) and extending writes
      threads.emplace_back([&, i] {
        std::mt19937 rng(seed + i);
        for (int k = 0; k < 60; k++) {
          uint64_t off = rng() % (models[i].size() + 20000);
          std::string data = pattern(1 + rng() % 30000, rng());
          bool inside = off + data.size() <= models[i].size();
          if (int e = vwrite(vps[i], static_cast<off_t>(off), data, IO_UNIT, kctx(), nullptr, inside))
            fail("write errno " + std::to_string(e));
          model_write(models[i], off, data);
          if (k % 20 == 19 && vfsync(vps[i]) != 0) fail("fsync");
        }
      });
    }
    for (int i = 0; i < 3; i++) {  // writers on disjoint ranges of one file, lock shared
      threads.emplace_back([&, i] {
        std::mt19937 rng(seed + 100 + i);
        const size_t lo = i * (kShared / 3), span = kShared / 3 - 20000;
        for (int k = 0; k < 60; k++) {
          uint64_t off = lo + rng() % span;
          std::string data = pattern(1 + rng() % 20000, rng());
          if (int e = vwrite(sv, static_cast<off_t>(off), data, IO_UNIT, kctx(), nullptr, true))
            fail("shared write errno " + std::to_string(e));
          std::lock_guard g(fail_mu);
          model_write(shared_model, off, data);
        }
      });
    }
    std::atomic<bool> stop{false};
    threads.emplace_back([&] {  // a reader of the shared file: sizes never change, reads never fail
      std::mt19937 rng(seed + 200);
      while (!stop) {
        std::string got;
        uint64_t off = rng() % kShared;
        if (vread(sv, static_cast<off_t>(off), 50000, &got) != 0) fail("read");
        if (got.size() != std::min<size_t>(50000, kShared - off)) fail("short read");
      }
    });
    for (size_t k = 0; k + 1 < threads.size(); k++) threads[k].join();
    stop = true;
    threads.back().join();
    INFO(first_failure);
    CHECK(failures == 0);
    for (int i = 0; i < kFiles; i++) {
      std::string got;
      REQUIRE(vread(vps[i], 0, models[i].size() + 10, &got) == 0);
      CHECK((got == models[i]));
      vnode_put(vps[i]);
    }
    std::string got;
    REQUIRE(vread(sv, 0, kShared, &got) == 0);
    CHECK((got == shared_model));
    vnode_put(sv);
    REQUIRE(m.unmount() == 0);
  }
  std::string out;
  bool clean = fsck_clean(img, &out);
  INFO(out);
  CHECK(clean);
  for (int i = 0; i < kFiles; i++) CHECK((debugfs_cat(img, "/f" + std::to_string(i)) == models[i]));
  CHECK((debugfs_cat(img, "/shared") == shared_model));
}

TEST_CASE("corruption: a block pointer into metadata gives EIO and one log line", "[ext2][corrupt]") {
  const char* policy = GENERATE("continue", "remount-ro");
  INFO(policy);
  tmpdir t;
  std::string img = t.path + "/img", d = t.path + "/d";
  sh("mkdir -p " + quote(d));
  std::string data = pattern(40000, 3);
  FILE* f = fopen((d + "/f").c_str(), "wb");
  fwrite(data.data(), 1, data.size(), f);
  fclose(f);
  sh("printf ok > " + quote(d + "/g"));
  make_image(img, {4096, 256, true, true}, 8192, d);
  sh(std::string("tune2fs -e ") + policy + " " + quote(img));
  debugfs_w(img, "sif /f block[2] 3");  // block 3: the descriptor table area
  uint32_t ino = ino_of(img, "/f");
  const std::string fsck_cmd = "e2fsck -fn " + quote(img) + " | grep -v 'mod time'";
  const std::string fsck_before = sh(fsck_cmd);
  {
    mounted m(img);
    REQUIRE(m.mount_error() == 0);
    vnode* vp = m.vget(ino);
    vnode* g = m.vget(ino_of(img, "/g"));
    std::string got;
    REQUIRE(vread(vp, 0, 8192, &got) == 0);  // blocks 0 and 1 are fine
    CHECK((got == data.substr(0, 8192)));
    std::string log;
    {
      stderr_capture cap;
      CHECK(vread(vp, 8192, 4096, &got) == EIO);
      log = cap.text();
    }
    INFO(log);
    CHECK(log.find("inode " + std::to_string(ino)) != std::string::npos);
    CHECK(log.find("i_block") != std::string::npos);
    CHECK(log.find("block 3") != std::string::npos);
    CHECK(vwrite(vp, 8192, "x") != 0);  // never a write based on the bad pointer
    if (std::string(policy) == "remount-ro") {
      CHECK(vwrite(g, 0, "more") == EROFS);
    } else {
      CHECK(vwrite(g, 0, "more") == 0);
    }
    vnode_put(vp);
    vnode_put(g);
    CHECK(m.unmount() == 0);
  }
  CHECK(sh("dumpe2fs -h " + quote(img) + " 2>/dev/null | grep '^Filesystem state:'").find("with errors") !=
        std::string::npos);
  // What the mount wrote never made it worse: e2fsck finds exactly what it found before.
  std::string out = sh(fsck_cmd);
  INFO(out);
  CHECK(out.find("Multiply-claimed block(s) in inode " + std::to_string(ino) + ": 3") != std::string::npos);
  CHECK(out == fsck_before);
}

TEST_CASE("corruption: an indirect entry outside the filesystem", "[ext2][corrupt]") {
  tmpdir t;
  std::string img = t.path + "/img", d = t.path + "/d";
  sh("mkdir -p " + quote(d));
  std::string data = pattern(100 * 1024, 4);  // 1 KiB blocks: 88 blocks through the single indirect block
  FILE* f = fopen((d + "/f").c_str(), "wb");
  fwrite(data.data(), 1, data.size(), f);
  fclose(f);
  make_image(img, {1024, 128, true, true}, 8192, d);
  uint64_t ind = std::stoull(sh("debugfs -R 'stat /f' " + quote(img) + " 2>/dev/null | grep -o '(IND):[0-9]*' | cut -d: -f2"));
  // Entry 5 of the indirect block = logical block 17 -> a block number past the device.
  sh("printf '\\377\\377\\377\\017' | dd of=" + quote(img) + " bs=1 seek=" + std::to_string(ind * 1024 + 20) +
     " conv=notrunc status=none");
  mounted m(img);
  REQUIRE(m.mount_error() == 0);
  vnode* vp = m.vget(ino_of(img, "/f"));
  std::string got;
  std::string log;
  {
    stderr_capture cap;
    CHECK(vread(vp, 17 * 1024, 1024, &got) == EIO);
    log = cap.text();
  }
  INFO(log);
  CHECK(log.find("indirect entry") != std::string::npos);
  CHECK(log.find("block " + std::to_string(ind)) != std::string::npos);
  REQUIRE(vread(vp, 0, 16 * 1024, &got) == 0);
  CHECK((got == data.substr(0, 16 * 1024)));
  vnode_put(vp);
  CHECK(m.unmount() == 0);
}

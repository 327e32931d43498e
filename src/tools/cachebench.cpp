// vnopfs-cachebench: the buffer cache's hit path and the cluster layer's write throughput against a plain
// pwrite loop on the same file, in one run. Not a test.
//
//   vnopfs-cachebench [--file PATH] [--size MiB] [--cache MiB] [--only hit|4k|128k] [--threads N]
//
// Prints: getblk+brelse of a cached block in ns/op; then MiB/s and process CPU ms per MiB (all threads) for
// (a) pwrite of 1 MiB chunks + fdatasync,
// (b) cluster_write of 4 KiB chunks and (c) of 128 KiB chunks, each followed by cluster_push(IO_SYNC) and a
// device flush, through the `file` device; and the ratio of (b) to (a). --only runs the raw loop and one case
// (for profiling one path). --threads N (N > 1) adds the hit path run by N threads at once, each on a block
// of its own (the cache's locking, not data sharing, is what they contend on).
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "vnopfs/buf.h"
#include "vnopfs/cluster.h"
#include "vnopfs/device.h"
#include "vnopfs/mount.h"
#include "vnopfs/vnops.h"

using namespace vnopfs;

namespace {

uint32_t g_bs = 4096;

// The bench's file: logical block n at physical block n.
int b_blockmap(vnop_blockmap_args* ap) {
  *ap->a_bpn = ap->a_foffset / g_bs;
  *ap->a_run = ap->a_size;
  return 0;
}
int b_strategy(vnop_strategy_args* ap) {
  buf* bp = ap->a_bp;
  if (buf_blkno(bp) == BUF_UNMAPPED) buf_setblkno(bp, buf_lblkno(bp));
  return buf_strategy(buf_vnode(bp)->v_mount->mnt_devvp, bp);
}
int b_reclaim(vnop_reclaim_args* ap) {
  (void)buf_vnode_reclaim(ap->a_vp);
  return 0;
}

double secs_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// CPU seconds of the whole process (every thread: the device workers and completions count too). On a busy
// machine wall-clock rates mostly measure the scheduler; CPU per MiB measures our work.
double cpu_secs() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}
double g_cpu_ms_per_mib = 0;  // of the last measurement

double raw_pwrite(const std::string& path, uint64_t size) {
  int fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0) return 0;
  std::vector<char> chunk(1 << 20, 'r');
  double c0 = cpu_secs();
  auto t0 = std::chrono::steady_clock::now();
  for (uint64_t off = 0; off < size; off += chunk.size())
    if (::pwrite(fd, chunk.data(), chunk.size(), static_cast<off_t>(off)) != static_cast<ssize_t>(chunk.size())) {
      std::perror("pwrite");
      break;
    }
  ::fdatasync(fd);
  double s = secs_since(t0);
  g_cpu_ms_per_mib = (cpu_secs() - c0) * 1e3 / (static_cast<double>(size) / (1 << 20));
  ::close(fd);
  return static_cast<double>(size) / (1 << 20) / s;
}

double cluster_bench(mount* mp, vnode* vp, uint64_t size, size_t chunk_bytes) {
  std::vector<char> chunk(chunk_bytes, 'c');
  off_t fsize = 0;
  double c0 = cpu_secs();
  auto t0 = std::chrono::steady_clock::now();
  for (uint64_t off = 0; off < size; off += chunk_bytes) {
    off_t newEOF = std::max<off_t>(fsize, static_cast<off_t>(off + chunk_bytes));
    cluster_setsize(vp, newEOF);
    uio u(chunk.data(), chunk_bytes, static_cast<off_t>(off), UIO_WRITE);
    if (int e = cluster_write(vp, &u, fsize, newEOF, 0, 0, 0)) {
      std::fprintf(stderr, "cluster_write: %s\n", std::strerror(e));
      return 0;
    }
    fsize = newEOF;
  }
  int e = cluster_push(vp, IO_SYNC);
  if (e == 0) e = dev::dev_sync_io(*mp->mnt_device, dev::io_op::flush, 0, nullptr, 0);
  double s = secs_since(t0);
  g_cpu_ms_per_mib = (cpu_secs() - c0) * 1e3 / (static_cast<double>(size) / (1 << 20));
  if (e) std::fprintf(stderr, "push/flush: %s\n", std::strerror(e));
  return static_cast<double>(size) / (1 << 20) / s;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = "/tmp/vnopfs-cachebench.img";
  std::string only;
  uint64_t size_mib = 1024, cache_mib = 256;
  int nthreads = 1;
  for (int i = 1; i < argc; i += 2) {
    std::string a = argv[i];
    bool has_value = i + 1 < argc;
    if (a == "--file" && has_value) path = argv[i + 1];
    else if (a == "--size" && has_value) size_mib = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--cache" && has_value) cache_mib = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--only" && has_value) only = argv[i + 1];
    else if (a == "--threads" && has_value) nthreads = std::max(1, std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr,
                   "usage: %s [--file PATH] [--size MiB] [--cache MiB] [--only hit|4k|128k] [--threads N]\n"
                   "  getblk+brelse hit path, then pwrite of 1 MiB chunks + fdatasync against cluster_write of\n"
                   "  4 KiB and 128 KiB chunks + cluster_push(IO_SYNC) + device flush (defaults: /tmp file, 1024\n"
                   "  MiB, 256 MiB cache)\n",
                   argv[0]);
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  const bool run_hit = only.empty() || only == "hit", run4 = only.empty() || only == "4k",
             run128 = only.empty() || only == "128k";
  const uint64_t size = size_mib << 20;
  ::unlink(path.c_str());
  dev::file_options fo;
  fo.create_size = size;
  int err = 0;
  auto device = dev::make_file_device(path, fo, &err);
  if (!device) {
    std::fprintf(stderr, "file device %s: %s\n", path.c_str(), std::strerror(err));
    return 1;
  }
  mount mp;
  mp.mnt_device = device.get();
  bufcache_config cfg;
  cfg.block_size = g_bs;
  cfg.cache_bytes = cache_mib << 20;
  if ((err = bufcache_create(&mp, device.get(), cfg))) {
    std::fprintf(stderr, "bufcache_create: %s\n", std::strerror(err));
    return 1;
  }
  static vnop_table table;
  vnop_table_build(&table, "cachebench", {b_blockmap, b_strategy, vn_bwrite, b_reclaim});

  // 1. The hit path: getblk + brelse of a block in core.
  vnode* vp = nullptr;
  vnode_create(&mp, {vtype::VREG, &table, nullptr, 1}, &vp);
  {
    BufRef bp = buf_getblk(vp, 0, BLK_WRITE);
    buf_clear(bp.get());
    buf_bdwrite(std::move(bp));
  }
  const int iters = run_hit ? 2'000'000 : 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; i++) buf_brelse(buf_getblk(vp, 0, BLK_READ));
  double ns = secs_since(t0) * 1e9 / iters;
  if (run_hit) std::printf("hit path (getblk+brelse): %.1f ns/op\n", ns);
  if (run_hit && nthreads > 1) {
    for (int t = 1; t < nthreads; t++) {
      BufRef bp = buf_getblk(vp, t, BLK_WRITE);
      buf_clear(bp.get());
      buf_bdwrite(std::move(bp));
    }
    const int per = iters / nthreads;
    std::vector<std::thread> th;
    auto t1 = std::chrono::steady_clock::now();
    for (int t = 0; t < nthreads; t++)
      th.emplace_back([&, t] {
        for (int i = 0; i < per; i++) buf_brelse(buf_getblk(vp, t, BLK_READ));
      });
    for (auto& x : th) x.join();
    double s = secs_since(t1);
    std::printf("hit path, %d threads on a block each: %.1f ns/op per thread, %.1f Mop/s in all\n", nthreads,
                s * 1e9 / per, per * nthreads / s / 1e6);
  }
  buf_invalidateblks(vp, 0);

  // 2. Writes: the raw loop first (after an untimed allocating pass), then the cluster layer, same file.
  raw_pwrite(path, size);  // untimed: allocates the file, so every timed run overwrites allocated blocks
  double raw = raw_pwrite(path, size);
  double raw_cpu = g_cpu_ms_per_mib;
  std::printf("pwrite 1 MiB chunks + fdatasync:       %8.1f MiB/s               cpu %.2f ms/MiB\n", raw, raw_cpu);
  if (run4) {
    double c4 = cluster_bench(&mp, vp, size, 4096);
    std::printf("cluster_write 4 KiB chunks + push:     %8.1f MiB/s  (%.2fx raw)  cpu %.2f ms/MiB (%.2fx raw)\n", c4,
                raw > 0 ? c4 / raw : 0, g_cpu_ms_per_mib, raw_cpu > 0 ? raw_cpu / g_cpu_ms_per_mib : 0);
    buf_invalidateblks(vp, 0);
  }
  if (run128) {
    double c128 = cluster_bench(&mp, vp, size, 128 << 10);
    std::printf("cluster_write 128 KiB chunks + push:   %8.1f MiB/s  (%.2fx raw)  cpu %.2f ms/MiB (%.2fx raw)\n", c128,
                raw > 0 ? c128 / raw : 0, g_cpu_ms_per_mib, raw_cpu > 0 ? raw_cpu / g_cpu_ms_per_mib : 0);
  }
  bufcache_stats s = bufcache_getstats(&mp);
  std::printf("cache: %llu device writes, %llu throttle waits, dirty max %llu of %llu buffers\n",
              static_cast<unsigned long long>(s.writes), static_cast<unsigned long long>(s.throttle_waits),
              static_cast<unsigned long long>(s.dirty_max), static_cast<unsigned long long>(s.buffers));
  vnode_put(vp);
  bufcache_destroy(&mp);
  device.reset();
  ::unlink(path.c_str());
  return 0;
}

// fuzz_smoke: a blind mutation driver for the libFuzzer target of fuzz_mount.cpp (the same
// LLVMFuzzerTestOneInput), built by the normal g++ build so that scripts/test can run it (tests/fuzz/smoke.sh,
// 60 s) without clang. It has no coverage guidance: it mutates our own mke2fs seed images
// (tests/fuzz/make_seeds.sh) and keeps nothing it learns. The libFuzzer build (scripts/fuzz) stays the tool
// for long runs (docs/durability.md, "Fuzzing damaged images").
//
//   fuzz_smoke --seeds DIR [--seconds N] [--seed S] [--crashes DIR] [--timeout SECS] [--batch N]
//   fuzz_smoke --replay FILE...     runs each file once, in this process (for a debugger)
//
// Mutations, 1 to 8 per input, each on a block chosen among the seed's metadata blocks 7 times in 8
// (superblock, group descriptors, bitmaps, inode tables, and the directory, indirect, slow-symlink and xattr
// blocks its inodes name: found by parsing the seed): bit flips, random bytes, "interesting" 8/16/32-bit
// values at aligned offsets, whole-block overwrites (zeros, ones, random, a copy of another metadata block),
// splices of 1 to 4 blocks from another seed, and now and then a truncation.
// Input i of a run is a function of (seed, i): "--seed S --first I --count 1" regenerates it.
//
// Inputs run in a child process, a batch at a time; the parent watches it. A child that dies (a crash, an
// assertion's abort, any signal, a non-zero exit) or spends more than --timeout seconds (default 30) on one
// input fails the run: the input (kept in memory shared with the parent before it runs) is written to
// --crashes DIR as crash-SEED-I.img or timeout-SEED-I.img, and fuzzing goes on with the next input. The last
// line: "fuzz-smoke: N executions in S s (R/s), K seeds, C crashes, T timeouts (seed S)"; exit 1 on a failure.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

constexpr size_t kMaxImage = 4u << 20;  // as fuzz_mount.cpp

struct seed_image {
  std::string name;
  std::vector<uint8_t> img;
  uint32_t bs = 1024;
  std::vector<uint32_t> meta;  // metadata blocks
};

// Shared between the parent and the child: the input running now, so that the parent can save it whatever
// happens to the child.
struct shared_state {
  std::atomic<uint64_t> execs;     // inputs completed, over the whole run
  std::atomic<uint64_t> start_ms;  // when the running input started (steady clock); 0: none runs
  std::atomic<uint64_t> index;     // the running input's index, or the next one's
  std::atomic<uint32_t> len;
  uint8_t data[kMaxImage];
};

uint64_t now_ms() {
  using namespace std::chrono;
  return static_cast<uint64_t>(duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count());
}

uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint32_t le32(const std::vector<uint8_t>& v, size_t off) {
  if (off + 4 > v.size()) return 0;
  return uint32_t(v[off]) | uint32_t(v[off + 1]) << 8 | uint32_t(v[off + 2]) << 16 | uint32_t(v[off + 3]) << 24;
}
uint16_t le16(const std::vector<uint8_t>& v, size_t off) {
  if (off + 2 > v.size()) return 0;
  return static_cast<uint16_t>(v[off] | v[off + 1] << 8);
}

// The seed's metadata blocks, from its superblock, group descriptors and inodes (the seeds are valid
// images; every number is still bounds-checked).
void find_metadata(seed_image* s) {
  const auto& v = s->img;
  std::set<uint32_t> meta;
  const uint32_t log = le32(v, 1024 + 24);
  if (log > 6) return;
  const uint32_t bs = 1024u << log;
  s->bs = bs;
  const uint32_t nblocks = static_cast<uint32_t>(v.size() / bs);
  auto add = [&](uint32_t b) {
    if (b < nblocks) meta.insert(b);
  };
  const uint32_t first = le32(v, 1024 + 20), bpg = le32(v, 1024 + 32), ipg = le32(v, 1024 + 40);
  const uint32_t rev = le32(v, 1024 + 76);
  const uint32_t isz = rev >= 1 ? le16(v, 1024 + 88) : 128;
  const uint32_t blocks = le32(v, 1024 + 4);
  if (bpg == 0 || ipg == 0 || isz < 128 || isz > bs) return;
  const uint32_t groups = (blocks - first + bpg - 1) / bpg;
  const uint32_t gdt = first + 1, gdt_blocks = (groups * 32 + bs - 1) / bs;
  const uint32_t reserved = le16(v, 1024 + 206);
  for (uint32_t b = 0; b < gdt + gdt_blocks + reserved; b++) add(b);
  const uint32_t itb = (ipg * isz + bs - 1) / bs;
  for (uint32_t g = 0; g < groups && g < 64; g++) {
    size_t d = size_t(gdt) * bs + size_t(g) * 32;
    uint32_t bb = le32(v, d), ib = le32(v, d + 4), it = le32(v, d + 8);
    add(bb);
    add(ib);
    for (uint32_t k = 0; k < itb; k++) add(it + k);
    for (uint32_t i = 0; i < ipg; i++) {
      size_t in = size_t(it) * bs + size_t(i) * isz;
      if (in + 128 > v.size()) break;
      uint16_t mode = le16(v, in);
      if (mode == 0 || le16(v, in + 26) == 0) continue;
      const uint16_t type = mode & 0xF000;
      auto blk = [&](int k) { return le32(v, in + 40 + size_t(k) * 4); };
      if (type == 0x4000)
        for (int k = 0; k < 12; k++)
          if (blk(k)) add(blk(k));
      if (type == 0xA000 && le32(v, in + 28) != 0 && blk(0)) add(blk(0));  // slow symlink
      for (int k = 12; k < 15; k++)
        if (blk(k)) add(blk(k));
      if (uint32_t acl = le32(v, in + 104)) add(acl);
    }
  }
  s->meta.assign(meta.begin(), meta.end());
}

std::vector<seed_image> load_seeds(const std::string& dir) {
  std::vector<seed_image> out;
  std::vector<std::filesystem::path> paths;
  for (auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file()) paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());  // the order (and so input i) does not depend on the directory
  for (auto& p : paths) {
    std::ifstream f(p, std::ios::binary);
    std::vector<uint8_t> v((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (v.size() < 2048 || v.size() > kMaxImage) continue;
    seed_image s;
    s.name = p.filename().string();
    s.img = std::move(v);
    find_metadata(&s);
    out.push_back(std::move(s));
  }
  return out;
}

// Builds input `index` of the run `seed` into *out.
void make_input(const std::vector<seed_image>& seeds, uint64_t seed, uint64_t index, std::vector<uint8_t>* out) {
  std::mt19937_64 r(splitmix(seed ^ splitmix(index)));
  auto pick = [&](uint64_t n) { return n ? static_cast<uint64_t>(r() % n) : 0; };
  const seed_image& s = seeds[pick(seeds.size())];
  *out = s.img;
  std::vector<uint8_t>& v = *out;
  const uint32_t bs = s.bs;
  const uint32_t nblocks = static_cast<uint32_t>(v.size() / bs);
  auto block = [&]() -> uint32_t {
    if (!s.meta.empty() && pick(8) != 0) return s.meta[pick(s.meta.size())];
    return static_cast<uint32_t>(pick(nblocks));
  };
  static const uint32_t interesting[] = {0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000,
                                         0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff};
  int n = 1;
  while (n < 8 && pick(2) == 0) n++;
  for (int m = 0; m < n; m++) {
    const uint32_t b = block();
    uint8_t* p = v.data() + size_t(b) * bs;
    switch (pick(9)) {
      case 0:
      case 1: {  // bit flips
        int k = 1 + static_cast<int>(pick(8));
        for (int i = 0; i < k; i++) p[pick(bs)] ^= static_cast<uint8_t>(1u << pick(8));
        break;
      }
      case 2: {  // random bytes
        int k = 1 + static_cast<int>(pick(16));
        for (int i = 0; i < k; i++) p[pick(bs)] = static_cast<uint8_t>(r());
        break;
      }
      case 3:
      case 4: {  // an interesting value, 1, 2 or 4 bytes wide, at an aligned offset
        uint32_t val = interesting[pick(std::size(interesting))];
        if (pick(4) == 0) val = pick(2) ? bs : nblocks + static_cast<uint32_t>(pick(3)) - 1;
        const uint32_t w = 1u << pick(3);
        const uint32_t off = static_cast<uint32_t>(pick(bs / w)) * w;
        for (uint32_t i = 0; i < w; i++) p[off + i] = static_cast<uint8_t>(val >> (8 * i));
        break;
      }
      case 5: {  // whole block: zeros, ones, random, or a copy of another metadata block
        switch (pick(4)) {
          case 0: std::memset(p, 0, bs); break;
          case 1: std::memset(p, 0xff, bs); break;
          case 2:
            for (uint32_t i = 0; i < bs; i++) p[i] = static_cast<uint8_t>(r());
            break;
          default: {
            uint32_t o = block();
            if (o != b) std::memcpy(p, v.data() + size_t(o) * bs, bs);
          }
        }
        break;
      }
      case 6: {  // bytes moved inside the block
        uint32_t len = 4 + static_cast<uint32_t>(pick(61));
        uint32_t from = static_cast<uint32_t>(pick(bs - len)), to = static_cast<uint32_t>(pick(bs - len));
        std::memmove(p + to, p + from, len);
        break;
      }
      case 7: {  // splice 1-4 blocks from another seed (same block size when there is one)
        const seed_image& o = seeds[pick(seeds.size())];
        if (o.bs != bs) break;
        uint32_t k = 1 + static_cast<uint32_t>(pick(4));
        uint32_t ob = o.meta.empty() || pick(2) ? static_cast<uint32_t>(pick(o.img.size() / bs)) : o.meta[pick(o.meta.size())];
        uint32_t at = pick(2) ? ob : b;  // same place, or over the chosen block
        for (uint32_t i = 0; i < k && size_t(ob + i + 1) * bs <= o.img.size() && size_t(at + i + 1) * bs <= v.size(); i++)
          std::memcpy(v.data() + size_t(at + i) * bs, o.img.data() + size_t(ob + i) * bs, bs);
        break;
      }
      default: {  // a 32-bit field of the superblock (most of the mount's checks start there)
        uint32_t off = 1024 + static_cast<uint32_t>(pick(256 / 4)) * 4;
        uint32_t val = pick(2) ? interesting[pick(std::size(interesting))] : static_cast<uint32_t>(r());
        for (int i = 0; i < 4; i++) v[off + i] = static_cast<uint8_t>(val >> (8 * i));
      }
    }
  }
  if (pick(32) == 0) v.resize(std::max<size_t>(2048, (pick(v.size()) + 1023) / 1024 * 1024));
}

bool write_file(const std::string& path, const uint8_t* data, size_t len) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(len));
  return static_cast<bool>(f);
}

int replay(int argc, char** argv, int i) {
  for (; i < argc; i++) {
    std::ifstream f(argv[i], std::ios::binary);
    if (!f) {
      std::fprintf(stderr, "fuzz-smoke: cannot read %s\n", argv[i]);
      return 2;
    }
    std::vector<uint8_t> v((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::printf("fuzz-smoke: replaying %s (%zu bytes)\n", argv[i], v.size());
    std::fflush(stdout);
    (void)LLVMFuzzerTestOneInput(v.data(), v.size());
  }
  std::printf("fuzz-smoke: replayed %d inputs, no crash\n", argc - 1);
  return 0;
}

// The child: inputs first, first + 1, ... until `count` are done or the deadline passes. Logs of the
// filesystem (damaged images make many) go to `log`.
[[noreturn]] void child(const std::vector<seed_image>& seeds, uint64_t seed, uint64_t first, uint64_t count,
                        uint64_t deadline, shared_state* sh, const std::string& log) {
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    ::dup2(fd, 2);
    ::close(fd);
  }
  std::vector<uint8_t> in;
  for (uint64_t i = first; i < first + count && now_ms() < deadline; i++) {
    make_input(seeds, seed, i, &in);
    sh->index.store(i);
    std::memcpy(sh->data, in.data(), in.size());
    sh->len.store(static_cast<uint32_t>(in.size()));
    sh->start_ms.store(now_ms());
    (void)LLVMFuzzerTestOneInput(in.data(), in.size());
    sh->start_ms.store(0);
    sh->execs.fetch_add(1);
    sh->index.store(i + 1);
  }
  std::fflush(stderr);
  ::_exit(0);
}

void tail_log(const std::string& log) {
  std::ifstream f(log);
  std::vector<std::string> lines;
  for (std::string l; std::getline(f, l);) {
    lines.push_back(l);
    if (lines.size() > 400) lines.erase(lines.begin(), lines.begin() + 200);
  }
  size_t from = lines.size() > 15 ? lines.size() - 15 : 0;
  for (size_t i = from; i < lines.size(); i++) std::printf("    %s\n", lines[i].c_str());
}

}  // namespace

int main(int argc, char** argv) {
  std::string seeds_dir, crashes = ".";
  double seconds = 60;
  uint64_t seed = std::random_device()() % 2147483647u, first = 0, count = UINT64_MAX, batch = 250;
  uint64_t timeout_s = 30;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "fuzz-smoke: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--replay") return replay(argc, argv, i + 1);
    if (a == "--seeds") seeds_dir = val();
    else if (a == "--seconds") seconds = std::stod(val());
    else if (a == "--seed") seed = std::stoull(val());
    else if (a == "--crashes") crashes = val();
    else if (a == "--timeout") timeout_s = std::stoull(val());
    else if (a == "--batch") batch = std::max<uint64_t>(1, std::stoull(val()));
    else if (a == "--first") first = std::stoull(val());
    else if (a == "--count") count = std::stoull(val());
    else {
      std::fprintf(stderr, "fuzz-smoke: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  if (seeds_dir.empty()) {
    std::fprintf(stderr, "usage: fuzz_smoke --seeds DIR [--seconds N] [--seed S] [--crashes DIR] [--timeout S]\n"
                         "       fuzz_smoke --replay FILE...\n");
    return 2;
  }
  std::vector<seed_image> seeds = load_seeds(seeds_dir);
  if (seeds.empty()) {
    std::fprintf(stderr, "fuzz-smoke: no seed images in %s\n", seeds_dir.c_str());
    return 2;
  }
  std::filesystem::create_directories(crashes);
  size_t nmeta = 0;
  for (auto& s : seeds) nmeta += s.meta.size();
  std::printf("fuzz-smoke: seed %llu, %.0f s, %zu seeds (%zu metadata blocks), timeout %llu s per input\n",
              static_cast<unsigned long long>(seed), seconds, seeds.size(), nmeta,
              static_cast<unsigned long long>(timeout_s));
  std::fflush(stdout);
  auto* sh = static_cast<shared_state*>(
      ::mmap(nullptr, sizeof(shared_state), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  if (sh == MAP_FAILED) {
    std::perror("fuzz-smoke: mmap");
    return 2;
  }
  new (sh) shared_state();
  const uint64_t t0 = now_ms();
  const uint64_t deadline = t0 + static_cast<uint64_t>(seconds * 1000);
  const std::string log = crashes + "/fuzz-smoke-child.log";
  uint64_t next = first, crashes_n = 0, timeouts_n = 0, children = 0;
  const uint64_t end = count == UINT64_MAX ? UINT64_MAX : first + count;
  while (now_ms() < deadline && next < end && crashes_n + timeouts_n < 10) {
    sh->index.store(next);
    sh->start_ms.store(0);
    sh->len.store(0);
    std::fflush(stdout);
    pid_t pid = ::fork();
    if (pid < 0) {
      std::perror("fuzz-smoke: fork");
      return 2;
    }
    if (pid == 0) child(seeds, seed, next, std::min(batch, end - next), deadline, sh, log);
    children++;
    int status = 0;
    bool timed_out = false;
    for (;;) {
      pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) break;
      const uint64_t st = sh->start_ms.load();
      if (st != 0 && now_ms() - st > timeout_s * 1000) {
        timed_out = true;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const uint64_t at = sh->index.load();
    const bool died = timed_out || !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    if (!died) {
      next = at;
      continue;
    }
    // The input that was running when the child died (or hung) is in the shared buffer.
    const char* kind = timed_out ? "timeout" : "crash";
    std::string path = crashes + "/" + kind + "-" + std::to_string(seed) + "-" + std::to_string(at) + ".img";
    const bool saved = sh->len.load() != 0 && write_file(path, sh->data, sh->len.load());
    if (timed_out) timeouts_n++;
    else crashes_n++;
    if (timed_out)
      std::printf("fuzz-smoke: input %llu ran for more than %llu s: killed\n", static_cast<unsigned long long>(at),
                  static_cast<unsigned long long>(timeout_s));
    else if (WIFSIGNALED(status))
      std::printf("fuzz-smoke: input %llu: the child died of signal %d (%s)\n", static_cast<unsigned long long>(at),
                  WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
      std::printf("fuzz-smoke: input %llu: the child exited with %d\n", static_cast<unsigned long long>(at),
                  WEXITSTATUS(status));
    std::printf("fuzz-smoke: %s (replay: fuzz_smoke --replay %s; regenerate: --seeds DIR --seed %llu --first %llu "
                "--count 1); last lines of its log %s:\n",
                saved ? ("input saved as " + path).c_str() : "input not saved", path.c_str(),
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(at), log.c_str());
    tail_log(log);
    next = at + 1;
  }
  const double secs = static_cast<double>(now_ms() - t0) / 1000.0;
  const uint64_t execs = sh->execs.load();
  std::printf("fuzz-smoke: %llu executions in %.0f s (%.1f/s, %llu child processes), %zu seeds, %llu crashes, "
              "%llu timeouts (seed %llu)\n",
              static_cast<unsigned long long>(execs), secs, secs > 0 ? static_cast<double>(execs) / secs : 0.0,
              static_cast<unsigned long long>(children), seeds.size(), static_cast<unsigned long long>(crashes_n),
              static_cast<unsigned long long>(timeouts_n), static_cast<unsigned long long>(seed));
  return crashes_n + timeouts_n == 0 ? 0 : 1;
}

// Randomized namespace model test: thousands of seeded random ops (create, mkdir, write, truncate, link,
// unlink, rmdir, rename, symlink, setxattr) against vnopfs and an in-memory model; the error codes, the
// tree, sizes, bytes, link targets and xattrs must match throughout; e2fsck -fn clean at the end.
// Replay a failure with VNOPFS_SEED=<seed printed>.
#include <cstdio>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "ext2/support/path_fs.h"
#include "vnopfs/result.h"

using namespace vnopfs;
using namespace ext2test;

namespace {

struct mfile {  // an inode of the model; hard links share it
  std::string data;
  std::map<std::string, std::string> xattrs;
};
struct mnode {
  enum kind { FILE, DIR, LINK } k;
  std::shared_ptr<mfile> f;  // FILE and LINK: the inode (hard links share it)
  std::string target;        // LINK
  std::map<std::string, std::string> dir_xattrs;
};

class model {
 public:
  std::map<std::string, mnode> nodes;  // "" is the root
  model() { nodes[""] = {mnode::DIR, nullptr, {}, {}}; nodes["lost+found"] = {mnode::DIR, nullptr, {}, {}}; }

  static std::string parent_of(const std::string& p) {
    auto i = p.rfind('/');
    return i == std::string::npos ? "" : p.substr(0, i);
  }
  bool exists(const std::string& p) const { return nodes.count(p) != 0; }
  bool is_dir(const std::string& p) const { return exists(p) && nodes.at(p).k == mnode::DIR; }
  std::vector<std::string> children(const std::string& d) const {
    std::vector<std::string> v;
    std::string pre = d.empty() ? "" : d + "/";
    for (auto& [p, n] : nodes) {
      if (!p.empty() && p != d && p.rfind(pre, 0) == 0 && p.find('/', pre.size()) == std::string::npos) v.push_back(p);
    }
    return v;
  }
  bool within(const std::string& p, const std::string& dir) const {
    return p == dir || (p.size() > dir.size() && p.rfind(dir + "/", 0) == 0);
  }
  // Linux's answer for a name in parent: ENOENT/ENOTDIR for a bad parent.
  int parent_ok(const std::string& p) const {
    std::string d = parent_of(p);
    if (!exists(d)) return ENOENT;
    return is_dir(d) ? 0 : ENOTDIR;
  }

  int create(const std::string& p) {
    TRY(parent_ok(p));
    if (exists(p)) return EEXIST;
    nodes[p] = {mnode::FILE, std::make_shared<mfile>(), {}, {}};
    return 0;
  }
  int mkdir(const std::string& p) {
    TRY(parent_ok(p));
    if (exists(p)) return EEXIST;
    nodes[p] = {mnode::DIR, nullptr, {}, {}};
    return 0;
  }
  int symlink(const std::string& p, const std::string& t) {
    TRY(parent_ok(p));
    if (exists(p)) return EEXIST;
    nodes[p] = {mnode::LINK, std::make_shared<mfile>(), t, {}};  // f: the inode's identity
    return 0;
  }
  int link(const std::string& from, const std::string& to) {
    if (!exists(from)) return ENOENT;
    TRY(parent_ok(to));
    if (exists(to)) return EEXIST;
    if (is_dir(from)) return EPERM;
    nodes[to] = nodes[from];
    return 0;
  }
  int unlink(const std::string& p) {
    if (!exists(p)) return ENOENT;
    if (is_dir(p)) return EISDIR;
    nodes.erase(p);
    return 0;
  }
  int rmdir(const std::string& p) {
    if (!exists(p)) return ENOENT;
    if (!is_dir(p)) return ENOTDIR;
    if (!children(p).empty()) return ENOTEMPTY;
    nodes.erase(p);
    return 0;
  }
  int rename(const std::string& a, const std::string& b) {
    if (!exists(a)) return ENOENT;
    TRY(parent_ok(b));
    if (a == b) return 0;
    bool adir = is_dir(a);
    if (adir && within(b, a)) return EINVAL;
    // Linux's rename trap: a target directory that is an ancestor of the source's directory
    if (is_dir(b) && parent_of(a) != parent_of(b) && within(parent_of(a), b)) return ENOTEMPTY;
    if (exists(b)) {
      bool bdir = is_dir(b);
      if (adir && !bdir) return ENOTDIR;
      if (!adir && bdir) return EISDIR;
      if (bdir && !children(b).empty()) return ENOTEMPTY;
      const mnode &na = nodes[a], &nb = nodes[b];
      if (na.f && na.f == nb.f) return 0;  // two names of one inode (file or symlink)
      nodes.erase(b);
    }
    std::map<std::string, mnode> moved;
    for (auto it = nodes.begin(); it != nodes.end();) {
      if (within(it->first, a)) {
        moved[b + it->first.substr(a.size())] = it->second;
        it = nodes.erase(it);
      } else {
        ++it;
      }
    }
    nodes.insert(moved.begin(), moved.end());
    return 0;
  }
  // ext2 keeps a file's xattrs (beyond the inode's spare bytes, which new names never take) in one
  // block: a 32-byte header, per name a 16-byte entry plus the name, the value, each padded to 4 bytes,
  // and 4 zero bytes ending the entries. A set that does not fit is ENOSPC, and nothing changes.
  int setxattr(const std::string& p, const std::string& k, const std::string& v, size_t block_size) {
    std::map<std::string, std::string> next = nodes[p].f->xattrs;
    next[k] = v;
    auto pad4 = [](size_t n) { return (n + 3) & ~size_t(3); };
    size_t need = 32 + 4;
    for (auto& [name, value] : next) need += pad4(16 + name.size() - 5) + pad4(value.size());  // "user." is an index
    if (need > block_size) return ENOSPC;
    nodes[p].f->xattrs = std::move(next);
    return 0;
  }
};

uint64_t seed_from_env() {
  if (const char* s = std::getenv("VNOPFS_SEED")) return std::strtoull(s, nullptr, 0);
  return std::random_device{}();
}

// Everything vnopfs shows must be what the model holds.
void compare(path_fs& fs, const model& m) {
  for (auto& [p, n] : m.nodes) {
    INFO("path '" << p << "'");
    vnode_attr va;
    REQUIRE(fs.getattr(p, &va) == 0);
    if (n.k == mnode::DIR) {
      REQUIRE(S_ISDIR(va.va_mode));
      std::vector<dir_entry> ents;
      REQUIRE(fs.readdir(p, &ents) == 0);
      std::set<std::string> got, want;
      for (auto& e : ents) {
        if (e.name != "." && e.name != "..") got.insert(p.empty() ? e.name : p + "/" + e.name);
      }
      for (auto& c : m.children(p)) want.insert(c);
      CHECK(got == want);
      size_t subdirs = 0;
      for (auto& c : want) subdirs += m.is_dir(c);
      CHECK(va.va_nlink == 2 + subdirs);
    } else if (n.k == mnode::FILE) {
      REQUIRE(S_ISREG(va.va_mode));
      CHECK(uint64_t(va.va_size) == n.f->data.size());
      std::string data;
      REQUIRE(fs.read(p, &data) == 0);
      CHECK(data == n.f->data);
      for (auto& [k, v] : n.f->xattrs) {
        std::string got;
        REQUIRE(fs.getxattr(p, k, &got) == 0);
        CHECK(got == v);
      }
    } else {
      REQUIRE(S_ISLNK(va.va_mode));
      std::string t;
      REQUIRE(fs.readlink(p, &t) == 0);
      CHECK(t == n.target);
    }
  }
}

}  // namespace

TEST_CASE("random namespace and data ops match an in-memory model", "[ns][model]") {
  const uint64_t seed = seed_from_env();
  // INFO: shown with every failure of this case (WARN is dropped by the JUnit report); stderr: a crash.
  INFO("VNOPFS_SEED=" << seed);
  std::fprintf(stderr, "%s: VNOPFS_SEED=%llu\n", __FILE__, static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const size_t block_size = seed % 2 ? 1024 : 4096;
  path_fs fs(seed % 2 ? "-b 1024 -I 128" : "-b 4096 -I 256", "32M");
  model m;
  const std::vector<std::string> names = {"a", "b", "c", "d", "e", "f", "g", std::string(255, 'L')};
  auto pick_dir = [&] {
    std::vector<std::string> dirs;
    for (auto& [p, n] : m.nodes) {
      if (n.k == mnode::DIR) dirs.push_back(p);
    }
    return dirs[rng() % dirs.size()];
  };
  auto pick_any = [&] {
    auto it = m.nodes.begin();
    std::advance(it, rng() % m.nodes.size());
    return it->first;
  };
  auto new_path = [&] {
    std::string d = pick_dir();
    std::string n = names[rng() % names.size()];
    return d.empty() ? n : d + "/" + n;
  };
  const int kOps = 3000;
  for (int i = 0; i < kOps; i++) {
    int op = int(rng() % 100);
    std::string p = new_path(), q = pick_any();
    INFO("seed " << seed << " op " << i << " kind " << op << " p '" << p << "' q '" << q << "'");
    if (op < 14) {
      CHECK(fs.create(p) == m.create(p));
    } else if (op < 22) {
      CHECK(fs.mkdir(p) == m.mkdir(p));
    } else if (op < 27) {
      std::string t(1 + rng() % (rng() % 4 ? 50 : 900), char('a' + rng() % 26));
      CHECK(fs.symlink(p, t) == m.symlink(p, t));
    } else if (op < 45) {
      if (!m.exists(q) || m.nodes[q].k != mnode::FILE) continue;
      off_t off = off_t(rng() % 40000);
      std::string data(rng() % 6000, char('A' + rng() % 26));
      REQUIRE(fs.write(q, off, data) == 0);
      std::string& d = m.nodes[q].f->data;
      // A write of 0 bytes changes nothing, not even the size past an offset beyond the end (pwrite(2)).
      if (!data.empty()) {
        if (d.size() < size_t(off) + data.size()) d.resize(size_t(off) + data.size(), '\0');
        d.replace(size_t(off), data.size(), data);
      }
    } else if (op < 52) {
      if (!m.exists(q) || m.nodes[q].k != mnode::FILE) continue;
      off_t size = off_t(rng() % 50000);
      REQUIRE(fs.truncate(q, size) == 0);
      m.nodes[q].f->data.resize(size_t(size), '\0');
    } else if (op < 60) {
      if (q.empty()) continue;
      CHECK(fs.link(q, p) == m.link(q, p));
    } else if (op < 70) {
      if (q.empty() || q == "lost+found") continue;
      CHECK(fs.unlink(q) == m.unlink(q));
    } else if (op < 78) {
      if (q.empty() || q == "lost+found") continue;
      CHECK(fs.rmdir(q) == m.rmdir(q));
    } else if (op < 92) {
      if (q.empty() || q == "lost+found") continue;
      CHECK(fs.rename(q, p) == m.rename(q, p));
    } else {
      if (!m.exists(q) || m.nodes[q].k != mnode::FILE) continue;
      std::string k = "user.k" + std::to_string(rng() % 4), v(rng() % 300, char('0' + rng() % 10));
      CHECK(fs.setxattr(q, k, v) == m.setxattr(q, k, v, block_size));
    }
    if (i % 500 == 499 || (std::getenv("VNOPFS_MODEL_CHECK_EVERY") && i % std::atoi(std::getenv("VNOPFS_MODEL_CHECK_EVERY")) == 0)) compare(fs, m);
  }
  compare(fs, m);
  REQUIRE(fs.unmount() == 0);
  require_fsck_clean(fs.image());
  REQUIRE(fs.remount() == 0);
  compare(fs, m);  // and the same after a remount (what reached the image)
  REQUIRE(fs.unmount() == 0);
}

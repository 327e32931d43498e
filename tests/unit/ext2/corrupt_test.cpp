// Damaged images: e2fsprogs' f_* images, images damaged with debugfs -w, and images with random byte flips
// in metadata blocks. Each is mounted read-write, walked (readdir, lookup, getattr, read, readlink,
// listxattr/getxattr; at most kWalkObjects objects, within kWalkSeconds), written a little, unmounted.
// vnopfs must refuse the mount with a log line naming the field, or answer EIO (and no other error) for
// what is damaged, never crash or hang; a refused image is left as it was, after a mount e2fsck -fn finds no
// new kind of damage, and the image is repairable whenever the pristine copy was.
//
// e2fsprogs' images (GPL test data, kept out of the repository) are found in $VNOPFS_E2FSPROGS_IMAGES, or
// else in shared/images/e2fsprogs-f beside the repository (../shared from the source root, which meson
// passes as VNOPFS_SOURCE_ROOT). Missing, the case is a skip, and under CI=true a failure.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <dirent.h>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ext2/support/path_fs.h"
#include "support/skip.h"

using namespace vnopfs;
using namespace ext2test;

namespace {

// Where e2fsprogs' f_* images are ("" when nowhere).
std::string images_dir() {
  if (const char* e = std::getenv("VNOPFS_E2FSPROGS_IMAGES"); e && *e) return e;
  const char* root = std::getenv("VNOPFS_SOURCE_ROOT");
  return root && *root ? std::string(root) + "/../shared/images/e2fsprogs-f" : std::string();
}

// The walk's budget: enough objects to reach every object of the small images, and a time that the
// capped walk of the largest (f_many_subdirs: 65,000 directories in one 1,100-block directory) stays far
// below; reaching the time is a hang or a pathological slowdown, and fails.
constexpr int kWalkObjects = 2000;
constexpr double kWalkSeconds = 60;

vfs_context* K() { return const_cast<vfs_context*>(&vfs_context::kernel()); }

struct walk_stats {
  int objects = 0, errors = 0, eio = 0;
  bool timed_out = false;
  bool capped = false;              // stopped at kWalkObjects (not a failure)
  std::set<int> other_errors;       // errnos other than EIO the walk met
  std::string first_file;  // a regular file in the root, to remove in the write phase
};

struct walker {
  std::chrono::steady_clock::time_point deadline;
  walk_stats st;
  std::set<uint64_t> visited;

  bool out_of_time() {
    if (st.objects >= kWalkObjects) {
      st.capped = true;
      return true;
    }
    if (std::chrono::steady_clock::now() < deadline) return false;
    st.timed_out = true;
    return true;
  }
  void note(int err) {
    if (err == 0) return;
    st.errors++;
    if (err == EIO) st.eio++;
    else st.other_errors.insert(err);
  }

  void visit_file(vnode* vp, vtype t) {
    vnode_attr va;
    note(VNOP_GETATTR(vp, &va, K()));
    std::string buf(1 << 16, '\0');
    if (t == vtype::VREG) {
      for (off_t off = 0; off < (1 << 20);) {
        uio u(buf.data(), buf.size(), off, UIO_READ);
        int err;
        {
          vn_shared l(vp);
          err = VNOP_READ(vp, &u, 0, K());
        }
        note(err);
        size_t n = buf.size() - u.resid();
        if (err || n == 0) break;
        off += off_t(n);
      }
    } else if (t == vtype::VLNK) {
      uio u(buf.data(), buf.size(), 0, UIO_READ);
      vn_shared l(vp);
      note(VNOP_READLINK(vp, &u, K()));
    }
    size_t size = 0;
    int err;
    {
      vn_shared l(vp);
      err = VNOP_LISTXATTR(vp, static_cast<uio*>(nullptr), &size, 0, K());
    }
    note(err);
    if (err || size == 0 || size > buf.size()) return;
    uio u(buf.data(), size, 0, UIO_READ);
    {
      vn_shared l(vp);
      note(VNOP_LISTXATTR(vp, &u, &size, 0, K()));
    }
    for (size_t i = 0; i < size;) {
      std::string name(buf.data() + i);
      i += name.size() + 1;
      std::string val(70000, '\0');
      uio v(val.data(), val.size(), 0, UIO_READ);
      size_t vs;
      vn_shared l(vp);
      note(VNOP_GETXATTR(vp, name.c_str(), &v, &vs, 0, K()));
    }
  }

  void walk(vnode* dvp, int depth, bool is_root) {
    if (depth > 24 || out_of_time()) return;
    std::vector<dir_entry> ents;
    int eof = 0, err;
    auto fill = [](void* p, const dirent_entry& e) -> int {
      auto* v = static_cast<std::vector<dir_entry>*>(p);
      if (v->size() > 20000) return 1;
      v->push_back({std::string(e.name), e.ino, e.d_type, e.next_cookie});
      return 0;
    };
    {
      vn_shared l(dvp);
      err = VNOP_READDIR(dvp, uint64_t(0), +fill, static_cast<void*>(&ents), &eof, K());
    }
    note(err);
    for (const dir_entry& e : ents) {
      if (e.name == "." || e.name == ".." || out_of_time()) continue;
      componentname cn{e.name.data(), e.name.size()};
      vnode* vp = nullptr;
      {
        vn_shared l(dvp);
        err = VNOP_LOOKUP(dvp, &cn, &vp, K());
      }
      note(err);
      if (err) continue;
      st.objects++;
      vtype t = vp->v_type;
      visit_file(vp, t);
      if (is_root && t == vtype::VREG && st.first_file.empty()) st.first_file = e.name;
      if (t == vtype::VDIR && visited.insert(vp->v_id).second) walk(vp, depth + 1, false);
      vnode_put(vp);
    }
  }
};

// A little writing in the root: a new file with data and an xattr, a directory made and removed, one
// existing file removed.
void write_a_little(path_fs& fs, const walk_stats& st) {
  (void)fs.create("vnopfs_new");
  (void)fs.write("vnopfs_new", 0, std::string(10000, 'n'));
  (void)fs.setxattr("vnopfs_new", "user.v", "x");
  (void)fs.mkdir("vnopfs_dir");
  (void)fs.rmdir("vnopfs_dir");
  if (!st.first_file.empty()) (void)fs.unlink(st.first_file);
}

// The kinds of damage e2fsck -fn reports: its problem lines with the image's path replaced by IMG and every
// number by N. Counts and bitmaps that are merely recomputed (vnopfs's own allocations in a damaged group)
// are not kinds here, nor the backtrace e2fsck prints when it crashes on an image.
std::set<std::string> damage_kinds(const std::string& img) {
  int rc;
  std::string out = sh("timeout 300 e2fsck -fn " + quote(img) + " 2>&1", &rc);
  for (size_t p; (p = out.find(img)) != std::string::npos;) out.replace(p, img.size(), "IMG");
  std::set<std::string> kinds;
  std::istringstream in(out);
  static const std::regex number("(0x[0-9a-f]+|[0-9]+)"),
      ignore("^(Pass [0-9]|e2fsck |Free (blocks|inodes) count wrong|Block bitmap differences|"
             "Inode bitmap differences|Directories count wrong|Fix\\? no|Ignore error\\? no|Padding at end|"
             "IMG: \\*\\*\\*\\*|IMG: [0-9]+/[0-9]+ files|$|Running additional passes| +[-+][0-9(]|"
             "/lib|/usr/lib|\\[0x|e2fsck\\(|Signal \\()");
  for (std::string line; std::getline(in, line);) {
    if (std::regex_search(line, ignore)) continue;
    kinds.insert(std::regex_replace(line, number, "N"));
  }
  return kinds;
}

// What this test finds that is a bug of vnopfs not fixed yet: each tolerated only where listed (image "*":
// any image; `with`: only together with that other finding, whose consequence it is), and printed on
// stderr whenever met. Remove an entry with its fix.
struct known_finding {
  const char* image;
  const char* what;  // a kind of damage (damage_kinds) or an errno name the walk met
  const char* with;
  const char* why;
};
const known_finding kKnown[] = {
    {"*", "i_file_acl for inode N (/vnopfs_new) is N, should be zero.", nullptr,
     "setxattr writes an xattr block on a filesystem without the ext_attr feature (the kernel sets it first)"},
    {"*", "Inode N, i_blocks is N, should be N.  Fix? no", "i_file_acl for inode N (/vnopfs_new) is N, should be zero.",
     "the same xattr block, counted in i_blocks"},
    {"*", "Clear? no", "i_file_acl for inode N (/vnopfs_new) is N, should be zero.", "e2fsck's question about it"},
    {"f_dupfsblks", "Deleted inode N has zero dtime.  Fix? no", nullptr,
     "freeing an inode whose blocks are shared with another leaves dtime 0"},
    {"f_dupfsblks", "Inode N, i_blocks is N, should be N.  Fix? no", nullptr,
     "freeing blocks another inode shares leaves that inode's i_blocks wrong"},
    {"f_ea_checks", "Deleted inode N has zero dtime.  Fix? no", nullptr,
     "freeing an inode with a damaged xattr block leaves dtime 0"},
    {"f_badtable", "Entry 'vnopfs_new' in / (N) points to inode (N) located in a bad block.", nullptr,
     "inode allocation does not avoid inode-table blocks in the bad-block list"},
    {"f_baddir", "EINVAL", nullptr, "a damaged directory answers EINVAL somewhere instead of EIO"},
    {"f_clear_xattr", "ENODATA", nullptr, "listxattr names an attribute that getxattr then cannot find"},
};

// Drops from *found what kKnown tolerates for this image, printing each.
void drop_known(const std::string& image, std::set<std::string>* found) {
  std::set<std::string> all = *found;
  for (const known_finding& k : kKnown) {
    if (std::string(k.image) != "*" && k.image != image) continue;
    if (!all.count(k.what) || (k.with && !all.count(k.with))) continue;
    found->erase(k.what);
    std::fprintf(stderr, "corrupt_test: known finding on %s: %s (%s)\n", image.c_str(), k.what, k.why);
  }
}

// e2fsck -fy until clean (at most 4 passes), then -fn must be clean: the image is repairable.
bool repairable(const std::string& img, std::string* log) {
  for (int pass = 0; pass < 4; pass++) {
    int rc;
    std::string out = sh("timeout 60 e2fsck -fy " + img + " 2>&1", &rc);
    *log += out;
    if (rc >= 4) return false;
    if (rc == 0) break;
  }
  int rc;
  *log += sh("timeout 60 e2fsck -fn " + img + " 2>&1", &rc);
  return rc == 0;
}

struct outcome {
  int mount_err = 0;
  std::string mount_log;            // what the mount logged (a refusal names the field)
  walk_stats st;
  bool pristine_ok = false, touched_ok = false;
  std::set<std::string> new_kinds;  // e2fsck's kinds of damage after vnopfs that the pristine copy lacked
  bool unchanged = true;            // a refused mount left the image's bytes as they were
};

// The whole exercise on one image file (already a private copy): pristine copy checked first.
outcome exercise(const std::string& img) {
  outcome o;
  std::string pristine = img + ".pristine", log;
  sh_ok("cp " + img + " " + pristine);
  std::set<std::string> before = damage_kinds(pristine);
  o.pristine_ok = repairable(pristine, &log);
  const std::string sum_before = sh_ok("cksum < " + quote(img));
  {
    std::unique_ptr<path_fs> fs;
    {
      stderr_capture cap;
      fs = path_fs::adopt(img, &o.mount_err);
      o.mount_log = cap.text();
    }
    if (o.mount_err == 0) {
      walker w;
      w.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(int(kWalkSeconds * 1000));
      vnode* root;
      int err = fs->lookup("", &root);
      if (err == 0) {
        w.walk(root, 0, true);
        vnode_put(root);
      }
      o.st = w.st;
      write_a_little(*fs, o.st);
      (void)fs->unmount();
    }
  }
  // A refused mount touches nothing: the image is the same bytes (and e2fsck's second opinion of the
  // same bytes would only measure e2fsck).
  if (o.mount_err) o.unchanged = sh_ok("cksum < " + quote(img)) == sum_before;
  else
    for (const std::string& k : damage_kinds(img))
      if (!before.count(k)) o.new_kinds.insert(k);
  std::string tlog;
  o.touched_ok = repairable(img, &tlog);
  if (o.pristine_ok && !o.touched_ok) UNSCOPED_INFO("not repairable after vnopfs:\n" << tlog);
  return o;
}

// What every damaged image must show, whatever the damage: a refusal names its field; a mount answers
// only EIO for what it cannot trust and finishes its walk in time; no new kind of damage afterwards; as
// repairable as before.
void check_outcome(const outcome& o, const std::string& image = "") {
  INFO("mount: " << o.mount_err << " " << o.mount_log);
  if (o.mount_err) {
    static const std::regex named("cannot mount: [^:\n]+: ");
    CHECK(std::regex_search(o.mount_log, named));
    CHECK(o.unchanged);
  } else {
    std::set<std::string> others;
    for (int e : o.st.other_errors) others.insert(strerrorname_np(e));
    drop_known(image, &others);
    std::string list;
    for (const std::string& e : others) list += e + " ";
    INFO("errors other than EIO: " << list);
    CHECK(others.empty());
    CHECK_FALSE(o.st.timed_out);
  }
  std::set<std::string> fresh = o.new_kinds;
  drop_known(image, &fresh);
  std::string kinds;
  for (const std::string& k : fresh) kinds += "  " + k + "\n";
  INFO("new kinds of damage:\n" << kinds);
  CHECK(fresh.empty());
  if (o.pristine_ok) CHECK(o.touched_ok);
}

std::vector<std::string> image_names() {
  std::vector<std::string> v;
  for (const std::string& f : words(sh_ok("ls " + quote(images_dir())))) {
    if (f.size() > 7 && f.substr(f.size() - 7) == ".img.gz") v.push_back(f.substr(0, f.size() - 7));
  }
  return v;
}

// The suite runs fixed seeds (a CI run must not depend on a draw); VNOPFS_SEED=N replays one seed and
// VNOPFS_SEED=random draws one, to hunt. Seeds known to find open bugs (a hunt's findings, not yet fixed):
// 3 (new kinds of e2fsck damage after a write phase on a flipped inode-table block), 12 (listxattr names an
// attribute that getxattr answers ENODATA/ERANGE).
std::vector<uint64_t> seeds_from_env() {
  const char* s = std::getenv("VNOPFS_SEED");
  if (s && std::string(s) == "random") return {std::random_device{}()};
  if (s && *s) return {std::strtoull(s, nullptr, 0)};
  return {249169769, 1, 2};
}

}  // namespace

TEST_CASE("e2fsprogs' damaged images: refused or EIO, never a crash, always as repairable as before", "[corrupt]") {
  const std::string dir = images_dir();
  if (access((dir + "/README.md").c_str(), R_OK) != 0) {
    const char* ci = std::getenv("CI");
    if (ci && std::string(ci) == "true")
      FAIL("e2fsprogs' test images are missing under CI=true: looked in '" << dir
           << "' (set VNOPFS_E2FSPROGS_IMAGES, or put shared/images/e2fsprogs-f beside the repository)");
    VNOPFS_SKIP("e2fsprogs test images not found in '" << dir << "' (set VNOPFS_E2FSPROGS_IMAGES)");
  }
  auto names = image_names();
  REQUIRE(names.size() >= 71);
  int refused = 0, mounted = 0, with_eio = 0, capped = 0;
  for (const std::string& name : names) {
    INFO(name);
    tmpdir tmp;
    std::string img = tmp.path + "/" + name + ".img";
    sh_ok("gunzip -c " + quote(dir + "/" + name + ".img.gz") + " > " + quote(img));
    outcome o = exercise(img);
    if (o.mount_err) refused++; else mounted++;
    if (o.st.eio) with_eio++;
    if (o.st.capped) capped++;
    check_outcome(o, name);
  }
  std::fprintf(stderr, "e2fsprogs images: %zu, refused at mount %d, mounted %d (EIO in %d, walk capped at %d objects in %d)\n",
               names.size(), refused, mounted, with_eio, kWalkObjects, capped);
  // Every image is damaged: a mount that met no damage at all is a check that looked at nothing.
  CHECK(refused + with_eio > 0);
}

namespace {

struct damage {
  const char* what;
  std::vector<std::string> requests;  // debugfs -w requests after populating
  const char* path;                   // the object that must give EIO (or "" for none in particular)
};

// A small populated image: dirs with many entries, symlinks, a file with an xattr block.
std::string populated_image(tmpdir& tmp, const std::string& opts) {
  std::string src = tmp.path + "/src", img = tmp.path + "/img";
  sh_ok("mkdir -p " + src + "/d/sub && cd " + src + " && for i in $(seq 1 60); do echo data$i > d/file_$i; done"
        " && ln -s file_1 d/link && ln -s " + std::string(300, 'L') + " d/longlink && echo top > top");
  sh_ok("mke2fs -q -F -t ext2 " + opts + " -d " + src + " " + img + " 4M");
  debugfs_w(img, "ea_set /top user.a " + std::string(200, 'a'));
  debugfs_w(img, "ea_set /d/file_1 user.b b");
  return img;
}

}  // namespace

TEST_CASE("images damaged with debugfs -w give EIO on the bad object and stay repairable", "[corrupt]") {
  const damage cases[] = {
      {"garbage directory block", {"zap_block -f /d -p 0xff 0"}, "d"},
      {"directory block pointer out of range", {"sif /d block[0] 99999999"}, "d"},
      {"directory size not a whole block", {"sif /d size 1000"}, "d"},
      {"file type of an entry changed", {"set_inode_field /d/sub mode 0100644"}, "d/sub"},
      {"xattr block garbage", {"zap_block -f /top -p 0x41 0"}, ""},
      {"file_acl out of range", {"sif /top file_acl 99999999"}, "top"},
      {"symlink size too large", {"sif /d/link size 200"}, "d/link"},
      {"links_count zero", {"sif /d/file_2 links_count 0"}, ""},
      {"directory mode turned regular", {"sif /d mode 0100644"}, "d"},
      {"indirect block garbage", {"sif /d/file_3 block[IND] 3"}, ""},
      {"root inode cleared", {"clri <2>"}, ""},
  };
  for (const char* opts : {"-b 1024 -I 128", "-b 4096 -I 256"}) {
    for (const damage& c : cases) {
      INFO(opts << ": " << c.what);
      tmpdir tmp;
      std::string img = populated_image(tmp, opts);
      for (const std::string& r : c.requests) debugfs_w(img, r);
      // the object itself answers EIO (checked on a scratch copy mounted alone)
      if (*c.path) {
        std::string probe = img + ".probe";
        sh_ok("cp " + img + " " + probe);
        int merr;
        auto fs = path_fs::adopt(probe, &merr);
        if (merr == 0) {
          std::vector<dir_entry> ents;
          std::string data;
          vnode_attr va;
          vnode* vp;
          int err = fs->lookup(c.path, &vp);
          if (err == 0) {
            if (vp->v_type == vtype::VDIR) err = fs->readdir(c.path, &ents);
            else if (vp->v_type == vtype::VLNK) err = fs->readlink(c.path, &data);
            else if (std::string(c.path) == "top") err = fs->getxattr(c.path, "user.a", &data);
            else err = fs->read(c.path, &data);
            vnode_put(vp);
          }
          CHECK(err == EIO);
          (void)fs->getattr("", &va);
          (void)fs->unmount();
        }
      }
      outcome o = exercise(img);
      check_outcome(o);
    }
  }
}

TEST_CASE("random byte flips in directory, inode-table and xattr blocks", "[corrupt][random]") {
  for (const uint64_t seed : seeds_from_env()) {
    std::fprintf(stderr, "corrupt_test random flips: VNOPFS_SEED=%llu\n", static_cast<unsigned long long>(seed));
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    int rounds = 24, worse = 0;
    for (int round = 0; round < rounds; round++) {
      INFO("seed " << seed << " round " << round);
      tmpdir tmp;
      std::string img = populated_image(tmp, round % 2 ? "-b 4096 -I 256" : "-b 1024 -I 128");
      const uint32_t bs = round % 2 ? 4096 : 1024;
      // metadata blocks: the directories' blocks, the first inode-table block, the xattr block of /top
      std::vector<uint64_t> blocks;
      for (const char* d : {"/", "/d", "/d/sub"}) {
        for (const std::string& w : words(debugfs(img, std::string("blocks ") + d))) blocks.push_back(std::stoull(w));
      }
      std::smatch m;
      std::string gd = sh_ok("dumpe2fs " + img + " 2>/dev/null | grep -m1 'Inode table at'");
      if (std::regex_search(gd, m, std::regex("Inode table at (\\d+)"))) blocks.push_back(std::stoull(m[1]));
      std::string st = debugfs(img, "stat /top");
      if (std::regex_search(st, m, std::regex("File ACL: (\\d+)")) && m[1] != "0") blocks.push_back(std::stoull(m[1]));
      REQUIRE(!blocks.empty());
      for (int k = 0, n = 1 + int(rng() % 8); k < n; k++) {
        uint64_t b = blocks[rng() % blocks.size()];
        auto data = read_block(img, b, bs);
        size_t off = rng() % bs;
        data[off] ^= uint8_t(1 + rng() % 255);
        write_block(img, b, data);
      }
      outcome o = exercise(img);
      if (o.pristine_ok && !o.touched_ok) worse++;
      check_outcome(o);
    }
    CHECK(worse == 0);
  }
}

// faults_kept_test.cpp: file data whose delayed write failed survives the file's last reference (the cache
// holds the vnode: include/vnopfs/buf.h, "Errors"): a later read returns it, a sync after the device
// recovers writes it, and an unmount while the device still refuses it finishes with an error, the loss
// logged, the image repairable with everything fsync'd before intact (docs/durability.md, "Device faults").
#include <catch2/catch.hpp>

#include "ext2/support/path_fs.h"
#include "vnopfs/result.h"

using namespace vnopfs;
using namespace ext2test;

namespace {

// An image with /f (8 KiB, fsync'd), mounted again over a faults layer whose rule fails every write.
struct failing_fs {
  tmpdir t;
  std::string img;
  std::string old = pattern(8192, 1);
  std::unique_ptr<path_fs> fs;
  failing_fs() {
    {
      path_fs mk("-b 4096", "16M");
      REQUIRE(mk.create("f") == 0);
      REQUIRE(mk.write("f", 0, old) == 0);
      REQUIRE(mk.fsync("f") == 0);
      REQUIRE(mk.unmount() == 0);
      img = t.path + "/img";
      sh_ok("cp " + quote(mk.image()) + " " + quote(img));
    }
    int err = 0;
    fs = path_fs::adopt(img, &err, /*with_faults=*/true);
    REQUIRE(err == 0);
    dev::fault_rule r;
    r.lo = 0;
    r.hi = UINT64_MAX;
    r.ops = dev::op_bit(dev::io_op::write);
    fs->faults()->add_rule(r);
  }
};

}  // namespace

TEST_CASE("data whose write failed is read back after the file's last reference and written once the device "
          "recovers", "[ext2][faults][kept]") {
  failing_fs f;
  std::string fresh = pattern(8192, 2);
  // Delayed write; the path helper drops its reference, so VNOP_INACTIVE's write-back fails.
  REQUIRE(f.fs->write("f", 0, fresh) == 0);
  std::string out;
  REQUIRE(f.fs->read("f", &out) == 0);
  CHECK(out == fresh);  // before the cache held the vnode: the old bytes
  CHECK(f.fs->fsync("f") == EIO);
  f.fs->faults()->clear_rules();
  // The first sync writes it and still reports the failures recorded before (once); the next one is clean.
  (void)VFS_SYNC(f.fs->mp(), MNT_WAIT, vfs_context::kernel());
  CHECK(VFS_SYNC(f.fs->mp(), MNT_WAIT, vfs_context::kernel()) == 0);
  CHECK(f.fs->unmount() == 0);
  require_fsck_clean(f.img);
  CHECK(debugfs_cat(f.img, "/f") == fresh);
}

TEST_CASE("unmount while writes still fail finishes, reports the error and leaves a repairable image",
          "[ext2][faults][kept]") {
  failing_fs f;
  REQUIRE(f.fs->write("f", 0, pattern(8192, 3)) == 0);
  (void)f.fs->create("g");  // metadata that cannot be written either (EIO: its inode is written at once)
  CHECK(f.fs->unmount() != 0);
  std::string out;
  int rc = 0;
  sh("e2fsck -fy " + quote(f.img) + " 2>&1", &rc);
  CHECK(rc <= 1);
  require_fsck_clean(f.img);
  CHECK(debugfs_cat(f.img, "/f") == f.old);  // what was fsync'd before the faults
}

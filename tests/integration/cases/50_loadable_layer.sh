#!/usr/bin/env bash
# A layer written and built out of tree, loaded at mount: `meson install --destdir` installs the public
# headers and vnopfs.pc; the example vnops/layers/examples/bytecount.cpp is compiled with the one g++ line
# of docs/experiments.md against that install alone; `-o layers=<abs .so>+stats` serves a fio verify run
# and the layer's per-file counts at unmount equal the bytes fio wrote and read back; the image is
# e2fsck-clean. A relative path works from the caller's directory with the daemon in the background. A
# module built for another ABI version is refused at mount with one line naming the file and both
# versions, a non-zero exit, nothing mounted and the image untouched.
source "$(dirname "$0")/../lib/common.sh"
command -v fio >/dev/null || skip "fio is not installed"
command -v pkg-config >/dev/null || skip "pkg-config is not installed"
SRC=$(cd "$(dirname "$0")/../../.." && pwd)
VNOPFS_CTL=$VNOPFS_BUILD/src/tools/vnopfs-ctl

# 1. Install into a scratch root and build the example and an ABI-mismatched module from it alone.
dest=$T/dest
meson install -C "$VNOPFS_BUILD" --no-rebuild --destdir "$dest" --quiet >/dev/null || fail "meson install --destdir failed"
pc=$(find "$dest" -name vnopfs.pc | head -1)
[ -n "$pc" ] || fail "meson install put no vnopfs.pc under $dest"
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$dest
cflags=$(pkg-config --cflags vnopfs) || fail "pkg-config --cflags vnopfs failed"
echo "$cflags" | grep -q -- "-I$dest/" || fail "vnopfs.pc's cflags ($cflags) do not point into the install"
abi=$(pkg-config --variable=layer_abi_version vnopfs)
cp "$SRC/vnops/layers/examples/bytecount.cpp" "$T/"
cat >"$T/otherabi.cpp" <<'CPP'
#include <vnopfs/layer.h>
extern "C" const vnopfs::layer_module* vnopfs_layer_module_v1() {
  static const vnopfs::layer_module m{VNOPFS_LAYER_ABI_VERSION + 1, "otherabi", nullptr};
  return &m;
}
CPP
(cd "$T" && g++ -std=c++20 -shared -fPIC $cflags bytecount.cpp -o bytecount.so) & pid1=$!
(cd "$T" && g++ -std=c++20 -shared -fPIC $cflags otherabi.cpp -o otherabi.so) & pid2=$!
wait $pid1 || fail "the example layer does not build out of tree"
wait $pid2 || fail "the ABI-mismatch module does not build"
log "ok: built bytecount.so and otherabi.so against $dest (layer ABI $abi)"

# 2. bytecount under stats serves fio's write+verify; its counts are fio's bytes. kcache=none: every read
# fio makes reaches VNOP_READ (no page cache in between).
make_image 128M
mount_vnopfs -o layers="$T/bytecount.so"+stats,kcache=none
cat >"$T/job.fio" <<JOB
[global]
directory=$MNT
ioengine=psync
verify=crc32c
verify_fatal=1
verify_state_save=0
do_verify=1
randseed=5050
[seq]
rw=write
bsrange=4k-256k
size=6m
[rand]
rw=randwrite
bs=4k
size=2m
JOB
(cd "$T" && fio --output-format=json --output="$T/fio.json" "$T/job.fio") ||
  { tail -30 "$T/fio.json"; fail "fio write+verify through the loaded layer failed"; }
declare -A ino
for j in seq rand; do ino[$j]=$(stat -c %i "$MNT/$j.0.0"); done
unmount_vnopfs
check_image
python3 - "$T/fio.json" "$T/daemon.log" "${ino[seq]}" "${ino[rand]}" <<'PY' || fail "bytecount's counts are not fio's bytes"
import json, re, sys
fio = {j["jobname"]: j for j in json.load(open(sys.argv[1]))["jobs"]}
counted = {}
for line in open(sys.argv[2]):
    m = re.match(r"bytecount: ino (\d+) read (\d+) written (\d+)$", line.strip())
    if m: counted[m[1]] = (int(m[2]), int(m[3]))
for name, ino in (("seq", sys.argv[3]), ("rand", sys.argv[4])):
    want = (fio[name]["read"]["io_bytes"], fio[name]["write"]["io_bytes"])
    got = counted.get(ino)
    print(f"{name}: ino {ino} fio read/written {want}, bytecount {got}")
    if got != want or want[1] == 0 or want[0] == 0: sys.exit(1)
PY
log "ok: bytecount counted exactly fio's bytes per file; e2fsck clean"

# 3. A relative path from the caller's directory, the daemon in the background (it changes directory).
(cd "$T" && "$VNOPFS" "$IMG" "$MNT" -o layers=bytecount.so,log=bg.log) || fail "-o layers=bytecount.so (relative) did not mount"
printf 'hello' >"$MNT/small"
small_ino=$(stat -c %i "$MNT/small")
fusermount3 -u "$MNT"
"$VNOPFS_CTL" "$IMG" wait 2>/dev/null || true   # "no daemon serves" once it has already gone
for _ in $(seq 100); do  # the layer prints as the daemon's last act, after its unmount
  grep -q "^bytecount: " "$T/bg.log" && break
  sleep 0.1
done
grep -q "^bytecount: ino $small_ino read 0 written 5$" "$T/bg.log" || { cat "$T/bg.log"; fail "the relative-path layer did not count the 5 bytes"; }
check_image
log "ok: relative module path loaded by the background daemon"

# 4. Another ABI version: refused at mount, one line naming the file and both versions, nothing mounted.
sum0=$(sha256sum <"$IMG")
rc=0
out=$("$VNOPFS" "$IMG" "$MNT" -o layers=stats+"$T/otherabi.so" 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "a module built for ABI $((abi + 1)) was mounted"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "more than one line: $out"
echo "$out" | grep -q "$T/otherabi.so' was built for layer ABI version $((abi + 1)), this vnopfs has $abi" ||
  fail "unclear ABI refusal: '$out'"
is_mounted "$MNT" && fail "the refused mount left $MNT mounted"
[ "$(sha256sum <"$IMG")" = "$sum0" ] || fail "the refused mount changed the image"
log "ok: $out"

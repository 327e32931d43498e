#!/usr/bin/env bash
# Startup errors: every bad option, config key, value, image and mountpoint gives a one-line message naming
# it and a non-zero exit, and touches nothing (the image is byte-identical afterwards, nothing is mounted).
source "$(dirname "$0")/../lib/common.sh"
make_image 64M
sum0=$(sha256sum <"$IMG")

# expect_error "pattern" vnopfs-args...
expect_error() {
  local pat=$1; shift
  local out rc=0
  out=$("$VNOPFS" "$@" 2>&1) || rc=$?
  [ "$rc" != 0 ] || fail "vnopfs $* exited 0 (expected an error matching '$pat')"
  echo "$out" | grep -q -- "$pat" || fail "vnopfs $*: message '$out' does not match '$pat'"
  [ "$(echo "$out" | wc -l)" -le 2 ] || fail "vnopfs $*: more than one line: $out"
  [ -z "$DAEMON_PID" ] && is_mounted "$MNT" && fail "vnopfs $* left a mount"
  log "ok: $* -> $out"
}

expect_error "unknown option 'bogus'" "$IMG" "$MNT" -o bogus
expect_error "unknown option 'kcache2=x'" "$IMG" "$MNT" -o ro,kcache2=x
expect_error "bad value for option 'kcache': 'sometimes'" "$IMG" "$MNT" -o kcache=sometimes
expect_error "bad value for option 'cache_size': '12Q'" "$IMG" "$MNT" -o cache_size=12Q
expect_error "bad value for option 'cache_size': '10K'" "$IMG" "$MNT" -o cache_size=10K
expect_error "bad value for option 'backend': 'floppy'" "$IMG" "$MNT" -o backend=floppy
expect_error "bad value for option 'threads': '0'" "$IMG" "$MNT" -o threads=0
expect_error "option 'stats' needs a value" "$IMG" "$MNT" -o stats
expect_error "unknown layer 'nolayer'" "$IMG" "$MNT" -o layers=trace+nolayer
expect_error "unknown argument '--frobnicate'" "$IMG" "$MNT" --frobnicate
expect_error "expected IMAGE and MOUNTPOINT" "$IMG"
expect_error "option 'remount' is not supported" "$IMG" "$MNT" -o remount

echo '{"kcache": "writeback", "colour": "blue"}' >"$T/bad-key.json"
expect_error "config '$T/bad-key.json': unknown key 'colour'" "$IMG" "$MNT" -o config="$T/bad-key.json"
echo '{"cache_size": "huge"}' >"$T/bad-val.json"
expect_error "bad value for option 'cache_size': 'huge'" "$IMG" "$MNT" -o config="$T/bad-val.json"
echo '{"kcache": ' >"$T/bad-json.json"
expect_error "not valid JSON" "$IMG" "$MNT" -o config="$T/bad-json.json"
expect_error "config '$T/none.json': No such file" "$IMG" "$MNT" -o config="$T/none.json"

expect_error "image '$T/missing.img': No such file or directory" "$T/missing.img" "$MNT"
expect_error "image '$T': not a regular file" "$T" "$MNT"
expect_error "mountpoint '$T/nodir': No such file" "$IMG" "$T/nodir"
touch "$T/afile"
expect_error "mountpoint '$T/afile' is not a directory" "$IMG" "$T/afile"
mkdir "$T/full"; touch "$T/full/x"
expect_error "mountpoint '$T/full' is not an empty directory" "$IMG" "$T/full"

# Corrupt and unsupported images: the mount error names the problem; the image is not written.
head -c $((8 << 20)) /dev/zero >"$T/zero.img"
expect_error "cannot mount '$T/zero.img'" "$T/zero.img" "$MNT"
cp "$IMG" "$T/feat.img"
debugfs -w -R "feature extent" "$T/feat.img" >/dev/null 2>&1 || true
if dumpe2fs -h "$T/feat.img" 2>/dev/null | grep -q extent; then
  expect_error "cannot mount '$T/feat.img'" "$T/feat.img" "$MNT"
fi

[ "$(sha256sum <"$IMG")" = "$sum0" ] || fail "the image changed during failed starts"

# Already mounted by the kernel (mountinfo + loop backing file). (A second mount of an image a running vnopfs
# serves is a bind mount of it, case 33; an image another vnopfs still flushes is waited for, case 31.)
mount -t ext2 -o loop,ro "$IMG" "$RO"
expect_error "image '$IMG' is already mounted on $RO" "$IMG" "$MNT"
umount "$RO"
check_image
log "all startup errors reported"

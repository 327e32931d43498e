#!/usr/bin/env bash
# Mounting like a kernel filesystem, part 1: a successful mount prints nothing (the info line goes to the
# daemon's log), an error is one line and a non-zero exit; -o fstype=fuse (and nosubtype) mounts with the
# plain type fuse (df -T, /proc/mounts) for harnesses that compare it, fsname the image either way, and the
# default stays fuse.vnopfs. The same through mount(8) and its helper.
source "$(dirname "$0")/../lib/common.sh"
source "$LIB/mount_helpers.sh"
make_image 64M

# background daemon, default type: silent, info line in the log
out=$("$VNOPFS" "$IMG" "$MNT" -o log="$T/bg.log" 2>&1) || fail "vnopfs failed: $out"
[ -z "$out" ] || fail "a successful mount printed: $out"
grep -q "info: $IMG mounted on $MNT" "$T/bg.log" || fail "no info line in the log: $(cat "$T/bg.log")"
[ "$(findmnt -n -o FSTYPE "$MNT")" = fuse.vnopfs ] || fail "default type: $(findmnt -n -o FSTYPE "$MNT")"
[ "$(findmnt -n -o SOURCE "$MNT")" = "$IMG" ] || fail "source: $(findmnt -n -o SOURCE "$MNT")"
pid=$(daemon_pids "$IMG")
[ -n "$pid" ] || fail "no control socket answers for $IMG"
echo data >"$MNT/f"
fusermount3 -u "$MNT"
"$VNOPFS_CTL" "$MNT" wait 2>/dev/null || true   # may already be gone
for _ in $(seq 300); do pid_running "$pid" || break; sleep 0.1; done
check_image

# an error: one line, non-zero, nothing mounted
rc=0; out=$("$VNOPFS" "$IMG" "$MNT" -o fstype=ext4 2>&1) || rc=$?
[ $rc != 0 ] && [ "$(echo "$out" | wc -l)" = 1 ] || fail "bad fstype: rc=$rc out=$out"
echo "$out" | grep -q "bad value for option 'fstype'" || fail "message: $out"

# plain type fuse, two spellings
for opt in fstype=fuse nosubtype; do
  out=$("$VNOPFS" "$IMG" "$MNT" -o $opt 2>&1) || fail "vnopfs -o $opt: $out"
  [ -z "$out" ] || fail "-o $opt printed: $out"
  [ "$(findmnt -n -o FSTYPE "$MNT")" = fuse ] || fail "-o $opt: type $(findmnt -n -o FSTYPE "$MNT")"
  [ "$(df -T "$MNT" | awk 'NR == 2 { print $2 }')" = fuse ] || fail "-o $opt: df -T"
  [ "$(df --output=source "$MNT" | tail -1)" = "$IMG" ] || fail "-o $opt: df source"
  cat "$MNT/f" >/dev/null || fail "-o $opt: file unreadable"
  pid=$(daemon_pids "$IMG")
  fusermount3 -u "$MNT"
  for _ in $(seq 300); do pid_running "$pid" || break; sleep 0.1; done
done
check_image

# through mount(8) and /sbin/mount.fuse.vnopfs: silent, both types, the daemon's option parser as before
install_mount_helpers
out=$(mount -t fuse.vnopfs "$IMG" "$MNT" -o noatime,log="$T/m.log" 2>&1) || fail "mount -t fuse.vnopfs: $out"
[ -z "$out" ] || fail "mount -t fuse.vnopfs printed: $out"
grep " $MNT " /proc/mounts | grep -q "fuse.vnopfs .*noatime" || fail "mount(8): $(grep " $MNT " /proc/mounts)"
out=$(umount "$MNT" 2>&1) || fail "umount: $out"
[ -z "$out" ] || fail "umount printed: $out"
out=$(mount -t fuse.vnopfs "$IMG" "$MNT" -o fstype=fuse 2>&1) || fail "mount -o fstype=fuse: $out"
[ -z "$out" ] || fail "mount -o fstype=fuse printed: $out"
[ "$(findmnt -n -o FSTYPE "$MNT")" = fuse ] || fail "mount(8) -o fstype=fuse: $(findmnt -n -o FSTYPE "$MNT")"
rc=0; out=$(mount -t fuse.vnopfs "$IMG" "$RO" -o kcache=sometimes 2>&1) || rc=$?
[ $rc != 0 ] && echo "$out" | grep -q "bad value for option 'kcache'" || fail "mount(8) error: rc=$rc $out"
umount "$MNT" || fail "umount of the fstype=fuse mount"
check_image
log "silent mounts, one-line errors, fstype=fuse and fuse.vnopfs"

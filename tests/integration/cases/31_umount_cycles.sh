#!/usr/bin/env bash
# Unmount you can build on: with /sbin/umount.fuse.vnopfs (this build), `umount DIR` returns only when the
# image is complete, clean and unlocked (the daemon's process has ended, flock on the image succeeds), so
# `umount DIR && e2fsck -fn IMG` is clean and the superblock says "clean"; and `umount DIR && mount ...
# IMG DIR` always works, under a dirty cache (4 MiB written before every unmount), in the modes
# fuse.vnopfs, fstype=fuse (umount(8) finds the helper through utab) and kcache=writeback. Every third
# cycle unmounts with fusermount3 -u (which does not wait) and mounts again at once: the new daemon waits
# for the old one's lock if it is still held. MOUNTCYCLE_CYCLES=N (default 12; scripts/mountcycle runs 200).
source "$(dirname "$0")/../lib/common.sh"
source "$LIB/mount_helpers.sh"
install_mount_helpers
make_image 256M
cycles=${MOUNTCYCLE_CYCLES:-12}

opts_of() { case $(($1 % 3)) in 0) echo "log=$T/daemon.log" ;; 1) echo "fstype=fuse,log=$T/daemon.log" ;;
  2) echo "kcache=writeback,log=$T/daemon.log" ;; esac; }
mnt() { mount -t fuse.vnopfs "$IMG" "$MNT" -o "$(opts_of "$1")" || fail "cycle $1: mount failed"; }
write_file() {  # write_file NAME: 4 MiB of fresh data, its checksum in $T/NAME.sum
  head -c $((4 << 20)) /dev/urandom >"$T/payload"
  cp "$T/payload" "$MNT/$1"
  sha256sum <"$T/payload" >"$T/$1.sum"
}
verify() { [ "$(sha256sum <"$MNT/$1")" = "$(cat "$T/$1.sum")" ] || fail "cycle $2: $1 differs after the remount"; }
umnt() {  # umount DIR: when it returns, the daemon has ended and the image is unlocked
  local pid
  pid=$(daemon_pids "$IMG")
  [ -n "$pid" ] || fail "cycle $1: no daemon answers for $IMG"
  umount "$MNT" || fail "cycle $1: umount failed"
  ! pid_running "$pid" || fail "cycle $1: daemon $pid still running when umount returned"
  flock -n "$IMG" true || fail "cycle $1: the image is still locked when umount returned"
}
fsck_now() {  # the image right after umount returned: clean superblock, e2fsck -fn clean
  local st
  st=$(dumpe2fs -h "$IMG" 2>/dev/null | sed -n 's/^Filesystem state: *//p')
  [ "$st" = clean ] || fail "cycle $1: superblock state '$st' right after umount returned"
  e2fsck -fn "$IMG" >"$T/fsck.out" 2>&1 || { tail -20 "$T/fsck.out" >&2; fail "cycle $1: e2fsck -fn right after umount"; }
}

start=$(date +%s)
mnt 0
for ((i = 1; i <= cycles; i++)); do
  rm -f "$MNT"/a.* "$MNT"/b.*
  write_file "a.$i"
  umnt "$i"
  fsck_now "$i"
  mnt "$i"
  verify "a.$i" "$i"
  write_file "b.$i"
  if ((i % 3 == 0)); then
    fusermount3 -u "$MNT" || fail "cycle $i: fusermount3 -u"
    "$VNOPFS" "$IMG" "$MNT" -o "$(opts_of "$i")" || fail "cycle $i: vnopfs right after fusermount3 -u failed"
  else
    umnt "$i"
    mnt "$i"
  fi
  verify "b.$i" "$i"
done
umnt end
fsck_now end
waits=$(grep -c "waited .* for the previous vnopfs" "$T/daemon.log" || true)
log "new daemons that waited for the previous one's lock: $waits"
log "$cycles cycles of umount+e2fsck and umount+mount under a dirty cache in $(( $(date +%s) - start )) s"

#!/usr/bin/env bash
# Two mountpoints, one image: a second mount of an image a running vnopfs serves becomes a bind mount of
# the first (the same filesystem, as a kernel filesystem would show it), silently, through the daemon and
# through mount(8); -o ro makes only that mountpoint read-only. Unmounting one leaves the other served by
# the same daemon; the last unmount ends it, the image clean.
source "$(dirname "$0")/../lib/common.sh"
source "$LIB/mount_helpers.sh"
install_mount_helpers
make_image 64M
M2=$T/mnt2; M3=$T/mnt3; mkdir -p "$M2" "$M3"
EXTRA_MOUNTS+=("$M2" "$M3")

mount -t fuse.vnopfs "$IMG" "$MNT" -o log="$T/daemon.log" || fail "first mount"
pid=$(daemon_pids "$IMG")
out=$("$VNOPFS" "$IMG" "$M2" 2>&1) || fail "second mount (vnopfs): $out"
[ -z "$out" ] || fail "the second mount printed: $out"
out=$(mount -t fuse.vnopfs "$IMG" "$M3" -o ro 2>&1) || fail "third mount (mount(8), ro): $out"
[ "$(daemon_pids "$IMG")" = "$pid" ] || fail "more than one daemon: $(daemon_pids "$IMG")"
[ "$(stat -c %d "$MNT")" = "$(stat -c %d "$M2")" ] || fail "not the same filesystem"
echo one >"$MNT/a"; echo two >"$M2/b"
[ "$(cat "$M2/a")" = one ] && [ "$(cat "$MNT/b")" = two ] && [ "$(cat "$M3/b")" = two ] || fail "contents differ"
rc=0; (echo x >"$M3/c") 2>/dev/null || rc=$?
[ $rc != 0 ] || fail "the ro bind mount is writable"
[ "$(findmnt -n -o SOURCE "$M2")" = "$IMG" ] || fail "source of the second mount: $(findmnt -n -o SOURCE "$M2")"

umount "$MNT" || fail "umount of the first"
pid_running "$pid" || fail "the daemon ended while $M2 is still mounted"
[ "$(cat "$M2/a")" = one ] || fail "the second mountpoint lost the filesystem"
umount "$M3" || fail "umount of the third"
umount "$M2" || fail "umount of the last"
pid_running "$pid" && fail "daemon $pid still running after the last umount returned"
check_image
log "one image on three mountpoints: one daemon, bind mounts"

#!/usr/bin/env bash
# Remount: `mount -o remount,ro DIR` reaches the running daemon through /sbin/mount.fuse.vnopfs: after a full
# flush the filesystem is read-only (writes get EROFS, also through the daemon's own checks: statfs says
# ST_RDONLY, vnopfs-ctl status "ro"), the superblock is marked clean and e2fsck -fn is clean while it stays
# mounted; `remount,rw` makes it writable again. Never a second daemon. Refused while a file is open for
# writing (EBUSY, like a kernel filesystem), and remount,rw of a mount made ro is refused with a message.
# With the plain type fuse, vnopfs-ctl DIR remount-ro|rw does the same.
source "$(dirname "$0")/../lib/common.sh"
source "$LIB/mount_helpers.sh"
install_mount_helpers
make_image 128M

mount -t fuse.vnopfs "$IMG" "$MNT" -o log="$T/daemon.log" || fail "mount"
pid=$(daemon_pids "$IMG")
head -c $((8 << 20)) /dev/urandom >"$MNT/big"
sum=$(sha256sum <"$MNT/big")
mkdir "$MNT/d"; echo hello >"$MNT/d/f"

# a writer holds a file open: the kernel refuses ro (EBUSY), nothing changes
exec 5>>"$MNT/d/f"
rc=0; out=$(mount -o remount,ro "$MNT" 2>&1) || rc=$?
[ $rc != 0 ] || fail "remount,ro succeeded with a file open for writing"
exec 5>&-
echo more >>"$MNT/d/f" || fail "not writable after a refused remount"

mount -o remount,ro "$MNT" || fail "mount -o remount,ro"
findmnt -n -o OPTIONS "$MNT" | grep -q '^ro' || fail "kernel mount not ro: $(findmnt -n -o OPTIONS "$MNT")"
"$VNOPFS_CTL" "$MNT" status | grep -q ", ro," || fail "daemon not ro: $("$VNOPFS_CTL" "$MNT" status)"
python3 - "$MNT" <<'PY' || fail "writes on the remounted-ro filesystem"
import errno, os, sys
m = sys.argv[1]
for fn in (lambda: open(m + "/new", "w"), lambda: os.mkdir(m + "/d2"), lambda: os.unlink(m + "/d/f"),
           lambda: open(m + "/d/f", "a"), lambda: os.truncate(m + "/big", 0)):
    try:
        fn()
        raise SystemExit("a write succeeded after remount,ro")
    except OSError as e:
        assert e.errno == errno.EROFS, e
assert os.statvfs(m).f_flag & os.ST_RDONLY
PY
st=$(dumpe2fs -h "$IMG" 2>/dev/null | sed -n 's/^Filesystem state: *//p')
[ "$st" = clean ] || fail "superblock state '$st' after remount,ro"
e2fsck -fn "$IMG" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out" >&2; fail "e2fsck -fn of the remounted-ro image"; }
[ "$(sha256sum <"$MNT/big")" = "$sum" ] || fail "data changed"

mount -o remount,rw "$MNT" || fail "mount -o remount,rw"
findmnt -n -o OPTIONS "$MNT" | grep -q '^rw' || fail "kernel mount not rw again"
echo again >"$MNT/new" || fail "not writable after remount,rw"
st=$(dumpe2fs -h "$IMG" 2>/dev/null | sed -n 's/^Filesystem state: *//p')
[ "$st" = "not clean" ] || fail "superblock state '$st' while mounted rw again"
[ "$(daemon_pids "$IMG")" = "$pid" ] || fail "daemons: $(daemon_pids "$IMG") (expected only $pid)"
[ "$(pgrep -fc "vnopfs $IMG")" -le 1 ] || fail "more than one vnopfs process for $IMG"

# a second round, then unmount: clean
mount -o remount,ro "$MNT" && mount -o remount,rw "$MNT" || fail "second remount round"
echo third >"$MNT/third"
umount "$MNT" || fail "umount"
check_image

# the plain type fuse: mount(8) would run mount.fuse3 for the remount; vnopfs-ctl does both sides
mount -t fuse.vnopfs "$IMG" "$MNT" -o fstype=fuse,log="$T/daemon.log" || fail "mount fstype=fuse"
"$VNOPFS_CTL" "$MNT" remount-ro || fail "vnopfs-ctl remount-ro"
findmnt -n -o OPTIONS "$MNT" | grep -q '^ro' || fail "fuse: kernel mount not ro"
rc=0; (echo x >"$MNT/x") 2>/dev/null || rc=$?
[ $rc != 0 ] || fail "fuse: writable after vnopfs-ctl remount-ro"
[ "$(dumpe2fs -h "$IMG" 2>/dev/null | sed -n 's/^Filesystem state: *//p')" = clean ] || fail "fuse: not clean after remount-ro"
"$VNOPFS_CTL" "$MNT" remount-rw || fail "vnopfs-ctl remount-rw"
echo x >"$MNT/x" || fail "fuse: not writable after vnopfs-ctl remount-rw"
umount "$MNT" || fail "umount fstype=fuse"
check_image

# mounted ro from the start: remount,rw is refused in one line, the mount stays ro
mount -t fuse.vnopfs "$IMG" "$MNT" -o ro,log="$T/daemon.log" || fail "mount ro"
rc=0; out=$(mount -o remount,rw "$MNT" 2>&1) || rc=$?
[ $rc != 0 ] && echo "$out" | grep -q "mounted read-only" || fail "remount,rw of a ro mount: rc=$rc $out"
findmnt -n -o OPTIONS "$MNT" | grep -q '^ro' || fail "the ro mount changed"
[ "$(cat "$MNT/third")" = third ] || fail "data"
umount "$MNT"
check_image
log "remount ro/rw through mount(8), one daemon"

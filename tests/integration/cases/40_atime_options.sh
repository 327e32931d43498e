#!/usr/bin/env bash
# The atime mount options are the daemon's to keep (FUSE's kernel side updates no atime): relatime (the
# default), strictatime, noatime and nodiratime, for file reads and directory listings, through the mount.
# Reads use O_DIRECT and attributes are not cached (attr_timeout=0) so every access reaches the daemon.
source "$(dirname "$0")/../lib/common.sh"
make_image 64M

atime() { stat -c %X "$1"; }
read_direct() { dd if="$1" of=/dev/null bs=4096 iflag=direct status=none; }
# A file and a directory whose atime is older than their ctime (touch -a sets ctime to now).
prepare() {
  mkdir -p "$MNT/d"
  head -c 8192 /dev/urandom >"$MNT/f"
  touch -a -d '2019-01-01 00:00:00' "$MNT/f" "$MNT/d"
}

log "relatime (default): a read or a listing updates an atime older than ctime, then not again"
mount_vnopfs -o attr_timeout=0
prepare
read_direct "$MNT/f"
a1=$(atime "$MNT/f")
[ "$a1" -gt 1546300800 ] || fail "relatime: an atime older than ctime was not updated by a read"
ls "$MNT/d" >/dev/null
[ "$(atime "$MNT/d")" -gt 1546300800 ] || fail "relatime: an atime older than ctime was not updated by readdir"
sleep 1.2
read_direct "$MNT/f"
[ "$(atime "$MNT/f")" = "$a1" ] || fail "relatime: an atime newer than mtime and ctime changed on read"
unmount_vnopfs

log "strictatime: every read updates atime"
mount_vnopfs -o attr_timeout=0,strictatime
read_direct "$MNT/f"
a1=$(atime "$MNT/f")
sleep 1.2
read_direct "$MNT/f"
[ "$(atime "$MNT/f")" -gt "$a1" ] || fail "strictatime: a second read left atime at $a1"
cat "$MNT/f" >/dev/null
a2=$(atime "$MNT/f")
sleep 1.2
cat "$MNT/f" >/dev/null  # buffered: the kernel must not answer from the last open's pages
[ "$(atime "$MNT/f")" -gt "$a2" ] || fail "strictatime: a second buffered read (cat) left atime at $a2"
unmount_vnopfs

log "nodiratime: listings leave directories alone, reads still update files"
mount_vnopfs -o attr_timeout=0,nodiratime
touch -a -d "2019-01-01 00:00:00" "$MNT/f" "$MNT/d"
d0=$(atime "$MNT/d"); f0=$(atime "$MNT/f")
ls "$MNT/d" >/dev/null
[ "$(atime "$MNT/d")" = "$d0" ] || fail "nodiratime: readdir updated the directory's atime"
read_direct "$MNT/f"
[ "$(atime "$MNT/f")" -gt "$f0" ] || fail "nodiratime: a file read did not update a stale atime"
unmount_vnopfs

log "noatime: neither reads, listings nor executing a file update atime"
mount_vnopfs -o attr_timeout=0,noatime
cp /bin/true "$MNT/true"
touch -a -d "2019-01-01 00:00:00" "$MNT/f" "$MNT/d" "$MNT/true"
f0=$(atime "$MNT/f"); d0=$(atime "$MNT/d"); x0=$(atime "$MNT/true")
read_direct "$MNT/f"; ls "$MNT/d" >/dev/null; "$MNT/true"
[ "$(atime "$MNT/f")" = "$f0" ] || fail "noatime: a read updated atime"
[ "$(atime "$MNT/d")" = "$d0" ] || fail "noatime: readdir updated atime"
[ "$(atime "$MNT/true")" = "$x0" ] || fail "noatime: exec updated atime"
finish_case

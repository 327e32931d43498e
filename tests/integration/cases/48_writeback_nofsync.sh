#!/usr/bin/env bash
# Durability without fsync (docs/durability.md): what was written longer ago than dirty_expire is on the
# image a few seconds later, so a SIGKILL of an idle daemon loses nothing and leaves an e2fsck-clean image
# the kernel's ext2 reads back as the mount showed it. Before the syncer, sizes and block maps stayed in
# memory until fsync or unmount: a file written and closed a minute before the kill came back empty.
# Then lazytime: an atime change stays in memory (not on the image) until unmount; without lazytime the
# syncer writes it.
source "$(dirname "$0")/../lib/common.sh"
make_image 64M

# The on-disk size of PATH (debugfs reads the image file under the running daemon).
disk_size() { debugfs -R "stat $1" "$IMG" 2>/dev/null | sed -n 's/.*Size: \([0-9]*\)$/\1/p' | head -1; }
disk_atime() { debugfs -R "stat $1" "$IMG" 2>/dev/null | sed -n 's/^ *atime: \(0x[0-9a-f]*\).*/\1/p'; }
# Waits up to $3 s for the image to show size $2 for $1.
wait_disk_size() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    [ "$(disk_size "$1")" = "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

log "no fsync: files written, appended, renamed and removed reach the image within dirty_expire + a few s"
mount_vnopfs -o dirty_expire=2
mkdir -p "$MNT/d/e"
head -c 1048576 /dev/urandom >"$MNT/d/big"
head -c 5000 /dev/urandom >"$MNT/d/e/small"
printf 'one\n' >"$MNT/appended"; printf 'two\n' >>"$MNT/appended"
head -c 70000 /dev/urandom >"$MNT/d/tmp" && mv "$MNT/d/tmp" "$MNT/d/renamed"
head -c 9000 /dev/urandom >"$MNT/gone" && rm "$MNT/gone"
ln -s d/e/small "$MNT/link"
start=$(date +%s.%N)
wait_disk_size /d/big 1048576 30 || fail "after 30 s the image shows /d/big with size '$(disk_size /d/big)', not 1048576"
wait_disk_size /appended 8 30 || fail "after 30 s the image shows /appended with size '$(disk_size /appended)', not 8"
log "on the image after $(echo "$(date +%s.%N) - $start" | bc) s"
# The removed file's inode is freed once the entry removal has waited dirty_expire (one syncer pass), and
# the bitmap and counts that frees it wait dirty_expire again: 2 x (2 + 2 + 1) s covers both.
sleep 8
manifest "$MNT" >"$T/manifest.vnopfs"
log "SIGKILL daemon $DAEMON_PID, idle"
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
DAEMON_PID=
fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT"
# Killed, so not marked clean: e2fsck checks (-f) and must find nothing to fix.
if ! out=$(e2fsck -fn "$IMG" 2>&1); then
  echo "$out" | tail -30 >&2
  fail "e2fsck -fn after SIGKILL of an idle daemon reports problems"
fi
kernel_readback "$T/manifest.vnopfs"
e2fsck -fy "$IMG" >/dev/null 2>&1 || true  # clears "not cleanly unmounted" for the next part

for lazy in 1 0; do
  opts=dirty_expire=1,strictatime,attr_timeout=0
  [ $lazy = 1 ] && opts=$opts,lazytime
  log "atime with -o $opts"
  mount_vnopfs -o "$opts"
  TZ=UTC touch -a -d "2019-01-01 00:00:00" "$MNT/d/big"
  wait_disk_size /d/big 1048576 10 || fail "image lost /d/big"
  for _ in $(seq 100); do [ "$(disk_atime /d/big)" = 0x5c2aad80 ] && break; sleep 0.1; done
  [ "$(disk_atime /d/big)" = 0x5c2aad80 ] || fail "touch -a (a setattr, not lazy) is not on the image after 10 s: $(disk_atime /d/big)"
  dd if="$MNT/d/big" of=/dev/null bs=4096 count=1 iflag=direct status=none
  [ "$(stat -c %X "$MNT/d/big")" -gt 1546300800 ] || fail "a read did not update atime (in memory)"
  sleep 4  # two syncer periods and more than dirty_expire
  a=$(disk_atime /d/big)
  if [ $lazy = 1 ]; then
    [ "$a" = 0x5c2aad80 ] || fail "lazytime: the read's atime reached the image before unmount ($a)"
  else
    [ "$a" != 0x5c2aad80 ] || fail "without lazytime the read's atime is not on the image after 4 s"
  fi
  unmount_vnopfs
  a=$(disk_atime /d/big)
  [ "$a" != 0x5c2aad80 ] || fail "the atime was not written at unmount (lazytime=$lazy)"
done
check_image
log "ok"

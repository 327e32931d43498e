#!/usr/bin/env bash
# The daemon as mount(8) and fstab use it: mount -t fuse.vnopfs (through mount.fuse3, backgrounded daemon),
# generic mount options, df's source column, stats= + vnopfs-stat, umount(8), an fstab line, SIGTERM and
# SIGINT shutdown (flushed and clean), -o ro, and the JSON config file.
source "$(dirname "$0")/../lib/common.sh"
command -v mount.fuse3 >/dev/null || skip "mount.fuse3 is not installed"
make_image 64M
# mount(8) runs helpers with a standard PATH: the daemon must be in /usr/local/bin (scripts/run installs it
# there). Link this build there for the case if nothing is installed; otherwise, if the installed one is
# another build, use mount.fuse3's "PROGRAM#SOURCE" form with type fuse (same helper, explicit program).
if [ ! -e /usr/local/bin/vnopfs ]; then
  ln -s "$VNOPFS" /usr/local/bin/vnopfs
  ON_EXIT+=("rm -f /usr/local/bin/vnopfs")
fi
if [ "$(readlink -f /usr/local/bin/vnopfs)" = "$(readlink -f "$VNOPFS")" ]; then
  TYPE=fuse.vnopfs; SRC=$IMG
else
  TYPE=fuse; SRC="$VNOPFS#$IMG"
fi
log "mounting with -t $TYPE $SRC"

# daemon_pid_of MNT: the pid the stats file names
daemon_pid() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$1"; }
wait_gone() {  # wait_gone PID
  for _ in $(seq 600); do pid_running "$1" || return 0; sleep 0.1; done
  fail "daemon $1 did not exit"
}

# 1. mount(8) with generic options; stats; vnopfs-stat; umount(8)
mount -t $TYPE "$SRC" "$MNT" -o noatime,nodev,nosuid,kcache=writeback,stats="$T/stats.json",log="$T/daemon.log" ||
  fail "mount -t fuse.vnopfs failed"
is_mounted "$MNT" || fail "not mounted after mount -t fuse.vnopfs"
grep " $MNT " /proc/mounts | grep -q "fuse.vnopfs" || fail "type is not fuse.vnopfs: $(grep " $MNT " /proc/mounts)"
grep " $MNT " /proc/mounts | grep -q "nosuid,nodev" || fail "nosuid,nodev not applied: $(grep " $MNT " /proc/mounts)"
[ "$(df --output=source "$MNT" | tail -1)" = "$IMG" ] || fail "df source: $(df --output=source "$MNT" | tail -1)"
head -c 5000000 /dev/urandom >"$MNT/payload"
cp "$MNT/payload" "$T/payload"
sync
sleep 1.5
"$VNOPFS_STAT" "$MNT" >"$T/stat.txt" || fail "vnopfs-stat failed"
grep -q "^write " "$T/stat.txt" || { cat "$T/stat.txt"; fail "vnopfs-stat shows no write line"; }
grep -q "^device " "$T/stat.txt" || { cat "$T/stat.txt"; fail "vnopfs-stat shows no device line"; }
"$VNOPFS_STAT" --json "$MNT" | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["vnops"]["write"]["calls"] > 0 and "cache" in j and "device" in j' ||
  fail "vnopfs-stat --json"
pid=$(daemon_pid "$T/stats.json")
umount "$MNT" || fail "umount failed"
wait_gone "$pid"
grep -q "unmounted cleanly" "$T/daemon.log" || fail "no clean unmount in the log"
check_image

# 2. an fstab line, through mount --fstab
echo "$SRC $MNT $TYPE defaults,noauto,_netdev,stats=$T/stats2.json 0 0" >"$T/fstab"
mount --fstab "$T/fstab" "$MNT" || fail "mount from an fstab line failed"
cmp "$T/payload" "$MNT/payload" || fail "payload differs after the fstab mount"
pid=$(daemon_pid "$T/stats2.json")

# 3. SIGTERM: the daemon unmounts, flushes and exits 0
echo "written before SIGTERM" >"$MNT/term.txt"
kill -TERM "$pid"
wait_gone "$pid"
is_mounted "$MNT" && fail "still mounted after SIGTERM"
check_image

# 4. the JSON config (-o wins over it); SIGINT on a foreground daemon: exit status 0
cat >"$T/cfg.json" <<JSON
{"kcache": "none", "cache_size": "32M", "threads": 4, "stats": "$T/stats3.json", "noatime": true}
JSON
mount_vnopfs -o config="$T/cfg.json",kcache=writeback
python3 - "$T/stats3.json" <<'PY' || fail "config file options not applied"
import json, sys
o = json.load(open(sys.argv[1]))["options"]
assert o["kcache"] == "writeback" and o["cache_size"] == 32 << 20 and o["threads"] == 4, o
PY
[ "$(cat "$MNT/term.txt")" = "written before SIGTERM" ] || fail "data written before SIGTERM lost"
echo "before SIGINT" >"$MNT/int.txt"
kill -INT "$DAEMON_PID"
rc=0; wait_daemon 60 || rc=$?
[ $rc = 0 ] || fail "daemon exit status $rc after SIGINT"
is_mounted "$MNT" && fail "still mounted after SIGINT"
check_image

# 5. read-only: writes fail with EROFS and the image does not change
sum0=$(sha256sum <"$IMG")
mount_vnopfs -o ro
[ "$(cat "$MNT/int.txt")" = "before SIGINT" ] || fail "data written before SIGINT lost"
python3 - "$MNT" <<'PY' || fail "writes on a ro mount"
import errno, os, sys
m = sys.argv[1]
for fn in (lambda: open(m + "/new", "w"), lambda: os.mkdir(m + "/d"), lambda: os.unlink(m + "/int.txt"),
           lambda: open(m + "/int.txt", "a")):
    try:
        fn()
        raise SystemExit("a write on a ro mount succeeded")
    except OSError as e:
        assert e.errno == errno.EROFS, e
PY
unmount_vnopfs
[ "$(sha256sum <"$IMG")" = "$sum0" ] || fail "a ro mount changed the image"

mount_vnopfs
finish_case

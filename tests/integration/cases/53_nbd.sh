#!/usr/bin/env bash
# backend=nbd (docs/dev.md): the image served by `nbdkit file` on a Unix socket this case starts. fio
# verify through the mount passes and a file is fsync'd (which must reach the server as an NBD flush: nbdkit's
# log filter records it); then nbdkit is killed while fio writes: fio and a
# write+fsync get EIO within seconds (no hang), the unmount returns and the daemon exits. nbdkit restarted
# on the same file, a new mount finds every fsync'd byte (ext2 has no journal: what was not fsync'd may be
# half written, so the image is not checked with e2fsck after the drop).
source "$(dirname "$0")/../lib/common.sh"
command -v nbdkit >/dev/null || skip "nbdkit is not installed (scripts/setup)"
command -v fio >/dev/null || skip "fio is not installed"
FILE=$T/export.ext2
SOCK=$T/nbd.sock
NBD_PID=
ON_EXIT+=('[ -n "$NBD_PID" ] && kill -KILL "$NBD_PID" 2>/dev/null; wait "$NBD_PID" 2>/dev/null')
start_nbdkit() {
  rm -f "$SOCK"
  # The log filter records every command the server receives (fsync must reach it as a Flush).
  nbdkit --foreground --exit-with-parent --unix "$SOCK" --filter=log file "$FILE" logfile="$T/nbd-commands.log" \
    >>"$T/nbdkit.log" 2>&1 &
  NBD_PID=$!
  for _ in $(seq 100); do [ -S "$SOCK" ] && return 0; sleep 0.05; done
  fail "nbdkit did not create $SOCK"
}
mke2fs -q -F -t ext2 -b 4096 -I 256 "$FILE" 96M >/dev/null
start_nbdkit
IMG="nbd+unix:///?socket=$SOCK"
mount_vnopfs -o backend=nbd
grep -q "device: nbd:nbd+unix:///?socket=" <("$VNOPFS_BUILD/src/tools/vnopfs-ctl" "$MNT" status) || fail "status shows no nbd device"

timeout 60 fio --name=v --directory="$MNT" --ioengine=psync --rw=randwrite --bsrange=4k-256k --size=12m \
  --verify=crc32c --verify_fatal=1 --do_verify=1 --randseed=53 --fsync_on_close=1 --output="$T/fio1.log" ||
  { cat "$T/fio1.log"; fail "fio verify over nbd"; }
head -c 3000000 /dev/urandom >"$T/keep"
flushes=$(grep -c " Flush " "$T/nbd-commands.log" || true)
python3 - "$T/keep" "$MNT/keep" <<'PY'
import os, sys
d = open(sys.argv[1], "rb").read()
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, d); os.fsync(fd); os.close(fd)
fd = os.open(os.path.dirname(sys.argv[2]), os.O_RDONLY); os.fsync(fd); os.close(fd)
PY
[ "$(grep -c " Flush " "$T/nbd-commands.log")" -gt "$flushes" ] || fail "fsync sent no NBD flush to the server"

timeout 60 fio --name=w --directory="$MNT" --ioengine=psync --rw=write --bs=64k --size=48m --fsync=8 \
  --time_based --runtime=30 --output="$T/fio2.log" &
FIO=$!
sleep 2
kill -KILL "$NBD_PID"; wait "$NBD_PID" 2>/dev/null || true; NBD_PID=
t0=$(date +%s)
rc=0; wait "$FIO" || rc=$?
[ "$rc" = 124 ] && fail "fio still ran 60 s after nbdkit died (a hang)"
[ "$rc" != 0 ] || fail "fio finished without an error after nbdkit died"
grep -Eq "Input/output error|error=" "$T/fio2.log" || { cat "$T/fio2.log"; fail "fio's error is not EIO"; }
out=$(timeout 20 python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"x" * 65536)
os.fsync(fd)' "$MNT/after" 2>&1) && fail "a write+fsync after the drop succeeded"
echo "$out" | grep -q "Input/output error" || fail "write+fsync after the drop: $out"
log "fio and fsync got EIO $(( $(date +%s) - t0 )) s after nbdkit was killed"
fusermount3 -u "$MNT" || fail "fusermount3 -u after the drop"
rc=0; wait_daemon 30 || rc=$?
log "daemon exit status after the drop: $rc"
grep -q "the connection is gone" "$T/daemon.log" || fail "the daemon did not log the dropped connection"

start_nbdkit
mount_vnopfs -o backend=nbd
cmp "$T/keep" "$MNT/keep" || fail "the fsync'd file differs after the server came back"
unmount_vnopfs
kill -TERM "$NBD_PID"; wait "$NBD_PID" 2>/dev/null || true; NBD_PID=
log "ok"

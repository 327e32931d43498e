#!/usr/bin/env bash
# SIGKILL the daemon during a write workload: the mount goes away cleanly (writers get errors, nothing
# hangs; lazy unmount), e2fsck -fy repairs the image, and every file fsync'd before the kill has its
# fsync'd content (checked through the kernel's ext2 driver).
source "$(dirname "$0")/../lib/common.sh"
make_image 256M
mount_vnopfs
mkdir "$MNT/w"
python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$MNT"   # w's entry is durable

cat >"$T/writer.py" <<'PY'
import hashlib, os, random, sys, time
d, ledger, wid = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(wid)
led = open(ledger, "a", buffering=1)
k = 0
try:
    while True:
        name = "w%d-%05d" % (wid, k); k += 1
        p = os.path.join(d, name)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        # a new name is durable once its directory is fsync'd (ext2 semantics, as on Linux)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
        data = b""
        for _ in range(rng.randrange(1, 6)):
            chunk = rng.randbytes(rng.choice([100, 4096, 65536, 300000]))
            n = os.write(fd, chunk); data += chunk[:n]  # a full disk gives a short write, not an error
            if n < len(chunk):
                raise OSError(28, "short write (%d of %d bytes)" % (n, len(chunk)))
            if rng.random() < 0.5:
                os.fsync(fd)
                led.write("%s %d %s\n" % (name, len(data), hashlib.sha256(data).hexdigest()))
        if rng.random() < 0.3:
            os.write(fd, rng.randbytes(5000))  # never fsync'd: may be lost
        os.close(fd)
except OSError as e:
    print("writer %d stopped by %s after %d files" % (wid, e, k))
PY
pids=()
for w in 1 2 3; do timeout 60 python3 "$T/writer.py" "$MNT/w" "$T/ledger" "$w" >"$T/writer$w.log" 2>&1 & pids+=($!); done
# Kill once a few fsyncs have completed (not after a fixed time: a loaded machine may need longer), with
# writes still in flight.
for _ in $(seq 1 600); do
  [ "$(wc -l <"$T/ledger" 2>/dev/null || echo 0)" -ge 6 ] && break
  sleep 0.1
done
sleep 1
log "SIGKILL daemon $DAEMON_PID ($(wc -l <"$T/ledger" 2>/dev/null || echo 0) fsyncs recorded)"
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
DAEMON_PID=
for p in "${pids[@]}"; do
  rc=0; wait "$p" || rc=$?
  [ "$rc" = 124 ] && fail "a writer hung after the daemon was killed"
done
cat "$T"/writer*.log
stat "$MNT" >/dev/null 2>&1 && fail "the dead mount still answers"
fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT"
is_mounted "$MNT" && fail "mount still listed after lazy unmount"
[ -s "$T/ledger" ] || fail "no fsync completed before the kill"
rc=0; e2fsck -fy "$IMG" >"$T/fsck.log" 2>&1 || rc=$?
[ $rc -le 1 ] || { tail -20 "$T/fsck.log"; fail "e2fsck -fy could not repair the image (rc=$rc)"; }
check_image
mount -t ext2 -o loop,ro "$IMG" "$RO"
python3 - "$RO/w" "$T/ledger" <<'PY' || { umount "$RO"; fail "fsync'd data lost"; }
import hashlib, os, sys
d, ledger = sys.argv[1], sys.argv[2]
best = {}
for line in open(ledger):
    name, n, h = line.split()
    best[name] = (int(n), h)  # the last fsync of each file
bad = 0
for name, (n, h) in best.items():
    p = os.path.join(d, name)
    try:
        data = open(p, "rb").read(n)
    except OSError as e:
        print("%s: fsync'd %d bytes, now %s" % (name, n, e)); bad += 1; continue
    if len(data) < n or hashlib.sha256(data[:n]).hexdigest() != h:
        print("%s: fsync'd %d bytes, got %d different" % (name, n, len(data))); bad += 1
print("%d fsync'd files checked, %d bad" % (len(best), bad))
sys.exit(1 if bad else 0)
PY
umount "$RO"
log "ok: fsync'd data survived SIGKILL"

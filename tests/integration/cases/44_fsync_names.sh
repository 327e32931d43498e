#!/usr/bin/env bash
# New names survive fsync of the file alone (docs/durability.md): writers create files in new
# subdirectories (creat + write + fsync of the file, never of a directory) while other writers dirty the
# cache without fsync; the daemon is SIGKILLed; after e2fsck -fy every fsync'd file is under its name with
# its fsync'd bytes (read by the kernel's ext2), not in lost+found. Repeated with fresh images: at most 20
# kills and about 60 s in all.
source "$(dirname "$0")/../lib/common.sh"

cat >"$T/namer.py" <<'PY'
import hashlib, os, random, sys
root, ledger, wid = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(wid * 7919 + os.getpid())
led = open(ledger, "a", buffering=1)
k = 0
try:
    while True:
        # a new directory (sometimes two levels) and a new file in it
        d = os.path.join(root, "n%d-%04d" % (wid, k))
        os.mkdir(d)
        if rng.random() < 0.5:
            d = os.path.join(d, "sub")
            os.mkdir(d)
        p = os.path.join(d, "f%d" % k)
        k += 1
        data = rng.randbytes(rng.choice([10, 3000, 70000]))
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        if rng.random() < 0.5:
            os.fsync(fd)
        else:
            os.fdatasync(fd)
        led.write("%s %d %s\n" % (os.path.relpath(p, root), len(data), hashlib.sha256(data).hexdigest()))
        os.close(fd)
except OSError as e:
    print("namer %d stopped by %s after %d files" % (wid, e, k))
PY

cat >"$T/churn.py" <<'PY'
import os, random, sys
root, wid = sys.argv[1], int(sys.argv[2])
rng = random.Random(wid)
k = 0
try:
    while True:
        d = os.path.join(root, "c%d-%03d" % (wid, k // 20))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "x%d" % k), "wb") as f:  # never fsync'd
            f.write(rng.randbytes(rng.choice([100, 8192, 200000])))
        k += 1
except OSError:
    pass
PY

check_survivors() {
  python3 - "$RO" "$T/ledger" <<'PY'
import hashlib, os, sys
root, ledger = sys.argv[1], sys.argv[2]
bad = 0
entries = [l.split() for l in open(ledger)]
for rel, n, h in entries:
    p = os.path.join(root, rel)
    try:
        data = open(p, "rb").read()
    except OSError as e:
        print("%s: fsync'd with %s bytes, now %s" % (rel, n, e)); bad += 1; continue
    if len(data) != int(n) or hashlib.sha256(data).hexdigest() != h:
        print("%s: fsync'd %s bytes, found %d different" % (rel, n, len(data))); bad += 1
lost = [x for x in os.listdir(os.path.join(root, "lost+found"))]
print("%d fsync'd files checked, %d bad, %d in lost+found" % (len(entries), bad, len(lost)))
sys.exit(1 if bad else 0)
PY
}

start=$SECONDS
kills=0 checked=0
while [ $kills -lt 20 ] && [ $((SECONDS - start)) -lt 50 ]; do
  make_image 128M
  : >"$T/ledger"
  mount_vnopfs  # the default cache: a small one would push directory blocks early and hide a lost name
  pids=()
  for w in 1 2; do timeout 90 python3 "$T/namer.py" "$MNT" "$T/ledger" "$w" >"$T/namer$w.log" 2>&1 & pids+=($!); done
  timeout 90 python3 "$T/churn.py" "$MNT" 1 >/dev/null 2>&1 & pids+=($!)
  # Kill once some fsyncs have returned, at a point that varies from run to run, with writes in flight.
  want=$((3 + RANDOM % 20))
  for _ in $(seq 1 600); do  # up to 30 s on a loaded machine
    [ "$(wc -l <"$T/ledger")" -ge $want ] && break
    sleep 0.05
  done
  crash_daemon "${pids[@]}"
  kills=$((kills + 1))
  [ -s "$T/ledger" ] || fail "kill $kills: no fsync completed before the kill"
  rc=0; e2fsck -fy "$IMG" >"$T/fsck.log" 2>&1 || rc=$?
  [ $rc -le 1 ] || { tail -20 "$T/fsck.log"; fail "kill $kills: e2fsck -fy could not repair the image (rc=$rc)"; }
  check_image
  mount -t ext2 -o loop,ro "$IMG" "$RO" || fail "kill $kills: the kernel's ext2 cannot mount the image"
  rc=0; out=$(check_survivors) || rc=$?
  umount "$RO"
  log "kill $kills: $out"
  [ $rc = 0 ] || fail "kill $kills: an fsync'd file lost its name or bytes"
  checked=$((checked + $(wc -l <"$T/ledger")))
done
log "ok: $kills kills, $checked fsync'd new files all under their names with their bytes"

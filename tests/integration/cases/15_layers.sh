#!/usr/bin/env bash
# The acting VNOP layers through a real mount (-o layers=...): faults fails exactly the writes its rule
# picks (by path, every Nth) with the chosen errno and nothing else; readonly refuses every change with
# EROFS while reads work; delay makes the chosen op slower; bad layer arguments are refused at startup with
# a message naming them. The image stays e2fsck-clean and the kernel reads back what vnopfs shows.
source "$(dirname "$0")/../lib/common.sh"
make_image 64M

# Files made on a plain mount first: the faults layer learns a path from the LOOKUPs it sees, and a file
# the kernel already knows from CREATE would never be looked up.
mount_vnopfs
echo victim >"$MNT/victim"
echo bystander >"$MNT/bystander"
mkdir "$MNT/d"
echo inside >"$MNT/d/kept"
unmount_vnopfs

# 1. faults: the 2nd, 4th ... write(2) to /victim gets ENOSPC; other files write normally.
mount_vnopfs -o layers=faults:op=write:errno=ENOSPC:path=/victim:every=2+stats,stats="$T/stats.json"
python3 - "$MNT" <<'EOF' || fail "faults layer: the writes did not fail exactly as the rule says"
import errno, os, sys
mnt = sys.argv[1]
fd = os.open(f"{mnt}/victim", os.O_WRONLY)
got = []
for i in range(6):
    try:
        os.pwrite(fd, b"x" * 4096, i * 4096)
        got.append(0)
    except OSError as e:
        got.append(e.errno)
os.close(fd)
want = [0, errno.ENOSPC] * 3
if got != want:
    print(f"writes to /victim returned {got}, expected {want}", file=sys.stderr)
    sys.exit(1)
fd = os.open(f"{mnt}/bystander", os.O_WRONLY | os.O_APPEND)
for i in range(6):
    os.write(fd, b"y" * 4096)   # raises on any error
os.close(fd)
EOF
size=$(stat -c %s "$MNT/victim")
[ "$size" = $((5 * 4096)) ] || fail "victim is $size bytes: the failed writes were not the 2nd, 4th and 6th"
unmount_vnopfs
check_image

# 2. readonly: every change is EROFS, reads work.
mount_vnopfs -o layers=readonly
[ "$(cat "$MNT/d/kept")" = inside ] || fail "readonly layer: a read failed"
for cmd in "touch $MNT/new" "mkdir $MNT/newdir" "rm $MNT/bystander" "mv $MNT/victim $MNT/v2" \
           "chmod 600 $MNT/victim" "ln $MNT/victim $MNT/hard" "truncate -s 0 $MNT/victim"; do
  if out=$(sh -c "$cmd" 2>&1); then fail "readonly layer: '$cmd' succeeded"; fi
  echo "$out" | grep -q "Read-only file system" || fail "readonly layer: '$cmd' failed with '$out', not EROFS"
done
if (echo more >>"$MNT/bystander") 2>/dev/null; then fail "readonly layer: an append succeeded"; fi
unmount_vnopfs

# 3. bad arguments: one clear line, nothing mounted.
for spec in "faults:op=bogus" "faults:errno=EWHAT" "delay:dist=normal" "faults:colour=red"; do
  out=$("$VNOPFS" "$IMG" "$RO" -o layers="$spec" 2>&1) && fail "vnopfs -o layers=$spec mounted"
  echo "$out" | grep -q "option 'layers': layer '" || fail "-o layers=$spec: unclear message '$out'"
  is_mounted "$RO" && fail "-o layers=$spec left a mount"
  log "ok: layers=$spec -> $out"
done

# 4. delay: each fsync takes at least the 300 ms the layer adds; a read does not.
mount_vnopfs -o layers=delay:op=fsync:us=300000
python3 - "$MNT" <<'EOF' || fail "delay layer: fsync was not delayed"
import os, sys, time
fd = os.open(f"{sys.argv[1]}/bystander", os.O_RDWR)
t0 = time.monotonic(); os.fsync(fd); dt = time.monotonic() - t0
os.close(fd)
if dt < 0.3:
    print(f"fsync took {dt:.3f} s, expected >= 0.3", file=sys.stderr); sys.exit(1)
EOF

finish_case

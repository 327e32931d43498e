#!/usr/bin/env bash
# -o dev_layers= through a real mount (docs/dev.md): an unknown layer refuses the mount naming the known
# ones; partition:start= mounts an ext2 filesystem that starts 1 MiB into a disk image; record:log= over it
# logs what reached the device, status and the stats file show the stack, and replaying the log over the
# filesystem's starting bytes gives exactly what the device holds after the unmount.
source "$(dirname "$0")/../lib/common.sh"
REPLAY=$VNOPFS_BUILD/src/tools/vnopfs-replay
CTL=$VNOPFS_BUILD/src/tools/vnopfs-ctl
[ -x "$REPLAY" ] || skip "vnopfs-replay is not built yet"

out=$("$VNOPFS" "$IMG" "$MNT" -o dev_layers=faults+mirror 2>&1) && fail "an unknown device layer was accepted"
echo "$out" | grep -q "unknown device layer 'mirror' (known: faults, partition, record)" || fail "message: $out"
is_mounted "$MNT" && fail "mounted anyway"

# A disk image: 1 MiB of something else, then a 64 MiB ext2 filesystem, then 1 MiB more.
mke2fs -q -F -t ext2 -b 4096 -I 256 "$T/fs.ext2" 64M >/dev/null
head -c 1M /dev/urandom >"$T/pad"
cat "$T/pad" "$T/fs.ext2" "$T/pad" >"$IMG"
cp "$T/fs.ext2" "$T/base.ext2"
mount_vnopfs -o "dev_layers=partition:start=1M:length=64M+record:log=$T/rec.log,stats=$T/stats.json,stats_interval=0.1"
"$CTL" "$MNT" status | tee "$T/status"
grep -q "^device: record over partition over file:" "$T/status" || fail "status does not show the device stack"
mkdir "$MNT/d"
head -c 3000000 /dev/urandom >"$MNT/d/big"
echo small >"$MNT/small"
python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$MNT/d/big"
sleep 0.3
python3 - "$T/stats.json" <<'PY' || fail "the stats file has no device_stack"
import json, sys
d = json.load(open(sys.argv[1]))
names = [m["name"] for m in d["device_stack"]]
assert len(names) == 3 and names[1].startswith("partition(") and names[2].startswith("record("), names
assert d["device_stack"][2]["writes"] > 0 and d["device_stack"][2]["flushes"] > 0, d["device_stack"][2]
print("device_stack:", names)
PY
unmount_vnopfs
cmp -n 1M "$IMG" "$T/pad" || fail "bytes before the partition changed"
cmp -i 65M:0 "$IMG" "$T/pad" || fail "bytes after the partition changed"
dd if="$IMG" of="$T/part.ext2" bs=1M skip=1 count=64 status=none
e2fsck -fn "$T/part.ext2" >"$T/fsck.log" 2>&1 || { cat "$T/fsck.log"; fail "e2fsck -fn of the partition"; }
"$REPLAY" list "$T/rec.log" >"$T/rec.txt"
writes=$(grep -c " write " "$T/rec.txt"); flushes=$(grep -c " flush " "$T/rec.txt")
[ "$writes" -gt 0 ] && [ "$flushes" -gt 0 ] || fail "the log has $writes writes and $flushes flushes"
"$REPLAY" apply "$T/rec.log" "$T/base.ext2"
cmp "$T/base.ext2" "$T/part.ext2" || fail "replaying the log does not give the device's contents"
log "ok: partition window kept, $writes writes and $flushes flushes recorded, replay matches the device"

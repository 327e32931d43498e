#!/usr/bin/env bash
# -o partition=N (docs/dev.md): a GPT disk image made by sfdisk with three partitions, vnopfs on partition 2
# while the kernel's ext2 mounts partition 3 of the same image through losetup -P: both write, neither sees
# the other's files, e2fsck -fn is clean on both, and the bytes outside partition 2 are what the kernel
# left. A vnopfs over partition 3 (the kernel's) is refused as already mounted, a partition the label
# lacks or a label with a bad CRC is refused naming the field. Then an MBR (dos) label, partition 2.
source "$(dirname "$0")/../lib/common.sh"
command -v sfdisk >/dev/null || skip "sfdisk is not installed (Debian fdisk; scripts/setup)"
KMNT=$T/kernel
mkdir -p "$KMNT"
LOOP=
ON_EXIT+=('if is_mounted "$KMNT"; then umount "$KMNT"; fi; [ -n "$LOOP" ] && losetup -d "$LOOP"')

truncate -s 80M "$IMG"
printf 'label: gpt\nstart=2048, size=8M\nsize=32M\nsize=32M\n' | sfdisk -q "$IMG"
part() {  # part N start|size -> bytes
  sfdisk -J "$1" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"][int(sys.argv[1])-1]; print(p[sys.argv[2]]*512)' "$2" "$3"
}
s2=$(part "$IMG" 2 start) l2=$(part "$IMG" 2 size) s3=$(part "$IMG" 3 start) l3=$(part "$IMG" 3 size)
mke2fs -q -F -t ext2 -b 4096 -I 256 -E offset="$s2" "$IMG" $((l2 / 1024))k >/dev/null
mke2fs -q -F -t ext2 -b 4096 -I 256 -E offset="$s3" "$IMG" $((l3 / 1024))k >/dev/null
head -c 4M /dev/urandom | dd of="$IMG" bs=1M seek=1 conv=notrunc status=none  # partition 1: something else
dd if="$IMG" of="$T/p1.before" bs=1M skip=1 count=4 status=none

LOOP=$(losetup -P --show -f "$IMG")
for _ in $(seq 20); do [ -b "${LOOP}p3" ] && break; sleep 0.1; done
# losetup -P's scan sometimes finds nothing here (a race with the new loop device): ask again with partx.
[ -b "${LOOP}p3" ] || partx -a "$LOOP" 2>/dev/null || true
for _ in $(seq 30); do [ -b "${LOOP}p3" ] && break; sleep 0.1; done
[ -b "${LOOP}p3" ] || fail "losetup -P (and partx -a) made no ${LOOP}p3"
mount -t ext2 "${LOOP}p3" "$KMNT"

out=$("$VNOPFS" "$IMG" "$MNT" -o partition=3 2>&1) && fail "partition 3 mounted while the kernel has it"
echo "$out" | grep -q "already mounted on $KMNT (through ${LOOP}p3" || fail "partition 3: $out"
for n in 4 200; do
  out=$("$VNOPFS" "$IMG" "$MNT" -o partition=$n 2>&1) && fail "partition $n mounted"
  echo "$out" | grep -Eq "partition $n does not exist \((GPT entry 4: PartitionTypeGUID is zero|the GPT has entries 1..128)" ||
    fail "partition $n: $out"
done
is_mounted "$MNT" && fail "mounted anyway"

mount_vnopfs -o partition=2
grep -q "partition(${s2}+${l2} of file:" <("$VNOPFS_BUILD/src/tools/vnopfs-ctl" "$MNT" status --json) || fail "status shows no partition layer"
head -c 5000000 /dev/urandom >"$T/a"
head -c 3000000 /dev/urandom >"$T/b"
cp "$T/a" "$MNT/on-vnopfs"
cp "$T/b" "$KMNT/on-kernel"
sync
[ -e "$MNT/on-kernel" ] && fail "vnopfs sees the kernel's file"
[ -e "$KMNT/on-vnopfs" ] && fail "the kernel sees vnopfs's file"
cmp "$T/a" "$MNT/on-vnopfs" || fail "vnopfs reads back other bytes"
unmount_vnopfs
umount "$KMNT"
losetup -d "$LOOP"; LOOP=

dd if="$IMG" of="$T/p2" bs=512 skip=$((s2 / 512)) count=$((l2 / 512)) status=none
dd if="$IMG" of="$T/p3" bs=512 skip=$((s3 / 512)) count=$((l3 / 512)) status=none
e2fsck -fn "$T/p2" >"$T/fsck2" 2>&1 || { cat "$T/fsck2"; fail "e2fsck -fn partition 2"; }
e2fsck -fn "$T/p3" >"$T/fsck3" 2>&1 || { cat "$T/fsck3"; fail "e2fsck -fn partition 3"; }
debugfs -R "dump /on-vnopfs $T/a2" "$T/p2" 2>/dev/null; cmp "$T/a" "$T/a2" || fail "partition 2 lacks vnopfs's file"
debugfs -R "dump /on-kernel $T/b3" "$T/p3" 2>/dev/null; cmp "$T/b" "$T/b3" || fail "partition 3 lacks the kernel's file"
debugfs -R "ls -l" "$T/p3" 2>/dev/null | grep -q on-vnopfs && fail "vnopfs wrote into partition 3"
cmp -n 4M "$T/p1.before" <(dd if="$IMG" bs=1M skip=1 count=4 status=none) || fail "partition 1 changed"

cp "$IMG" "$T/bad"
printf '\x01' | dd of="$T/bad" bs=1 seek=$((512 + 40)) conv=notrunc status=none  # FirstUsableLBA, not its CRC
IMG=$T/bad
out=$("$VNOPFS" "$IMG" "$MNT" -o partition=2 2>&1) && fail "a GPT header with a bad CRC mounted"
echo "$out" | grep -q "GPT header: HeaderCRC32 is 0x" || fail "bad CRC: $out"

IMG=$T/mbr.img
truncate -s 48M "$IMG"
printf 'label: dos\nstart=2048, size=8M, type=83\nsize=32M, type=83\n' | sfdisk -q "$IMG"
s=$(part "$IMG" 2 start) l=$(part "$IMG" 2 size)
mke2fs -q -F -t ext2 -b 4096 -I 256 -E offset="$s" "$IMG" $((l / 1024))k >/dev/null
mount_vnopfs -o partition=2
cp "$T/a" "$MNT/f"
unmount_vnopfs
dd if="$IMG" of="$T/m2" bs=512 skip=$((s / 512)) count=$((l / 512)) status=none
e2fsck -fn "$T/m2" >"$T/fsckm" 2>&1 || { cat "$T/fsckm"; fail "e2fsck -fn MBR partition 2"; }
debugfs -R "dump /f $T/a3" "$T/m2" 2>/dev/null; cmp "$T/a" "$T/a3" || fail "MBR partition 2 lacks the file"
out=$("$VNOPFS" "$IMG" "$MNT" -o partition=3 2>&1) && fail "MBR partition 3 mounted"
echo "$out" | grep -q "MBR entry 3: PartitionType is 0" || fail "MBR partition 3: $out"
log "ok: GPT partition 2 beside the kernel's partition 3, refusals named, MBR partition 2"

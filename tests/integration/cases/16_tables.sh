#!/usr/bin/env bash
# The tables of -o table= through a real mount: on each of ext2, ext2-buf, ext2-direct and ext2-sync, fio
# writes and verifies (sequential and random, unaligned sizes), the randomized exerciser runs its file and
# namespace operations against a reference directory, a file written through a shared mmap reads back by
# read(2) and the other way round; then e2fsck -fn is clean and the kernel's ext2 reads back the same tree.
# An unknown table is refused with one line naming the known ones; -o dev_queue=nomerge shows in the stats
# with the queue's merged counter at 0. Sizes are small: the whole case stays near a minute.
source "$(dirname "$0")/../lib/common.sh"
command -v fio >/dev/null || skip "fio is not installed"
make_image 128M
seed=${VNOPFS_SEED:-$RANDOM$RANDOM}
log "exerciser seed $seed (VNOPFS_SEED replays it)"

# 1. An unknown table: one line that names the known ones, nothing mounted.
rc=0; out=$("$VNOPFS" "$IMG" "$MNT" -o table=ext3 2>&1) || rc=$?
[ "$rc" != 0 ] || fail "-o table=ext3 mounted"
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "-o table=ext3: more than one line: $out"
for t in ext2 ext2-buf ext2-direct ext2-sync; do
  echo "$out" | grep -q "$t" || fail "-o table=ext3: the message does not list $t: $out"
done
is_mounted "$MNT" && fail "-o table=ext3 left a mount"
echo '{"table": "nope"}' >"$T/bad.json"
rc=0; out=$("$VNOPFS" "$IMG" "$MNT" -o config="$T/bad.json" 2>&1) || rc=$?
[ "$rc" != 0 ] && echo "$out" | grep -q "unknown table 'nope'" || fail "table in a JSON config not checked: $out"
log "ok: unknown tables refused: $out"

jobfile() {  # jobfile DIR
  fio_global "$1" 1616
  cat <<JOB

[seq-512-256k]
rw=write
bsrange=512-256k
size=2m

[rand-4k-x2]
rw=randwrite
bs=4k
size=512k
numjobs=2

[rand-unaligned]
rw=randwrite
bsrange=1000-20000
bs_unaligned=1
size=512k
JOB
}

mmap_check() {  # mmap_check FILE: a shared mmap's stores read back by read(2), and write(2) by the mapping
  python3 - "$1" <<'PY'
import mmap, os, sys
p = sys.argv[1]
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 3 * 4096 + 100)
m = mmap.mmap(fd, 3 * 4096 + 100)
m[10:20] = b"0123456789"; m[5000:5004] = b"abcd"; m.flush()
os.pwrite(fd, b"WXYZ", 8190)
got = os.pread(fd, 20, 10)
if got[:10] != b"0123456789" or os.pread(fd, 4, 5000) != b"abcd" or m[8190:8194] != b"WXYZ":
    sys.exit("mmap and read/write disagree: %r %r %r" % (got[:10], os.pread(fd, 4, 5000), m[8190:8194]))
m.close(); os.close(fd)
PY
}

for table in ext2 ext2-buf ext2-direct ext2-sync; do
  start=$(date +%s.%N)
  mount_vnopfs -o table=$table,stats="$T/stats-$table.json",stats_interval=0.2
  d=$MNT/$table
  # The reference sits at the same depth in a directory of its own: the exerciser's symlinks to ../x
  # reach $d/x and $T/ref-$table/x, fresh for each table.
  mkdir -p "$d/fio" "$d/ex" "$T/ref-$table/ex"
  jobfile "$d/fio" >"$T/job.fio"
  run_fio "$T/job.fio" "$T/fio.out" "write+verify on table $table"
  python3 "$LIB/exerciser.py" "$d/ex" "$T/ref-$table/ex" --seed "$seed" --ops 250 >"$T/ex.out" 2>&1 ||
    { tail -20 "$T/ex.out"; fail "exerciser on table $table (seed $seed)"; }
  t_io=$(date +%s.%N)
  mmap_check "$d/mapped" || fail "mmap coherence on table $table"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["options"]["table"]==sys.argv[2], j["options"]' \
    "$T/stats-$table.json" "$table" || fail "the stats do not name table $table"
  manifest "$MNT" >"$T/manifest.vnopfs"
  unmount_vnopfs
  check_image
  kernel_readback "$T/manifest.vnopfs"
  log "ok: table $table: fio verify, exerciser, mmap, e2fsck, kernel readback ($(echo "$start $t_io $(date +%s.%N)" | awk '{printf "%.0f s of I/O, %.0f s of checks", $2-$1, $3-$2}'))"
done

# 2. dev_queue=nomerge: the stats say so and the queue merged nothing, under writes it would have merged
# (many small sequential writes in flight at once, kcache=none so each reaches the cache as it is).
mount_vnopfs -o table=ext2-buf,dev_queue=nomerge,kcache=none,stats="$T/stats-nm.json",stats_interval=0.2
dd if=/dev/zero of="$MNT/seq" bs=4k count=2048 conv=fsync status=none
sleep 0.5
python3 - "$T/stats-nm.json" <<'PY' || fail "dev_queue=nomerge: not shown, or the queue merged writes"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["options"]["dev_queue"] == "nomerge", j["options"]
d = j["device"]
assert d["merged"] == 0, d
assert d["writes"] >= 2048 and d["bytes_written"] // d["writes"] == 4096, d
PY
"$VNOPFS_STAT" --file "$T/stats-nm.json" | grep -q "device queue: nomerge, merged 0" || fail "vnopfs-stat does not show dev_queue=nomerge"
finish_case

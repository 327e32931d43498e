#!/usr/bin/env bash
# Changing layers while mounted (vnopfs-ctl MOUNTPOINT layers SPEC | dev-layers SPEC): under fio verify
# jobs that keep writing and reading back, the VNOP layer stack and the device layers are replaced again
# and again; no request fails, no verify fails, and the image ends e2fsck-clean with kernel readback. Each
# new stack is the one that runs (readonly refuses, trace logs, record records, faults fails), a bad spec
# changes nothing, and the stats layer's counts go on across swaps.
source "$(dirname "$0")/../lib/common.sh"
CTL=$VNOPFS_BUILD/src/tools/vnopfs-ctl
[ -x "$CTL" ] || skip "vnopfs-ctl is not built ($CTL)"
command -v fio >/dev/null || skip "fio is not installed"
make_image 256M
mount_vnopfs -o stats="$T/stats.json",stats_interval=0.2

status() { "$CTL" "$MNT" status; }
swap() {  # swap layers|dev-layers SPEC: must succeed
  local out
  out=$("$CTL" "$MNT" "$1" "$2" 2>&1) || fail "vnopfs-ctl $1 '$2' failed: $out"
}
status | grep -q "^vnops: stats over table ext2$" || { status; fail "status does not show the VNOP stack"; }

# 1. fio verify in a loop while the stacks change under it.
mkdir "$MNT/fio"
{ fio_global "$MNT/fio" 34
  cat <<JOB
[rand]
rw=randwrite
bsrange=4k-64k
size=16m
numjobs=2
[seq]
rw=write
bs=128k
size=24m
fsync=8
JOB
} >"$T/verify.fio"
fio_loop_start "$T/verify.fio"

vnop_specs=("trace+stats" "stats" "none" "delay:op=write:us=200" "trace" "sync+stats" "")
dev_specs=("faults" "record:log=$T/rec.log" "none" "faults+record:log=$T/rec2.log" "faults:op=read:action=delay:us=300" "")
swaps=0
start=$(date +%s)
while [ $(( $(date +%s) - start )) -lt 20 ] || [ "$(wc -l <"$T/fio.runs")" -lt 2 ]; do
  [ -e "$T/fio.failed" ] && break  # fio_loop_stop reports it
  [ $(( $(date +%s) - start )) -gt 240 ] && fail "fio did not finish two runs in 240 s"
  swap layers "${vnop_specs[$((swaps % ${#vnop_specs[@]}))]}"
  swap dev-layers "${dev_specs[$((swaps % ${#dev_specs[@]}))]}"
  swaps=$((swaps + 1))
  sleep 0.3
done
fio_loop_stop "while the stacks were being swapped"
[ "$FIO_RUNS" -ge 2 ] || fail "only $FIO_RUNS fio runs completed"
log "ok: $swaps VNOP and $swaps device stack swaps under $FIO_RUNS verified fio runs"
grep -q "layers: '.*' -> '" "$T/daemon.log" || fail "the daemon logged no swap"

# 2. The new stack is the one that runs.
swap layers readonly
status | grep -q "^vnops: stats over readonly over table ext2$" || { status; fail "status after the swap to readonly"; }
out=$(touch "$MNT/after-readonly" 2>&1) && fail "a create succeeded under the readonly layer"
echo "$out" | grep -q "Read-only file system" || fail "a create under readonly failed with '$out', not EROFS"
swap layers none
touch "$MNT/after-none" || fail "a create failed after the readonly layer was removed"
swap layers trace
before=$(grep -c "trace: VNOP_" "$T/daemon.log" || true)
cat "$MNT/after-none" >/dev/null; ls "$MNT" >/dev/null; stat "$MNT/fio" >/dev/null
after=$(grep -c "trace: VNOP_" "$T/daemon.log" || true)
[ "$after" -gt "$before" ] || fail "the trace layer logged nothing after it was swapped in"
swap layers none

swap dev-layers "record:log=$T/rec3.log"
dd if=/dev/urandom of="$MNT/recorded" bs=64k count=4 conv=fsync status=none || fail "write+fsync through the record layer"
size1=$(stat -c %s "$T/rec3.log")
swap dev-layers none
[ "$size1" -gt $((256 * 1024)) ] || fail "the record layer swapped in logged $size1 bytes for 256 KiB written and fsync'd"
dd if=/dev/urandom of="$MNT/unrecorded" bs=64k count=4 conv=fsync status=none
[ "$(stat -c %s "$T/rec3.log")" = "$size1" ] || fail "the record layer still logged after it was swapped out"
status | grep -q "^device: file" || { status; fail "status after dev-layers none"; }

swap dev-layers "faults:op=flush:errno=EIO"
if dd if=/dev/zero of="$MNT/flushfail" bs=4k count=1 conv=fsync status=none 2>/dev/null; then
  fail "write+fsync succeeded although every device flush fails"
fi
swap dev-layers none
dd if=/dev/zero of="$MNT/healthy" bs=4k count=1 conv=fsync status=none || fail "write+fsync after the faults layer went"

# 3. Bad specs: one clear line, nothing changed.
for s in "layers bogus" "layers faults:colour=red" "dev-layers mirror" "dev-layers partition:start=0" "layers ./nope.so"; do
  # shellcheck disable=SC2086
  if out=$("$CTL" "$MNT" $s 2>&1); then fail "vnopfs-ctl $s succeeded"; fi
  [ "$(echo "$out" | wc -l)" = 1 ] || fail "vnopfs-ctl $s: more than one line: $out"
  log "ok: $s -> $out"
done
status | grep -q "^vnops: stats over table ext2$" || { status; fail "a refused swap changed the VNOP stack"; }

# 4. The stats layer's counts went on across the swaps (one series for scrapers).
sleep 0.5
python3 - "$T/stats.json" <<'PY' || fail "the write count did not survive the swaps"
import json, sys
d = json.load(open(sys.argv[1]))
w = d["vnops"].get("write", {}).get("calls", 0)
if w < 1000:
    print(f"write calls {w}: counts restarted at a swap", file=sys.stderr); sys.exit(1)
PY
rm -rf "$MNT/fio"
finish_case

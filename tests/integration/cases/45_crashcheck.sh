#!/usr/bin/env bash
# A short run of the crash-consistency checker (scripts/crashcheck, docs/durability.md): seq-1 workloads
# through a real mount over the record device layer; every crash point ending at a flush (plus random
# subsets of the unflushed writes) is rebuilt, repaired by e2fsck -fy and checked against the oracle.
# About a minute: the workloads run in a fixed order until the time is up (each at least once when the
# machine allows it).
source "$(dirname "$0")/../lib/common.sh"
command -v debugfs >/dev/null || skip "no debugfs (e2fsprogs)"
[ -x "$VNOPFS_BUILD/src/tools/vnopfs-replay" ] || skip "vnopfs-replay is not built yet"
# whatever the checker mounted under our temp dir goes, even if it is killed
ON_EXIT+=("grep -o \" $T/[^ ]*\" /proc/mounts | while read -r m; do fusermount3 -u -z \"\$m\" 2>/dev/null; done")
mkdir "$T/cc"
rc=0
python3 "$(dirname "$0")/../../../scripts/crashcheck" --build "$VNOPFS_BUILD" --minutes 0.8 --subsets 2 \
  --keep "$T/cc" >"$T/cc.log" 2>&1 || rc=$?
cat "$T/cc.log"
[ $rc = 0 ] || fail "crashcheck found a violation or could not run (exit $rc)"
grep -q " 0 violations" "$T/cc.log" || fail "crashcheck did not report its count"
log "ok: $(tail -1 "$T/cc.log")"

#!/usr/bin/env bash
# Prometheus text format (docs/experiments.md): vnopfs-stat --prometheus MOUNTPOINT and the stats file of
# -o stats_format=prometheus both parse with prometheus_client's own parser (Debian python3-prometheus-client),
# and carry per-VNOP counts, errors and latency as a real histogram (cumulative _bucket{le}, +Inf = _count),
# cache, cluster and per-member device counters that match the JSON of the same mount.
source "$(dirname "$0")/../lib/common.sh"
# Debian's module is in the system python (a python3 earlier in PATH, e.g. pyenv's, may not see it).
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
"$PY" -c 'import prometheus_client.parser' 2>/dev/null || skip "python3-prometheus-client is not installed (scripts/setup)"
make_image 64M
check() {  # check FILE [JSON]: parse, check the families
  "$PY" - "$@" <<'PY'
import json, sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
need = ["vnopfs_info", "vnopfs_vnop_calls", "vnopfs_vnop_errors", "vnopfs_vnop_latency_seconds",
        "vnopfs_cache_hits", "vnopfs_cluster_pushes", "vnopfs_device_writes", "vnopfs_device_written_bytes"]
missing = [n for n in need if n not in fams]
assert not missing, ("missing families", missing, sorted(fams))
h = fams["vnopfs_vnop_latency_seconds"]
assert h.type == "histogram", h.type
by = {}
for s in h.samples:
    by.setdefault(s.labels["vnop"], []).append(s)
assert "write" in by, sorted(by)
for vnop, ss in by.items():
    b = [(float(s.labels["le"]), s.value) for s in ss if s.name.endswith("_bucket")]
    cnt = [s.value for s in ss if s.name.endswith("_count")][0]
    assert b == sorted(b), (vnop, "buckets not cumulative", b)
    assert b[-1][0] == float("inf") and b[-1][1] == cnt, (vnop, b[-1], cnt)
    assert any(s.name.endswith("_sum") for s in ss), vnop
calls = {s.labels["vnop"]: s.value for s in fams["vnopfs_vnop_calls"].samples}
assert calls["write"] > 0, calls
dev = [s for s in fams["vnopfs_device_written_bytes"].samples]
assert dev and dev[0].labels["member"] == "0" and dev[0].value > 0, dev
if len(sys.argv) > 2:
    j = json.load(open(sys.argv[2]))
    assert calls["write"] >= j["vnops"]["write"]["calls"], (calls["write"], j["vnops"]["write"]["calls"])
print("ok:", len(fams), "families,", int(calls["write"]), "writes")
PY
}
mount_vnopfs -o "stats=$T/stats.json,stats_interval=0.1"
head -c 4000000 /dev/urandom >"$MNT/f"
sync
cat "$MNT/nope" 2>/dev/null || true  # a lookup error
sleep 0.3
cp "$T/stats.json" "$T/snap.json"
"$VNOPFS_STAT" --prometheus "$MNT" >"$T/out.prom" || fail "vnopfs-stat --prometheus failed"
check "$T/out.prom" "$T/snap.json" || fail "vnopfs-stat --prometheus output"
unmount_vnopfs

mount_vnopfs -o "stats=$T/stats.prom,stats_format=prometheus,stats_interval=0.1"
head -c 2000000 /dev/urandom >"$MNT/g"
sync
sleep 0.3
check "$T/stats.prom" || fail "the stats_format=prometheus file"
"$VNOPFS_STAT" --prometheus "$MNT" >"$T/out2.prom" || fail "vnopfs-stat --prometheus of a Prometheus stats file"
grep -q '^vnopfs_vnop_latency_seconds_bucket{' "$T/out2.prom" || fail "vnopfs-stat does not pass the file on"
out=$("$VNOPFS_STAT" "$MNT" 2>&1) && fail "vnopfs-stat read a Prometheus file as JSON"
echo "$out" | grep -q "Prometheus text format" || fail "message: $out"
unmount_vnopfs
out=$("$VNOPFS" "$IMG" "$MNT" -o stats="$T/x",stats_format=xml 2>&1) && fail "stats_format=xml accepted"
echo "$out" | grep -q "json or prometheus" || fail "message: $out"
log "ok"

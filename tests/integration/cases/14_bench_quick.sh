#!/usr/bin/env bash
# 14_bench_quick: scripts/bench --quick against the build under test works end to end: every target and job
# gives a number, the vnopfs daemon figures (RSS, CPU, device I/O, cache) are there, the chart is a PNG,
# and nothing stays mounted. A smoke test only: no speed is asserted.
source "$(dirname "$0")/../lib/common.sh"
TOP=$(cd "$LIB/../../.." && pwd)
command -v fio >/dev/null || skip "fio is not installed"
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null || skip "python3-matplotlib is not installed (scripts/setup)"

OUT=$T/out
BENCH_PID=
# scripts/bench undoes its own mounts on exit and on SIGTERM; its temp dir is under $T (TMPDIR) so that
# anything left after a harder death is found here too.
ON_EXIT+=('[ -n "$BENCH_PID" ] && kill -TERM "$BENCH_PID" 2>/dev/null && wait "$BENCH_PID" 2>/dev/null'
          'grep -F " $T/" /proc/mounts | cut -d" " -f2 | sort -r | while read -r m; do fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m"; done')

log "scripts/bench --quick --build $VNOPFS_BUILD"
TMPDIR=$T "$TOP/scripts/bench" --quick --build "$VNOPFS_BUILD" --out "$OUT" &
BENCH_PID=$!
rc=0
wait "$BENCH_PID" || rc=$?
BENCH_PID=
[ "$rc" = 0 ] || fail "scripts/bench --quick exited with status $rc"

[ -s "$OUT/results.json" ] || fail "no results.json"
[ -s "$OUT/table.txt" ] || fail "no table.txt"
head -c 8 "$OUT/results.png" | od -An -c | grep -q 'P   N   G' || fail "results.png is not a PNG"
python3 - "$OUT/results.json" <<'PY' || fail "results.json is incomplete"
import json, sys
j = json.load(open(sys.argv[1]))
bad = []
if j["errors"]:
    bad.append("errors: %s" % j["errors"])
for t in j["meta"]["targets"]:
    for job in j["meta"]["jobs"]:
        for r in j["results"][t][job]:
            if not r:
                bad.append("%s %s: no result" % (t, job))
                continue
            nums = [v for k, v in r.items() if k.endswith(("_mibs", "_iops", "_ops"))]
            if not nums or not all(isinstance(v, (int, float)) for v in nums) or max(nums) <= 0:
                bad.append("%s %s: no positive number in %s" % (t, job, r))
    for k, v in j["medians"][t].items():
        if v is None or v <= 0:
            bad.append("median %s %s = %s" % (t, k, v))
d = j["results"]["vnopfs"]["seqwrite-1m"][0]["daemon"]
for k in ("peak_rss_mib", "cpu_s", "dev_ios", "dev_mean_kib", "cache_hit_pct"):
    if k not in d:
        bad.append("vnopfs daemon figure %s missing" % k)
if d.get("dev_writes", 0) <= 0 or d.get("peak_rss_mib", 0) <= 0:
    bad.append("vnopfs daemon figures look empty: %s" % d)
for t in j["meta"]["targets"]:
    if t != "vnopfs" and not j["ratios"]["seqwrite-1m.write_mibs"].get(t):
        bad.append("no ratio vnopfs/%s" % t)
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
if grep -qF " $T/" /proc/mounts; then grep -F " $T/" /proc/mounts >&2; fail "scripts/bench left mounts behind"; fi
if losetup -a | grep -qF "$T/"; then fail "scripts/bench left a loop device behind"; fi
log "ok: $(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(len(j["meta"]["targets"]), "targets,", len(j["meta"]["jobs"]), "jobs in", round(j["meta"]["wall_s"]), "s")' "$OUT/results.json")"

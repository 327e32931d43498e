#!/usr/bin/env bash
# bench_vs_fuse2fs.sh: one fio sequential write and one random 4 KiB write on vnopfs and on fuse2fs, same
# machine, same image size, one run each, interleaved. Not a test case (scripts/test does not run it).
#   VNOPFS_BUILD=build tests/integration/lib/bench_vs_fuse2fs.sh [vnopfs -o options]
set -euo pipefail
: "${VNOPFS_BUILD:=$(cd "$(dirname "$0")/../../.." && pwd)/build}"
T=$(mktemp -d /tmp/vnopfs-bench.XXXXXX)
trap 'for m in $T/m1 $T/m2; do fusermount3 -u -z $m 2>/dev/null || true; done; sleep 1; rm -rf $T' EXIT
mkdir -p "$T/m1" "$T/m2"
for i in 1 2; do mke2fs -q -F -t ext2 -b 4096 -I 256 "$T/img$i" 2G; done
opts=${1:-}
"$VNOPFS_BUILD/src/vnopfs" "$T/img1" "$T/m1" ${opts:+-o $opts}
fuse2fs "$T/img2" "$T/m2" -o fakeroot
sleep 1
run() {  # run NAME DIR fio-args...
  local name=$1 dir=$2; shift 2
  fio --name="$name" --directory="$dir" --ioengine=psync --size=512m --end_fsync=1 --output-format=json "$@" |
    python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]["write"]; print("%-28s %9.1f MiB/s %9.0f IOPS" % (sys.argv[1], j["bw"]/1024, j["iops"]))' "$name"
}
for fs in vnopfs:m1 fuse2fs:m2; do
  run "${fs%%:*} seq write 1M" "$T/${fs#*:}" --rw=write --bs=1m
done
for fs in vnopfs:m1 fuse2fs:m2; do
  run "${fs%%:*} rand write 4k" "$T/${fs#*:}" --rw=randwrite --bs=4k --size=128m
done

#!/usr/bin/env bash
# Buffered, mmap and O_DIRECT (sync, libaio, posixaio, splice) readers and writers on the same two files, as
# xfstests generic/095 runs them, with few FUSE workers. An O_DIRECT write makes the daemon drop the
# kernel's pages of the range (generic/451); the kernel's invalidation waits for pages under writeback,
# whose FUSE_WRITE needs a free worker. When the workers did that invalidation themselves, every one of
# them could end up waiting for the others: generic/095 hung the daemon for good. The case fails if fio
# does not finish in time (the connection is then aborted, so nothing stays hung), and checks the image.
# The kernel holds the mmap writers' writeback back until the O_DIRECT write completes, which is our reply:
# a worker that waits for the invalidation before replying waits its whole bound (200 ms), and did so for
# every O_DIRECT write (generic/095: 171 s of 200 ms idle gaps). Since the inode is marked writeback-bound
# at its first timeout (src/fuse/invalidator.h), the full wait runs out only about once per file per 5 s:
# the daemon's stats (page_invalidation) must show that.
source "$(dirname "$0")/../lib/common.sh"
command -v fio >/dev/null || skip "fio is not installed"
make_image 256M
mount_vnopfs -o threads=2,stats="$T/stats.json"
mkdir "$MNT/mix"
cat >"$T/mix.fio" <<FIO
[global]
bs=8k
iodepth=16
iodepth_batch=8
randrepeat=1
size=512k
loops=1
directory=$MNT/mix
numjobs=1
[dio-sync-read]
ioengine=sync
bs=4096
direct=1
rw=randread
filename=file1:file2
[dio-libaio-write]
ioengine=libaio
rw=randwrite
direct=1
filename=file1:file2
[dio-posixaio-write]
bs=4096
ioengine=posixaio
rw=randwrite
direct=1
filename=file1:file2
[dio-splice-write]
ioengine=splice
direct=1
rw=randwrite
filename=file1:file2
[buffered-read]
bs=1k
ioengine=sync
rw=randread
filename=file1:file2
[buffered-posixaio-write]
ioengine=posixaio
rw=randwrite
filename=file1:file2
[mmap-write]
ioengine=mmap
rw=randwrite
bs=1k
filename=file1:file2
[mmap-dio-write]
ioengine=mmap
rw=randwrite
direct=1
bs=4096
filename=file1:file2
FIO
rc=0
timeout -s KILL 240 fio "$T/mix.fio" --output="$T/mix.out" >/dev/null 2>&1 || rc=$?
if [ $rc = 137 ]; then
  dev=$(awk -v m="$MNT" '$5 == m { split($3, d, ":"); print d[2] }' /proc/self/mountinfo)
  mountpoint -q /sys/fs/fuse/connections || mount -t fusectl none /sys/fs/fuse/connections
  [ -n "$dev" ] && echo 1 >"/sys/fs/fuse/connections/$dev/abort"
  fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT"
  wait "$DAEMON_PID" 2>/dev/null; DAEMON_PID=
  fail "fio did not finish in 240 s: the daemon stopped answering (connection $dev aborted)"
fi
[ $rc = 0 ] || { tail -20 "$T/mix.out"; fail "fio failed (rc=$rc)"; }
log "fio finished: $(grep -c 'err= 0' "$T/mix.out") jobs without error"
finish_case
# The daemon wrote its last statistics at exit.
python3 - "$T/stats.json" <<'PY' || fail "O_DIRECT writes waited out their invalidation bound again and again"
import json, sys
p = json.load(open(sys.argv[1]))["page_invalidation"]
print("page invalidations: %(done)d, waits that ran out: %(timeouts)d, of them the full 200 ms: %(long_timeouts)d" % p)
assert p["done"] > 0, "no invalidation: the O_DIRECT writes did not reach the invalidator"
assert p["long_timeouts"] <= 8, "%d full-length waits for 2 files" % p["long_timeouts"]
PY

# common.sh: shared by every integration case (source it first). Each case runs on its own temp dir with
# a fresh image and mount; an EXIT trap unmounts, kills the daemon, detaches loop devices and removes the
# temp dir on every path. Exit 0 = pass, 77 = skip (last line says why), anything else = fail.
#
#   make_image [SIZE] [mke2fs args]   fresh ext2 image at $IMG (default 256M, 4 KiB blocks, 256-byte inodes)
#   mount_vnopfs [-o opts]            start the daemon in the foreground on $MNT (log: $T/daemon.log);
#                                     $VNOPFS_EXTRA_OPTS, if set, is added before the opts
#   unmount_vnopfs                    fusermount3 -u, wait for the daemon, require exit status 0
#   finish_case                       manifest through vnopfs, unmount, e2fsck -fn, kernel ext2 readback
#                                     (mount -t ext2 -o loop,ro) and diff of the two manifests
#   skip REASON / fail MESSAGE
set -euo pipefail
export LC_ALL=C TZ=UTC

: "${VNOPFS_BUILD:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/build}"
VNOPFS=$VNOPFS_BUILD/src/vnopfs
VNOPFS_STAT=$VNOPFS_BUILD/src/tools/vnopfs-stat
LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CASE=$(basename "$0" .sh)

T=$(mktemp -d "/tmp/vnopfs-$CASE.XXXXXX")
IMG=$T/image.ext2
MNT=$T/mnt
RO=$T/ro
mkdir -p "$MNT" "$RO"
DAEMON_PID=
EXTRA_MOUNTS=()
ON_EXIT=()   # extra cleanup commands (strings), run first

log() { echo "[$CASE $(date +%T)] $*"; }
fail() { echo "FAIL [$CASE]: $*" >&2; exit 1; }
skip() { echo "$*"; exit 77; }

is_mounted() { grep -qs " $1 " /proc/mounts; }
# pid_running PID: the process exists and is not a zombie. A daemon's parent after mount(8) is whoever
# adopted it, and a container's init may reap late; a zombie has closed its files and dropped its locks.
pid_running() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; s=${s##*) }; [[ ${s:0:1} != [ZX] ]]; }

cleanup() {
  local rc=$?
  set +e
  for c in "${ON_EXIT[@]}"; do eval "$c"; done
  if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ -s "$T/daemon.log" ]; then
    echo "--- daemon log (tail)"; tail -25 "$T/daemon.log"
  fi
  for m in "${EXTRA_MOUNTS[@]}" "$MNT" "$RO"; do
    if is_mounted "$m"; then fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; fi
  done
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -TERM "$DAEMON_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DAEMON_PID" 2>/dev/null
    wait "$DAEMON_PID" 2>/dev/null
  fi
  # loop devices whose backing file is in our temp dir
  losetup -a 2>/dev/null | grep -F "$T/" | cut -d: -f1 | while read -r l; do losetup -d "$l" 2>/dev/null; done
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

require_root() { [ "$(id -u)" = 0 ] || skip "needs root (FUSE and loop mounts)"; }
require_root
[ -e /dev/fuse ] || skip "no /dev/fuse"
[ -x "$VNOPFS" ] || skip "vnopfs is not built yet ($VNOPFS)"

make_image() {
  local size=${1:-256M}; shift || true
  rm -f "$IMG"
  # mke2fs creates the file (on an existing file it would discard it first and mark every group
  # EXT2_BG_INODE_ZEROED: see docs/fuse.md, known issues)
  mke2fs -q -F -t ext2 -b 4096 -I 256 "$@" "$IMG" "$size" >/dev/null
}

# mount_vnopfs [vnopfs args...]: foreground daemon in the background of this shell. VNOPFS_EXTRA_OPTS (an -o
# list, e.g. table=ext2-buf or layers=trace) goes before the case's own options, which win on the same key:
# scripts/matrix runs the suite on every table and layer this way.
mount_vnopfs() {
  local extra=()
  [ -n "${VNOPFS_EXTRA_OPTS:-}" ] && extra=(-o "$VNOPFS_EXTRA_OPTS")
  "$VNOPFS" "$IMG" "$MNT" -f "${extra[@]}" "$@" >>"$T/daemon.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 200); do
    is_mounted "$MNT" && return 0
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
      local rc=0
      wait "$DAEMON_PID" || rc=$?
      DAEMON_PID=
      fail "vnopfs exited before mounting (rc=$rc)"
    fi
    sleep 0.05
  done
  fail "vnopfs did not mount within 10 s"
}

# Waits for the daemon to exit (up to $1 s, default 120) and returns its exit status.
wait_daemon() {
  local limit=${1:-120} i
  for ((i = 0; i < limit * 10; i++)); do
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$DAEMON_PID" 2>/dev/null && fail "daemon $DAEMON_PID still running ${limit}s after unmount"
  local rc=0
  wait "$DAEMON_PID" || rc=$?
  DAEMON_PID=
  return $rc
}

# A crash: SIGKILL of the daemon with its cache dirty, then the writers given (pids; each run under
# `timeout`, whose 124 means it hung on the dead mount) are reaped, and the dead mount is detached.
crash_daemon() {
  kill -KILL "$DAEMON_PID"
  wait "$DAEMON_PID" 2>/dev/null || true
  DAEMON_PID=
  local p rc
  for p in "$@"; do
    rc=0; wait "$p" || rc=$?
    [ "$rc" = 124 ] && fail "a writer hung after the daemon was killed"
  done
  fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT"
}

unmount_vnopfs() {
  sync
  fusermount3 -u "$MNT" || fail "fusermount3 -u $MNT failed"
  local rc=0
  wait_daemon 120 || rc=$?
  [ "$rc" = 0 ] || fail "daemon exited with status $rc at unmount"
  grep -q "unmounted cleanly" "$T/daemon.log" || fail "daemon did not report a clean unmount"
}

manifest() { python3 "$LIB/manifest.py" "$1"; }

# fio_global DIR SEED: the [global] section of a verifying fio job (crc32c, fatal, checked as written),
# files in DIR, a repeatable pattern from SEED. A case appends its own job sections.
fio_global() {
  cat <<JOB
[global]
directory=$1
ioengine=psync
verify=crc32c
verify_fatal=1
verify_state_save=0
do_verify=1
randrepeat=1
randseed=$2
group_reporting=1
JOB
}

# run_fio JOBFILE OUT WHAT [fio options...]: runs fio in $T, output in OUT; fails the case naming WHAT
# when fio fails or reports an error.
run_fio() {
  local job=$1 out=$2 what=$3
  shift 3
  (cd "$T" && fio --output="$out" "$@" "$job") || { tail -30 "$out"; fail "fio failed: $what"; }
  grep -q '"error" : [1-9]\|err=[ ]*[1-9]' "$out" && { tail -30 "$out"; fail "fio reported errors: $what"; }
  return 0
}

# fio_loop_start JOBFILE: runs the job again and again in the background (outputs $T/fio.N.out, one line per
# clean run in $T/fio.runs) until fio_loop_stop; a run that fails or reports an error stops the loop.
# fio_loop_stop WHAT: ends the loop after its current run and fails the case naming WHAT if a run failed;
# FIO_RUNS is then the number of clean runs.
fio_loop_start() {
  local job=$1
  : >"$T/fio.runs"
  rm -f "$T/fio.stop" "$T/fio.failed"
  (
    while [ ! -e "$T/fio.stop" ]; do
      n=$(wc -l <"$T/fio.runs")
      (cd "$T" && fio --output="$T/fio.$n.out" "$job") || { echo "fio run $n failed" >"$T/fio.failed"; exit 1; }
      grep -q 'err=[ ]*[1-9]\|verify:.*bad' "$T/fio.$n.out" && { echo "fio run $n reported errors" >"$T/fio.failed"; exit 1; }
      echo "$n" >>"$T/fio.runs"
    done
  ) &
  FIO_LOOP=$!
  ON_EXIT+=("touch '$T/fio.stop'; kill $FIO_LOOP 2>/dev/null; wait $FIO_LOOP 2>/dev/null")
}
fio_loop_stop() {
  touch "$T/fio.stop"
  wait "$FIO_LOOP" || true
  [ -e "$T/fio.failed" ] && { tail -30 "$T"/fio.*.out; fail "$(cat "$T/fio.failed") $1"; }
  FIO_RUNS=$(wc -l <"$T/fio.runs")
}

check_image() {
  local out
  if ! out=$(e2fsck -fn "$IMG" 2>&1); then
    echo "$out" | tail -30 >&2
    fail "e2fsck -fn reports problems"
  fi
}

# The kernel's ext2 driver reads the image back; its manifest must equal $1 (a file).
kernel_readback() {
  mount -t ext2 -o loop,ro "$IMG" "$RO" || fail "kernel ext2 could not mount the image"
  manifest "$RO" >"$T/manifest.kernel"
  umount "$RO"
  if ! diff -u "$1" "$T/manifest.kernel" >"$T/manifest.diff"; then
    head -40 "$T/manifest.diff" >&2
    fail "the kernel's ext2 reads back a different tree"
  fi
}

finish_case() {
  manifest "$MNT" >"$T/manifest.vnopfs"
  unmount_vnopfs
  check_image
  kernel_readback "$T/manifest.vnopfs"
  log "ok: e2fsck clean, kernel readback matches ($(wc -l <"$T/manifest.vnopfs") entries)"
}

# Runs a command as an unprivileged user (uid/gid 1000 unless given): as_user [UID] -- cmd...
as_user() {
  local uid=1000
  if [ "$1" != -- ]; then uid=$1; shift; fi
  shift
  setpriv --reuid "$uid" --regid "$uid" --clear-groups -- "$@"
}

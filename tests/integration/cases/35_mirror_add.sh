#!/usr/bin/env bash
# Mirror membership while mounted (vnopfs-ctl MOUNTPOINT mirror-add | mirror-remove; docs/dev.md): under a
# verifying fio workload a third member is added, copied in the background and joins the service; then a
# member is removed for good. fio sees no error and no verify failure; after the unmount the added member is
# byte-equal to IMAGE and e2fsck-clean, the removed one's record is behind; the next mount of the new pair
# needs no copy. Bad requests are refused with one line and change nothing.
source "$(dirname "$0")/../lib/common.sh"
CTL=$VNOPFS_BUILD/src/tools/vnopfs-ctl
command -v fio >/dev/null || skip "fio is not installed"
A=$T/a.img B=$T/b.img C=$T/c.img
IMG=$A
make_image 64M
truncate -s 64M "$B" "$C"
truncate -s 32M "$T/small.img"
events() { sed -n 's/^events //p' "$1.mirror"; }
job() {  # job SEED: 2 x 8 MiB of random 4 KiB writes, an fsync every 16, verified
  fio_global "$MNT" "$1"
  printf '[w]\nrw=randwrite\nbs=4k\nsize=8M\nnumjobs=2\nfsync=16\nfsync_on_close=1\n'
}
status() { "$CTL" "$MNT" status; }

mount_vnopfs -o "mirror=$A+$B"
job 1 >"$T/job1"
fio_loop_start "$T/job1"
sleep 1
"$CTL" "$MNT" mirror-add "$C" || fail "mirror-add $C"
status | tee "$T/status.adding"
for i in $(seq 300); do
  status >"$T/status" 2>&1
  grep -q "^  $C: in sync (copied while mounted)" "$T/status" && break
  grep -q "^  $C: failed" "$T/status" && { cat "$T/status"; fail "the added member failed"; }
  sleep 0.2
done
grep -q "^  $C: in sync (copied while mounted)" "$T/status" || { cat "$T/status"; fail "the added member did not join within 60 s"; }
grep -q "^mirror: 3 members, in sync" "$T/status" || { cat "$T/status"; fail "status after the join"; }
grep -q "mirror: member $C copied from $A in the background" "$T/daemon.log" || fail "no log line for the copy"
fio_loop_stop "while a member was being added"
log "ok: $C added and copied under $FIO_RUNS verified fio runs: $(grep -o "copied from.*" "$T/daemon.log")"

# Bad requests: one line each, nothing changed.
for args in "mirror-add $T/small.img" "mirror-add $C" "mirror-remove $T/nope.img"; do
  # shellcheck disable=SC2086
  if out=$("$CTL" "$MNT" $args 2>&1); then fail "vnopfs-ctl $args succeeded"; fi
  [ "$(echo "$out" | wc -l)" = 1 ] || fail "vnopfs-ctl $args: more than one line: $out"
  log "ok: $args -> $out"
done

"$CTL" "$MNT" mirror-remove "$B" || fail "mirror-remove $B"
status | tee "$T/status"
grep -q "^  $B: removed" "$T/status" || fail "status does not show $B removed"
grep -q "^mirror: 2 members, in sync" "$T/status" || fail "status after the removal"
job 2 >"$T/job2"
run_fio "$T/job2" "$T/fio2.out" "after the removal"
unmount_vnopfs
cmp "$A" "$C" || fail "the added member differs from IMAGE after the unmount"
for m in "$A" "$C"; do e2fsck -fn "$m" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "e2fsck -fn $m"; }; done
[ "$(events "$A")" = "$(events "$C")" ] || fail "records of A and C differ: $(events "$A") $(events "$C")"
[ "$(events "$B")" -lt "$(events "$A")" ] || fail "the removed member's record is not behind: $(events "$B") vs $(events "$A")"

# The new pair mounts without a copy and serves what fio wrote.
: >"$T/daemon.log"
mount_vnopfs -o "mirror=$A+$C"
grep -q "resync" "$T/daemon.log" && { cat "$T/daemon.log"; fail "the next mount of A+C copied a member"; }
sed -i 's/^do_verify=1/do_verify=1\nverify_only=1/' "$T/job2"
run_fio "$T/job2" "$T/fio3.out" "verify after the remount"
finish_case

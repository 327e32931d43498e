#!/usr/bin/env bash
# -o mirror= (docs/dev.md, "A mirror"): a 2-way mirror of two image files through a real mount.
# 1. A new mirror copies IMAGE over the second member at mount; a verifying fio workload; after the unmount
#    the members are byte-equal and e2fsck -fn clean, their state records at one events count.
# 2. Degraded: the second member fails its 100th write mid-workload (a faults layer under it): fio sees no
#    error, vnopfs-ctl status says DEGRADED and names the member, the log says so once, the unmount is
#    clean, the surviving member is e2fsck -fn clean and its record is ahead of the failed member's.
# 3. At the next mount the stale member is refused with mirror_resync=no (naming it and both counters),
#    and resynced by default: fio's verify of the degraded run's data passes, the members are equal again.
# 4. A member written outside the mirror (mounted alone, touched) is refused until the user deletes the
#    record of the member to overwrite.
# 5. A crash (SIGKILL): the next mount copies IMAGE (after e2fsck -fy) over the other member.
# 6. Both members failing: a write + fsync gets EIO.
source "$(dirname "$0")/../lib/common.sh"
CTL=$VNOPFS_BUILD/src/tools/vnopfs-ctl
command -v fio >/dev/null || skip "fio is not installed"
A=$T/a.img B=$T/b.img
IMG=$A
make_image 64M
truncate -s 64M "$B"
events() { sed -n 's/^events //p' "$1.mirror"; }
job() {  # job SEED: 2 x 8 MiB of random 4 KiB writes, an fsync every 16, verified
  fio_global "$MNT" "$1"
  printf '[w]\nrw=randwrite\nbs=4k\nsize=8M\nnumjobs=2\nfsync=16\nfsync_on_close=1\n'
}

out=$("$VNOPFS" "$A" "$MNT" -f -o "mirror=$A+/dev/null" 2>&1) && fail "a device member was accepted"
echo "$out" | grep -qF "member '/dev/null' is not a regular file" || fail "device member: $out"
mount_vnopfs -o "mirror=$A+$B"
grep -q "mirror: resynced $B from $A" "$T/daemon.log" || fail "the new member was not copied from IMAGE"
"$CTL" "$MNT" status | tee "$T/status"
grep -q "^mirror: 2 members, in sync" "$T/status" || fail "status does not show the mirror in sync"
grep -q "^device: mirror$" "$T/status" || fail "status does not show the mirror device"
job 1 >"$T/job1"
run_fio "$T/job1" "$T/fio1.out" "2-way mirror"
unmount_vnopfs
cmp "$A" "$B" || fail "the members differ after a clean run"
for m in "$A" "$B"; do e2fsck -fn "$m" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "e2fsck -fn $m"; }; done
[ "$(events "$A")" = "$(events "$B")" ] || fail "records differ after a clean stop: $(events "$A") $(events "$B")"
grep -q "^clean 1" "$A.mirror" || fail "the record does not say clean"

mount_vnopfs -o "mirror=$A+$B,mirror_layers=2@faults:op=write:every=100:limit=1"
job 2 >"$T/job2"
run_fio "$T/job2" "$T/fio2.out" "degraded mirror"
"$CTL" "$MNT" status | tee "$T/status"
grep -q "^mirror: 2 members, DEGRADED (1 in service)" "$T/status" || fail "status does not say degraded"
grep -q "^  $B: failed (write: Input/output error)" "$T/status" || fail "status does not name the failed member"
[ "$(grep -c "mirror: member $B failed" "$T/daemon.log")" = 1 ] || fail "the failure is not logged exactly once"
unmount_vnopfs
e2fsck -fn "$A" >"$T/fsck" 2>&1 || { cat "$T/fsck"; fail "e2fsck -fn of the surviving member"; }
a_ev=$(events "$A") b_ev=$(events "$B")
[ "$a_ev" -gt "$b_ev" ] || fail "the surviving member's record ($a_ev) is not ahead of the failed one's ($b_ev)"
cmp -s "$A" "$B" && fail "the failed member has every write"

out=$("$VNOPFS" "$A" "$MNT" -f -o "mirror=$A+$B,mirror_resync=no" 2>&1) && fail "a stale member was accepted"
echo "$out" | grep -qF "mirror member '$B' is stale: it missed writes (events $b_ev) (current: events $a_ev on '$A')" ||
  fail "refusal: $out"
is_mounted "$MNT" && fail "mounted anyway"
[ "$(events "$B")" = "$b_ev" ] || fail "the refusal changed the stale record"
mount_vnopfs -o "mirror=$A+$B"
grep -q "mirror: member $B is stale: it missed writes.*resyncing it from $A" "$T/daemon.log" || fail "no resync logged"
"$CTL" "$MNT" status | tee "$T/status"
grep -q "^  $B: in sync (resynced at mount)" "$T/status" || fail "status does not show the resynced member"
run_fio "$T/job2" "$T/fio3.out" "verify after the resync" --verify_only
"$CTL" "$MNT" status --json | python3 -c '
import json, sys
m = json.load(sys.stdin)["mirror"]["members"]
assert all(x["reads"] > 0 for x in m), m   # the verify read from both
print("reads per member:", [x["reads"] for x in m])'
unmount_vnopfs
cmp "$A" "$B" || fail "the members differ after the resync"

# 4. A member written outside the mirror: mounting it alone is refused; once written anyway (touch), the
#    mirror is refused (which copy is right cannot be told); without a's record, a is copied from b.
out=$("$VNOPFS" "$B" "$MNT" -f 2>&1) && fail "a member mounted alone"
echo "$out" | grep -qF "image '$B' is a member of a mirror (its state record '$B.mirror')" || fail "alone: $out"
touch "$B"
out=$("$VNOPFS" "$A" "$MNT" -f -o "mirror=$A+$B" 2>&1) && fail "a member written outside the mirror was accepted"
echo "$out" | grep -qF "mirror member '$B' was written outside the mirror after its clean stop" || fail "outside: $out"
rm "$A.mirror"
mount_vnopfs -o "mirror=$A+$B"
grep -q "mirror: member $A has no state record.*resyncing it from $B" "$T/daemon.log" || fail "a was not copied from b"
unmount_vnopfs
cmp "$A" "$B" || fail "the members differ after copying b over a"

# 5. A crash (SIGKILL) while mounted: the records still say in use; after e2fsck -fy of IMAGE the next
#    mount copies it over b (blocks in flight at the crash may differ between them).
mount_vnopfs -o "mirror=$A+$B"
head -c 3M /dev/urandom >"$MNT/at-crash"
grep -q "^clean 0" "$A.mirror" || fail "a mounted member's record says clean"
kill -KILL "$DAEMON_PID"; wait "$DAEMON_PID" || true; DAEMON_PID=
fusermount3 -u -z "$MNT" 2>/dev/null || umount -l "$MNT"
rc=0; e2fsck -fy "$A" >"$T/fsck" 2>&1 || rc=$?
[ $rc -le 1 ] || { cat "$T/fsck"; fail "e2fsck -fy of IMAGE after the crash (rc=$rc)"; }
mount_vnopfs -o "mirror=$A+$B"
grep -q "mirror: member $B may differ from '$A': the mirror was not stopped cleanly.*resyncing it from $A" "$T/daemon.log" ||
  fail "no resync after the crash"
unmount_vnopfs
cmp "$A" "$B" || fail "the members differ after the crash's resync"

# 6. Both members failing.
mount_vnopfs -o "mirror=$A+$B,mirror_layers=1@faults:op=write:every=10:limit=1,mirror_layers=2@faults:op=write:every=10:limit=1"
out=$(dd if=/dev/urandom of="$MNT/lost" bs=1M count=16 conv=fsync 2>&1) && fail "a write with every member failing succeeded"
echo "$out" | grep -q "Input/output error" || fail "both failing: $out"
grep -q "every request fails with EIO" "$T/daemon.log" || fail "no member left is not logged"
fusermount3 -u "$MNT"
wait_daemon 60 || true  # its last flush fails: exit status 1
log "ok: mirror equal and clean, degraded without an error, stale member refused then resynced, outside writes refused, resync after a crash, EIO with none left"

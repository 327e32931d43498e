#!/usr/bin/env bash
# The INIT flags libfuse 3.14 drops and vnopfs sends itself (src/fuse/kernelio.cpp) really reach the
# kernel, seen by what the kernel does with them, not by what the daemon says:
#  - FUSE_HANDLE_KILLPRIV: before a non-owner's write to a suid/sgid file the kernel, without the flag,
#    refreshes the mode (GETATTR) and sends a mode SETATTR that drops the bits (a VNOP_SETATTR); with it,
#    the SETATTR it still sends carries no attribute (fuse_setattr strips the mode), so no VNOP_SETATTR
#    runs. ext2's VNOP_WRITE clears the bits itself, so they are gone either way.
# FUSE_PARALLEL_DIROPS goes out in the same rewritten INIT reply; its effect (no per-directory mutex
# around LOOKUP/READDIR in the kernel) could not be observed reliably on a 2-core machine: four processes
# looking up fresh names in one directory under -d never had two LOOKUPs in the daemon at once.
source "$(dirname "$0")/../lib/common.sh"
make_image 64M
chmod 755 "$T"

# 1. handle_killpriv
mount_vnopfs -o allow_other,stats="$T/stats.json",stats_interval=0.05
grep -q "INIT: kernel offered" "$T/daemon.log" || fail "the INIT hook did not run (no INIT line in the log)"
echo data >"$MNT/suid"; chmod 6777 "$MNT/suid"
setattr_calls() {
  sleep 0.3   # two stats intervals: the file is rewritten atomically
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vnops"].get("setattr", {}).get("calls", 0))' "$T/stats.json"
}
before=$(setattr_calls)
# The kernel caches the mode for attr_timeout (1 s) and keeps it across a write: the stat right after the
# write shows the cleared bits only if the daemon dropped that cache (vfs_context::setid_cleared).
stat -c %a "$MNT/suid" >/dev/null
as_user 1000 -- dd if=/dev/zero of="$MNT/suid" bs=1 count=1 seek=2 conv=notrunc status=none ||
  fail "uid 1000 could not write to the 6777 file"
mode=$(stat -c %a "$MNT/suid")
after=$(setattr_calls)
[ "$mode" = 777 ] || fail "suid/sgid not cleared by a non-owner's write: mode $mode"
[ "$after" = "$before" ] ||
  fail "$((after - before)) VNOP_SETATTR from the kernel's suid clearing around a non-owner's write: FUSE_HANDLE_KILLPRIV not negotiated"
log "handle_killpriv: no mode SETATTR from the kernel around the write, suid/sgid cleared by the daemon (mode $mode)"
unmount_vnopfs

mount_vnopfs -o allow_other
finish_case

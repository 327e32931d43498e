#!/usr/bin/env bash
# 20 SIGKILLs of the daemon at random moments under fio (fsync=1, verify pattern) and a data and a
# metadata workload with file and directory fsyncs (scripts/killloop, docs/durability.md "SIGKILL"): after
# each, e2fsck -fy repairs the image and the kernel's ext2 driver reads back every fsync'd byte, every
# durable name and unlink, and no foreign byte. The seed is printed; VNOPFS_KILLLOOP_SEED replays one.
source "$(dirname "$0")/../lib/common.sh"
command -v fio >/dev/null || skip "fio is missing"
args=(--kills "${VNOPFS_KILLLOOP_KILLS:-20}" --build "$VNOPFS_BUILD")
[ -n "${VNOPFS_KILLLOOP_SEED:-}" ] && args+=(--seed "$VNOPFS_KILLLOOP_SEED")
rc=0
python3 "$LIB/../../../scripts/killloop" "${args[@]}" | tee "$T/killloop.log" || rc=$?
[ "$rc" = 0 ] || fail "killloop found lost or foreign bytes (rc=$rc): $(tail -1 "$T/killloop.log")"
kills=$(sed -n 's/^killloop: \([0-9]*\) kills.*/\1/p' "$T/killloop.log")
[ "${kills:-0}" -ge "${VNOPFS_KILLLOOP_KILLS:-20}" ] || fail "only ${kills:-0} kills ran"
grep -q " 0 lost, 0 files with foreign bytes" "$T/killloop.log" || fail "summary: $(tail -1 "$T/killloop.log")"
log "ok: $(tail -1 "$T/killloop.log")"

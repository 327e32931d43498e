#!/usr/bin/env bash
# 60 seconds of the libFuzzer target tests/fuzz/fuzz_mount (scripts/fuzz: a clang build in build-fuzz, the
# mke2fs seeds and, when present, e2fsprogs' damaged images from ../shared): mutated images mounted
# through the VNOP API over an in-memory device, walked and written; any crash, sanitizer report or hang
# fails. VNOPFS_FUZZ_SECONDS changes the budget.
source "$(dirname "$0")/../lib/common.sh"
command -v clang++ >/dev/null || skip "clang++ is missing (scripts/setup installs clang)"
top=$(cd "$LIB/../../.." && pwd)
rc=0
"$top/scripts/fuzz" --seconds "${VNOPFS_FUZZ_SECONDS:-60}" --corpus "$T/corpus" | tee "$T/fuzz.log" || rc=$?
[ "$rc" = 2 ] && fail "scripts/fuzz could not build or start: $(tail -3 "$T/fuzz.log")"
[ "$rc" = 0 ] || fail "the fuzzer found a crash: $(tail -1 "$T/fuzz.log")"
execs=$(sed -n 's/^fuzz: \([0-9]*\) executions.*/\1/p' "$T/fuzz.log")
[ "${execs:-0}" -gt 0 ] || fail "no executions: $(tail -1 "$T/fuzz.log")"
log "ok: $(tail -1 "$T/fuzz.log")"

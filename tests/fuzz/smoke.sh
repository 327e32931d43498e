#!/usr/bin/env bash
# tests/fuzz/smoke.sh BUILD [SECONDS]: the fuzz smoke run of scripts/test. Replays the regression images of
# tests/images/ (compressed damaged images that once crashed the target), then runs BUILD/tests/fuzz/fuzz_smoke
# for SECONDS (default $VNOPFS_FUZZ_SECONDS or 60) over our own mke2fs seeds (tests/fuzz/make_seeds.sh, made
# once in BUILD/fuzz-seeds). A blind mutation fuzzer, not coverage-guided: scripts/fuzz (libFuzzer) is the
# long-run tool. Failing inputs are saved in BUILD/fuzz-crashes. VNOPFS_FUZZ_SEED=S repeats a run. Exit 0:
# no crash, no hang; 1: a failure; 2: could not run.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:?usage: smoke.sh BUILD [SECONDS]}
secs=${2:-${VNOPFS_FUZZ_SECONDS:-60}}
bin=$build/tests/fuzz/fuzz_smoke
[ -x "$bin" ] || { echo "smoke.sh: $bin not built"; exit 2; }
seeds=$build/fuzz-seeds
bash "$top/tests/fuzz/make_seeds.sh" "$seeds" || { echo "smoke.sh: making the seeds failed"; exit 2; }
shopt -s nullglob
regs=("$top"/tests/images/*.img.gz)
if ((${#regs[@]})); then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  for g in "${regs[@]}"; do gzip -dc "$g" >"$tmp/$(basename "$g" .gz)" || exit 2; done
  # In this process: a crash or an assertion fails the run; a hang is cut by the timeout.
  timeout -k 5 120 "$bin" --replay "$tmp"/*.img >"$build/fuzz-regressions.log" 2>&1 || {
    echo "smoke.sh: a regression image fails again (log: $build/fuzz-regressions.log):"
    tail -15 "$build/fuzz-regressions.log"
    exit 1
  }
  echo "smoke.sh: ${#regs[@]} regression images of tests/images replayed"
fi
timeout -k 10 $((${secs%.*} + 120)) "$bin" --seeds "$seeds" --seconds "$secs" --crashes "$build/fuzz-crashes" \
  ${VNOPFS_FUZZ_SEED:+--seed "$VNOPFS_FUZZ_SEED"}

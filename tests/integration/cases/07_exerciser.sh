#!/usr/bin/env bash
# Randomized exerciser: seeded random operations on the vnopfs mount and on a reference directory of the
# host filesystem in lockstep; results, errnos and final trees must match. Seed: VNOPFS_SEED (printed).
# Replay: VNOPFS_SEED=N scripts/test -k exerciser
source "$(dirname "$0")/../lib/common.sh"
make_image 128M
seed=${VNOPFS_SEED:-$RANDOM$RANDOM}
for kc in writethrough writeback; do
  mount_vnopfs -o kcache=$kc
  mkdir -p "$T/ref-$kc" "$MNT/x-$kc"
  python3 "$LIB/exerciser.py" "$MNT/x-$kc" "$T/ref-$kc" --seed "$seed" --ops 2500 || fail "exerciser (kcache=$kc, seed $seed)"
  if [ "$kc" = writethrough ]; then unmount_vnopfs; check_image; fi
done
finish_case

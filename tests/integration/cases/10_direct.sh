#!/usr/bin/env bash
# -o direct (O_DIRECT on the image file) with both backends: fio write+verify, e2fsck, kernel readback.
source "$(dirname "$0")/../lib/common.sh"
command -v fio >/dev/null || skip "fio is not installed"
make_image 256M
for backend in file uring; do
  mount_vnopfs -o direct,backend=$backend,kcache=writeback
  mkdir -p "$MNT/d-$backend"
  (cd "$T" && fio --name=direct --directory="$MNT/d-$backend" --rw=randwrite --bsrange=512-256k --size=8m --numjobs=2 \
      --verify=crc32c --verify_fatal=1 --verify_state_save=0 --output="$T/fio.out") || { tail -20 "$T/fio.out"; fail "fio ($backend, direct)"; }
  [ $backend = uring ] || unmount_vnopfs
done
finish_case

#!/usr/bin/env bash
# fio with verify=crc32c through every kernel cache mode and both device backends: sequential and random
# writes, 1 to 4 jobs, block sizes from 512 B to 1 MiB, verified as written, then verified again (read only)
# after a remount, so the bytes came from the image and not from a cache. Sizes are small for the time budget.
source "$(dirname "$0")/../lib/common.sh"
command -v fio >/dev/null || skip "fio is not installed"
make_image 512M

jobfile() {  # jobfile DIR
  fio_global "$1" 4242
  cat <<JOB

[seq-512-1m]
rw=write
bsrange=512-1m
size=6m
numjobs=1

[seq-64k-x2]
rw=write
bs=64k
size=4m
numjobs=2

[rand-4k-x4]
rw=randwrite
bs=4k
size=2m
numjobs=4

[rand-512-64k-x2]
rw=randwrite
bsrange=512-64k
size=3m
numjobs=2

[rand-1m]
rw=randwrite
bs=1m
size=4m
numjobs=1
JOB
}

for backend in file uring; do
  for kc in writethrough none writeback; do
    d=$MNT/fio-$backend-$kc
    mount_vnopfs -o kcache=$kc,backend=$backend
    mkdir -p "$d"
    jobfile "$d" >"$T/job.fio"
    run_fio "$T/job.fio" "$T/fio.out" "write+verify ($backend, $kc)"
    unmount_vnopfs
    check_image
    mount_vnopfs -o kcache=$kc,backend=$backend
    run_fio "$T/job.fio" "$T/fio.verify" "verify after remount ($backend, $kc)" --verify_only
    log "ok: fio $backend $kc"
    [ "$backend-$kc" = uring-writeback ] || unmount_vnopfs
  done
done
finish_case

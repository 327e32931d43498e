#!/usr/bin/env bash
# generic/451: asynchronous O_DIRECT writes while other processes read the same file buffered; after each
# write completes, a buffered read must return the new bytes. The kernel drops its cached pages after a
# synchronous direct write, not after an asynchronous one, so the daemon invalidates them (src/fuse/file.cpp).
# Default mount (kcache=writethrough, attributes cached for 1 s: no mtime check saves the reader).
source "$(dirname "$0")/../lib/common.sh"
command -v gcc >/dev/null || skip "gcc is missing (scripts/setup)"
gcc -O2 -o "$T/dio_cycle" "$LIB/dio_cycle.c" || fail "cannot compile dio_cycle.c"
make_image 64M
mount_vnopfs
log "20 s of AIO O_DIRECT writes against 4 buffered readers"
"$T/dio_cycle" "$MNT/f" 20 4 || fail "a buffered read returned stale data after an O_DIRECT write"
finish_case

#!/usr/bin/env bash
# Privilege clearing against the kernel as the reference: each of write, truncate, open(O_TRUNC),
# fallocate and chown, by the owner, a non-owner, a member of the file's group, root, root without
# CAP_FSETID and a non-owner with CAP_FSETID, on files with set-user-ID / set-group-ID (with and without
# group-exec) and with or without a security.capability. What survives (mode, capability) and each call's
# errno must equal what the kernel's ext2 gives on a loop mount; fallocate, which the kernel's ext2 does not
# have, is compared with the kernel's ext4 (the rules are the VFS's: file_modified). 0 differences.
# vnopfs runs with FUSE_HANDLE_KILLPRIV_V2 (the daemon log must say so): the daemon decides it all.
source "$(dirname "$0")/../lib/common.sh"
make_image 64M
chmod 755 "$T"   # the users must reach the mounts and the script
M=$LIB/privs_matrix.py

as_writer() {
  local w=$1; shift
  case $w in
    owner)         setpriv --reuid 1000 --regid 1000 --clear-groups -- "$@" ;;
    other)         setpriv --reuid 1001 --regid 1001 --clear-groups -- "$@" ;;
    member)        setpriv --reuid 1001 --regid 1001 --groups 2000 -- "$@" ;;
    root)          "$@" ;;
    root-nofsetid) setpriv --inh-caps -fsetid --bounding-set -fsetid -- "$@" ;;
    other-fsetid)  setpriv --reuid 1001 --regid 1001 --clear-groups --inh-caps +fsetid --ambient-caps +fsetid -- "$@" ;;
  esac
}
[ "$(as_writer other-fsetid sh -c 'grep CapEff /proc/self/status')" = "CapEff:	0000000000000010" ] ||
  skip "setpriv cannot give a non-root caller CAP_FSETID here"

# matrix OUT DIR-ARGS...: setup, every writer's run, report (the runs' errnos and the final state).
matrix() {
  local out=$1; shift
  python3 "$M" setup "$@"
  for w in owner other member root root-nofsetid other-fsetid; do
    as_writer "$w" /usr/bin/python3 "$M" run "$w" "$@" >>"$out" || fail "matrix run as $w failed"
  done
  python3 "$M" report "$@" >>"$out"
}

# The reference: the kernel's ext2 (and ext4 for fallocate) on loop mounts of fresh images.
REF2=$T/ref2; REF4=$T/ref4
mkdir -p "$REF2" "$REF4"
mke2fs -q -F -t ext2 -b 4096 -I 256 "$T/ref.ext2" 64M >/dev/null
mke2fs -q -F -t ext4 "$T/ref.ext4" 64M >/dev/null
mount -t ext2 -o loop "$T/ref.ext2" "$REF2" || fail "kernel ext2 could not mount the reference image"
EXTRA_MOUNTS+=("$REF2")
mount -t ext4 -o loop "$T/ref.ext4" "$REF4" || fail "kernel ext4 could not mount the reference image"
EXTRA_MOUNTS+=("$REF4")
chmod 777 "$REF2" "$REF4"
matrix "$T/ref.out" "$REF2" --op-dir fallocate="$REF4"
umount "$REF2"; umount "$REF4"

mount_vnopfs -o allow_other
grep -q "INIT:.*replied" "$T/daemon.log" || fail "no INIT line in the daemon log"
python3 - "$T/daemon.log" <<'PY' || fail "FUSE_HANDLE_KILLPRIV_V2 was not negotiated"
import re, sys
m = re.search(r"offered 0x([0-9a-f]+), replied 0x([0-9a-f]+)", open(sys.argv[1]).read())
offered, replied = int(m.group(1), 16), int(m.group(2), 16)
sys.exit(0 if (replied >> 28) & 1 or not (offered >> 28) & 1 else 1)
PY
chmod 777 "$MNT"
matrix "$T/vnopfs.out" "$MNT"
n=$(wc -l <"$T/ref.out")
if ! diff -u "$T/ref.out" "$T/vnopfs.out" >"$T/matrix.diff"; then
  head -60 "$T/matrix.diff" >&2
  fail "$(grep -c '^+[^+]' "$T/matrix.diff") of $n lines differ from the kernel"
fi
log "privilege matrix: $n lines, 0 differences from the kernel"

# What the kernel shows at once: it caches the mode for attr_timeout, and with killpriv v2 it is ext2 that
# clears the bits, so the daemon must drop the kernel's attributes (generic/683, 684). stat right after.
for op in "fallocate -l 64k" "fallocate -p -o 0 -l 4k" "truncate -s 8k"; do
  f=$MNT/cached.$RANDOM
  head -c 16384 /dev/zero >"$f"; chmod 6666 "$f"
  stat -c %a "$f" >/dev/null   # the kernel caches 6666
  # shellcheck disable=SC2086  # $op is a command and its arguments
  as_user -- $op "$f" || fail "$op by a non-owner failed"
  mode=$(stat -c %a "$f")
  [ "$mode" = 666 ] || fail "after '$op' by a non-owner stat shows mode $mode at once (expected 666: stale attributes)"
done
log "set-ID bits cleared by fallocate, punch and truncate are seen at once"
finish_case

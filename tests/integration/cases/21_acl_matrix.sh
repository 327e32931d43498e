#!/usr/bin/env bash
# POSIX ACLs against the kernel's ext2 as the reference: named users and groups, masks, other; files and
# directories; default ACLs inherited (and by new subdirectories as their default), the umask only without
# one; chmod after setfacl; an ACL equivalent to the mode stored as the mode alone; S_ISGID dropped by a
# setfacl from outside the group; permission probes by a named user, a named group's member and another
# user. The same steps on the kernel's ext2 (loop mount) and on vnopfs must print the same; then the image
# vnopfs wrote, mounted by the kernel, shows the same getfacl for every file, and e2fsck is clean.
# -o noacl: ACL names refused, mode bits only. An image without ext_attr: ACLs off, said once in the log.
source "$(dirname "$0")/../lib/common.sh"
command -v setfacl >/dev/null && command -v getfacl >/dev/null || skip "needs setfacl and getfacl (package acl)"
make_image 64M
chmod 755 "$T"
OPS=$LIB/acl_ops.sh

REF=$T/ref
mkdir -p "$REF"
mke2fs -q -F -t ext2 -b 4096 -I 256 "$T/ref.ext2" 64M >/dev/null
mount -t ext2 -o loop,acl "$T/ref.ext2" "$REF" || fail "kernel ext2 could not mount the reference image"
EXTRA_MOUNTS+=("$REF")
mkdir "$REF/t"; chmod 755 "$REF/t"
bash "$OPS" "$REF/t" >"$T/ref.out" 2>&1
umount "$REF"

mount_vnopfs -o allow_other
grep -q "INIT:" "$T/daemon.log" || fail "no INIT line"
mkdir "$MNT/t"; chmod 755 "$MNT/t"
bash "$OPS" "$MNT/t" >"$T/vnopfs.out" 2>&1
if ! diff -u "$T/ref.out" "$T/vnopfs.out" >"$T/acl.diff"; then
  head -60 "$T/acl.diff" >&2
  fail "$(grep -c '^+[^+]' "$T/acl.diff") lines differ from the kernel's ext2"
fi
log "ACL steps and probes: $(wc -l <"$T/ref.out") lines, 0 differences from the kernel"
(cd "$MNT" && find t | sort | xargs -d "\n" getfacl -n -p) >"$T/getfacl.vnopfs"
finish_case
mount -t ext2 -o loop,ro,acl "$IMG" "$RO" || fail "kernel ext2 could not mount the image"
(cd "$RO" && find t | sort | xargs -d "\n" getfacl -n -p) >"$T/getfacl.kernel"
umount "$RO"
diff -u "$T/getfacl.vnopfs" "$T/getfacl.kernel" >&2 || fail "the kernel reads other ACLs from the image vnopfs wrote"
log "the kernel's getfacl of the image equals vnopfs's ($(grep -c '^# file' "$T/getfacl.kernel") files)"

# -o noacl: refused like a noacl mount, no ACL enforced
mount_vnopfs -o noacl
touch "$MNT/n"
setfacl -m u:1001:r "$MNT/n" 2>/dev/null && fail "setfacl succeeded under -o noacl"
getfacl -n "$MNT/t/file" 2>/dev/null | grep -q "user:1001" && fail "an ACL shown under -o noacl"
unmount_vnopfs

# an image without ext_attr: ACLs off, said once
make_image 64M -O ^ext_attr
mount_vnopfs
touch "$MNT/x"
setfacl -m u:1001:r "$MNT/x" 2>/dev/null && fail "setfacl succeeded on an image without ext_attr"
unmount_vnopfs
[ "$(grep -c "POSIX ACLs are off" "$T/daemon.log")" = 1 ] || fail "the log does not say once that ACLs are off"
log "noacl and no-ext_attr: ACLs refused"

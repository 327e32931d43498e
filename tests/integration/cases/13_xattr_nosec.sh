#!/usr/bin/env bash
# The kernel asks GETXATTR security.capability before every write(2); vnopfs answers ENODATA from a
# per-vnode fact (VX_NOSECXATTR, kept by ext2's xattr code) without a VNOP. The answer must stay right:
#  - writes to a file without attributes reach VNOP_GETXATTR at most once (then the fact answers);
#  - a capability set through the mount is seen at once: getfattr shows it, and the next write makes the
#    kernel remove it (Linux drops security.capability on write), which only happens if the GETXATTR
#    before that write found it;
#  - a capability written by the kernel's ext2 (setcap on a loop mount) is seen, and dropped on write.
source "$(dirname "$0")/../lib/common.sh"
command -v setcap >/dev/null && command -v getfattr >/dev/null || skip "needs setcap and getfattr"
make_image 64M

getxattr_calls() {
  sleep 0.3   # the stats file is rewritten every 0.05 s
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vnops"].get("getxattr", {}).get("calls", 0))' "$T/stats.json"
}
has_cap() { getfattr -n security.capability "$1" >/dev/null 2>&1; }
write_some() { dd if=/dev/zero of="$1" bs=4k count="$2" conv=notrunc status=none; }

# 1. a file written by the kernel's ext2 with a capability, and one without
mount -t ext2 -o loop "$IMG" "$RO" || fail "kernel ext2 could not mount the image"
EXTRA_MOUNTS+=("$RO")
echo kernel >"$RO/kcap"; setcap cap_net_raw+ep "$RO/kcap"
echo kernel >"$RO/kplain"
umount "$RO"

mount_vnopfs -o stats="$T/stats.json",stats_interval=0.05
has_cap "$MNT/kcap" || fail "the capability the kernel's ext2 wrote is not seen through vnopfs"
getcap "$MNT/kcap" | grep -q cap_net_raw || fail "getcap does not show cap_net_raw: $(getcap "$MNT/kcap")"
write_some "$MNT/kcap" 1
has_cap "$MNT/kcap" && fail "a write did not drop the kernel-written capability (GETXATTR answered wrongly?)"
has_cap "$MNT/kplain" && fail "security.capability on a file that has none"

# 2. the fast path: many writes, at most one VNOP_GETXATTR for the file
echo data >"$MNT/f"
before=$(getxattr_calls)
write_some "$MNT/f" 200
after=$(getxattr_calls)
[ $((after - before)) -le 1 ] ||
  fail "$((after - before)) VNOP_GETXATTR for 200 writes to a file without attributes: the fast path is not used"
log "200 writes: $((after - before)) VNOP_GETXATTR (the rest answered from VX_NOSECXATTR)"

# 3. setting a capability ends the fact at once
has_cap "$MNT/f" && fail "security.capability on a file that has none"
setcap cap_net_raw+ep "$MNT/f"
has_cap "$MNT/f" || fail "getfattr does not see the capability just set"
getcap "$MNT/f" | grep -q cap_net_raw || fail "getcap does not show cap_net_raw"
write_some "$MNT/f" 1
has_cap "$MNT/f" && fail "a write did not drop the capability set through the mount (stale VX_NOSECXATTR?)"
write_some "$MNT/f" 5
has_cap "$MNT/f" && fail "the capability came back"

# other security.* names too, and other namespaces are unaffected
setfattr -n security.vnopfs -v hello "$MNT/f"
[ "$(getfattr --only-values -n security.vnopfs "$MNT/f")" = hello ] || fail "security.vnopfs does not read back"
setfattr -x security.vnopfs "$MNT/f"
has_cap "$MNT/f" && fail "security.capability after removing another security.* name"
setfattr -n user.a -v b "$MNT/f"
[ "$(getfattr --only-values -n user.a "$MNT/f")" = b ] || fail "user.a does not read back"
out=$(getfattr -n security.capability "$MNT/f" 2>&1) && fail "security.capability readable after the write dropped it"
echo "$out" | grep -q "No such attribute" || fail "security.capability: not ENODATA: $out"
finish_case

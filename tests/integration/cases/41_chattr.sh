#!/usr/bin/env bash
# chattr/lsattr through the mount (FS_IOC_GETFLAGS/SETFLAGS and FS_IOC_FSGETXATTR/FSSETXATTR reach the
# daemon as FUSE ioctls) and what the flags forbid: immutable (i), append-only (a), plus noatime (A),
# sync (S) and nodump (d) stored and read back, by vnopfs after a remount and by the kernel's ext2; new
# inodes take their directory's flags as the kernel's ext2 gives them.
source "$(dirname "$0")/../lib/common.sh"
command -v chattr >/dev/null && command -v lsattr >/dev/null || skip "chattr/lsattr (e2fsprogs) are missing"
make_image 64M
mount_vnopfs -o allow_other
attrs() { lsattr -d "$1" 2>/dev/null | awk '{ print $1 }'; }
has() { [[ "$(attrs "$1")" == *"$2"* ]]; }
denied() {  # denied WHAT CMD...: the command must fail with "Operation not permitted"
  local what=$1 out; shift
  if out=$("$@" 2>&1); then fail "$what succeeded"; fi
  [[ "$out" == *"Operation not permitted"* ]] || fail "$what: expected EPERM, got: $out"
}

cd "$MNT"
echo data >f; mkdir d; echo x >d/x; echo log >a; mkdir ad; echo y >ad/y
log "immutable file"
chattr +i f || fail "chattr +i"
has f i || fail "lsattr does not show i: $(attrs f)"
denied "write to an immutable file" sh -c 'echo more >>f'
denied "truncating open of an immutable file" sh -c ': >f'
denied "unlink of an immutable file" rm -f f
denied "rename of an immutable file" mv f g
denied "link to an immutable file" ln f g
denied "chmod of an immutable file" chmod 600 f
denied "truncate of an immutable file" truncate -s 0 f
denied "setfattr on an immutable file" setfattr -n user.k -v v f
[ "$(cat f)" = data ] || fail "immutable file changed"
log "append-only file"
chattr +a a || fail "chattr +a"
echo more >>a || fail "append to an append-only file"
denied "overwrite of an append-only file" sh -c 'echo new >a'
denied "unlink of an append-only file" rm -f a
denied "truncate of an append-only file" truncate -s 0 a
denied "chmod of an append-only file" chmod 600 a
[ "$(cat a)" = "$(printf 'log\nmore')" ] || fail "append-only file: $(cat a)"
log "immutable and append-only directories"
chattr +i d || fail "chattr +i on a directory"
has d i || fail "lsattr -d does not show i on the directory"
denied "create in an immutable directory" touch d/new
denied "unlink in an immutable directory" rm -f d/x
chattr +a ad || fail "chattr +a on a directory"
touch ad/new || fail "create in an append-only directory"
denied "unlink in an append-only directory" rm -f ad/y
denied "rename out of an append-only directory" mv ad/y y
log "noatime, sync, nodump; only root changes i and a"
echo n >n; chattr +A +S +d n || fail "chattr +ASd"
for c in A S d; do has n $c || fail "lsattr does not show $c: $(attrs n)"; done
echo sync >>n || fail "write to a sync file"
echo u >u; chown 1000:1000 u
as_user 1000 -- chattr +d u || fail "the owner sets nodump"
has u d || fail "nodump by the owner not stored"
denied "a non-root owner sets immutable" as_user 1000 -- chattr +i u
denied "a non-owner changes flags" as_user 1001 -- chattr -d u
log "new files and directories take the flags of their directory (compared with the kernel's ext2 below)"
mkdir inh && chattr +S +A +d +D inh || fail "chattr +SAdD on a directory"
touch inh/f && mkdir inh/d || fail "create in a flagged directory"
has inh/f S && has inh/f A && has inh/f d || fail "a new file did not take S, A, d: $(attrs inh/f)"
has inh/f D && fail "a new file took D (only directories do): $(attrs inh/f)"
has inh/d D && has inh/d S || fail "a new directory did not take D and S: $(attrs inh/d)"
ours="$(attrs inh/f) $(attrs inh/d)"
log "chattr changes ctime, and stat shows it at once (generic/277)"
echo c >c; stat -c %z c >/dev/null  # the kernel caches the attributes now
c1=$(stat -c %Z.%z c); sleep 1.1
chattr +A c || fail "chattr +A"
c2=$(stat -c %Z.%z c)
[ "$c1" != "$c2" ] || fail "ctime after chattr still $c1 (the kernel's cached attributes)"
cd /
log "flags survive a remount"
unmount_vnopfs
mount_vnopfs -o allow_other
has "$MNT/f" i && has "$MNT/a" a && has "$MNT/d" i && has "$MNT/n" S || fail "flags lost at remount"
denied "unlink of an immutable file after remount" rm -f "$MNT/f"
unmount_vnopfs
check_image
mount -t ext2 -o loop,ro "$IMG" "$RO" || fail "kernel ext2 could not mount the image"
k=$(attrs "$RO/f")$(attrs "$RO/a")$(attrs "$RO/n")
umount "$RO"
[[ "$k" == *i*a*S* ]] || fail "the kernel's ext2 reads other flags: $k"
mount -t ext2 -o loop "$IMG" "$RO" || fail "kernel ext2 could not mount the image read-write"
touch "$RO/inh/kf" && mkdir "$RO/inh/kd" || { umount "$RO"; fail "create on the kernel's ext2"; }
theirs="$(attrs "$RO/inh/kf") $(attrs "$RO/inh/kd")"
umount "$RO"
log "inherited flags, file and directory: vnopfs $ours, kernel $theirs"
[ "$ours" = "$theirs" ] || fail "inherited flags: vnopfs gives '$ours', the kernel's ext2 '$theirs'"
check_image
log "ok: flags enforced, stored, read back by the kernel"

#!/usr/bin/env bash
# Smoke: a tree of files and directories written through vnopfs (cp -a of real files, nested dirs, modes,
# owners, times), read back through the mount and after a remount, then e2fsck -fn and the kernel's ext2.
source "$(dirname "$0")/../lib/common.sh"
make_image 128M
mount_vnopfs
[ "$(stat -c %i "$MNT")" = 2 ] || fail "root inode is $(stat -c %i "$MNT"), expected ext2's 2"
[ -d "$MNT/lost+found" ] || fail "lost+found missing"
df "$MNT" | grep -q "$IMG" || fail "df does not show the image as the source: $(df "$MNT" | tail -1)"

src=/usr/include/linux
cp -a "$src" "$MNT/linux"
mkdir -p "$MNT/a/b/c/d/e"
echo hello >"$MNT/a/b/c/d/e/f.txt"
head -c 3000000 /dev/urandom >"$MNT/a/random.bin"
cp "$MNT/a/random.bin" "$T/random.bin"
chmod 0640 "$MNT/a/random.bin"
chown 1234:5678 "$MNT/a/b"
touch -d '2001-02-03 04:05:06.789' "$MNT/a/b/c/d/e/f.txt"
diff -r "$src" "$MNT/linux" >/dev/null || fail "cp -a of $src reads back different"
cmp "$T/random.bin" "$MNT/a/random.bin" || fail "random.bin differs"
[ "$(stat -c %a "$MNT/a/random.bin")" = 640 ] || fail "chmod lost"
[ "$(stat -c %u:%g "$MNT/a/b")" = 1234:5678 ] || fail "chown lost"
[ "$(stat -c %Y "$MNT/a/b/c/d/e/f.txt")" = "$(date -d '2001-02-03 04:05:06' +%s)" ] || fail "mtime lost"
df -i "$MNT" >/dev/null && df "$MNT" >/dev/null || fail "statfs failed"

log "remount"
unmount_vnopfs
check_image
mount_vnopfs
diff -r "$src" "$MNT/linux" >/dev/null || fail "after remount, $src differs"
cmp "$T/random.bin" "$MNT/a/random.bin" || fail "after remount, random.bin differs"
[ "$(cat "$MNT/a/b/c/d/e/f.txt")" = hello ] || fail "f.txt lost"
[ "$(stat -c %y "$MNT/a/b/c/d/e/f.txt" | cut -c1-19)" = "2001-02-03 04:05:06" ] ||
  fail "mtime after remount: $(stat -c %y "$MNT/a/b/c/d/e/f.txt")"
rm -rf "$MNT/linux/netfilter"
finish_case

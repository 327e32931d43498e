#!/usr/bin/env bash
# tests/fuzz/make_seeds.sh DIR: the fuzzers' own seed images, made with mke2fs (never e2fsprogs' GPL test
# images): 12 populated images, one per layout (block size 1K/4K x inode size 128/256 x default, no
# resize_inode, no dir_index), with files of a few sizes, an indirect file, a file with holes, a directory
# of 40 entries, fast and slow symlinks, a fifo, xattrs and POSIX ACLs; and an empty 1K-block filesystem. Used by
# scripts/fuzz (the libFuzzer run) and tests/fuzz/smoke.sh (the smoke run in scripts/test). DIR is
# created whole or not at all (made in DIR.new, then renamed).
set -euo pipefail
out=${1:?usage: make_seeds.sh DIR}
[ -d "$out" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$out.new"' EXIT
mkdir -p "$out.new" "$tmp/src/d/e"
# Fixed contents (not /dev/urandom). The images still differ from run to run in the inodes' ctimes (copied
# from the source files, which touch cannot set): a failing input replays from its saved file, and the
# smoke driver's "--seed S --first I" regenerates it only over the same seed directory.
gen() { python3 -c "import sys,random; r=random.Random($1); sys.stdout.buffer.write(bytes(r.getrandbits(8) for _ in range($2)))"; }
for i in 1 2 3; do gen "$i" $((i * 700)) >"$tmp/src/f$i"; done
gen 4 70000 >"$tmp/src/d/indirect"
gen 5 1000 | dd of="$tmp/src/d/holes" bs=1024 seek=300 conv=notrunc status=none
for i in $(seq 1 40); do : >"$tmp/src/d/e/name-$i-with-a-longer-name"; done
ln -s f1 "$tmp/src/link"; ln -s "$(printf 'x%.0s' $(seq 100))" "$tmp/src/d/longlink"
mkfifo "$tmp/src/fifo"
setfattr -n user.a -v hello "$tmp/src/f1" 2>/dev/null || true
setfattr -n user.big -v "$(printf 'y%.0s' $(seq 300))" "$tmp/src/f2" 2>/dev/null || true
# POSIX ACLs (system.posix_acl_access / _default xattrs, parsed by vnops/ext2/acl.cpp): an access ACL and
# a default one; skipped without setfacl.
setfacl -m u:1000:rw,g:100:r "$tmp/src/f3" 2>/dev/null || true
setfacl -d -m u:1000:rwx "$tmp/src/d" 2>/dev/null || true
# Fixed times where they can be fixed: atime and mtime, and mke2fs's own (E2FSPROGS_FAKE_TIME).
find "$tmp/src" -exec touch -h -d @1700000000 {} +
export E2FSPROGS_FAKE_TIME=1700000000
n=0
for bs in 1024 4096; do
  for is in 128 256; do
    for feat in "" "-O ^resize_inode" "-O ^dir_index"; do
      n=$((n + 1))
      size=$([ $bs = 1024 ] && echo 512K || echo 1M)
      # a fixed UUID and hash seed
      # shellcheck disable=SC2086
      mke2fs -q -F -t ext2 -b $bs -I $is $feat -N 64 -U 6f1c2e84-5b1d-4d7e-9a51-000000000$(printf %03d $n) \
        -E hash_seed=6f1c2e84-5b1d-4d7e-9a51-000000000000 -d "$tmp/src" "$out.new/own-$n.img" $size >/dev/null
    done
  done
done
mke2fs -q -F -t ext2 -b 1024 -U 6f1c2e84-5b1d-4d7e-9a51-000000000100 -E hash_seed=6f1c2e84-5b1d-4d7e-9a51-000000000000 \
  "$out.new/own-empty.img" 256K >/dev/null
mv "$out.new" "$out"

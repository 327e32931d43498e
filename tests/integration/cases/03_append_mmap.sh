#!/usr/bin/env bash
# O_APPEND from 4 processes at once (no lost or interleaved record) and shared mmap write + msync read back,
# in each kernel cache mode; with kcache=none a shared mapping fails cleanly with ENODEV.
source "$(dirname "$0")/../lib/common.sh"
make_image 128M

cat >"$T/append.py" <<'PY'
import os, sys
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for i in range(n):
    rec = ("%s %08d " % (tag, i)).encode()
    rec += b"x" * (100 - len(rec) - 1) + b"\n"
    assert os.write(fd, rec) == 100
os.close(fd)
PY
cat >"$T/check_append.py" <<'PY'
import sys, collections
path, procs, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = open(path, "rb").read()
assert len(data) == procs * n * 100, "size %d, expected %d" % (len(data), procs * n * 100)
last = collections.defaultdict(lambda: -1)
for k in range(0, len(data), 100):
    rec = data[k:k + 100]
    tag, seq, pad = rec.split(b" ", 2)
    assert pad == b"x" * (100 - len(tag) - len(seq) - 3) + b"\n", "record at %d torn: %r" % (k, rec)
    seq = int(seq)
    assert seq == last[tag] + 1, "record at %d: %r after %d" % (k, rec, last[tag])
    last[tag] = seq
assert len(last) == procs and all(v == n - 1 for v in last.values()), dict(last)
PY
cat >"$T/mmaptest.py" <<'PY'
import errno, mmap, os, sys
path, mode = sys.argv[1], sys.argv[2]
size = 3 * 1024 * 1024 + 123
with open(path, "wb") as f:
    f.truncate(size)
fd = os.open(path, os.O_RDWR)
try:
    m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
except OSError as e:
    if mode == "none" and e.errno == errno.ENODEV:
        # A private read-only mapping still works on a direct_io file.
        os.write(fd, b"private")
        p = mmap.mmap(fd, 7, mmap.MAP_PRIVATE, mmap.PROT_READ)
        assert p[:7] == b"private", p[:7]
        print("shared mmap refused with ENODEV, as expected with kcache=none")
        sys.exit(0)
    raise
assert mode != "none", "shared mmap of a direct_io file should fail with ENODEV"
pattern = bytes((i * 7 + 3) & 0xff for i in range(4096))
for off in range(0, size - 4096, 4096 * 5):
    m[off:off + 4096] = pattern
m[size - 10:size] = b"0123456789"
m.flush()
m.close()
os.close(fd)
# read back through read(2), with the page cache dropped
os.system("echo 3 > /proc/sys/vm/drop_caches")
data = open(path, "rb").read()
assert len(data) == size
for off in range(0, size - 4096, 4096 * 5):
    assert data[off:off + 4096] == pattern, "page at %d" % off
    assert data[off + 4096:off + 8192] == b"\0" * 4096 or off + 4096 * 5 > size, "hole after %d" % off
assert data[size - 10:] == b"0123456789"
print("mmap ok")
PY

for kc in writethrough none writeback; do
  mount_vnopfs -o kcache=$kc
  f=$MNT/append-$kc.log
  pids=()
  for p in 1 2 3 4; do python3 "$T/append.py" "$f" "p$p" 1500 & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || fail "appender failed ($kc)"; done
  python3 "$T/check_append.py" "$f" 4 1500 || fail "O_APPEND records lost or interleaved ($kc)"
  python3 "$T/mmaptest.py" "$MNT/mmap-$kc.bin" "$kc" || fail "mmap ($kc)"
  unmount_vnopfs
  check_image
  mount_vnopfs -o kcache=$kc
  python3 "$T/check_append.py" "$f" 4 1500 || fail "O_APPEND file after remount ($kc)"
  log "ok: append and mmap with kcache=$kc"
  [ "$kc" = writeback ] || unmount_vnopfs
done
finish_case

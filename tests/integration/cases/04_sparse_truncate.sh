#!/usr/bin/env bash
# Sparse files and SEEK_DATA/SEEK_HOLE, truncate up and down under concurrent reads, fallocate (allocate,
# keep size, punch hole, zero range), copy_file_range, and a 5 GiB sparse file (triple-indirect blocks on 4 KiB ext2).
source "$(dirname "$0")/../lib/common.sh"
make_image 256M
mount_vnopfs

cat >"$T/sparse.py" <<'PY'
import os, sys
d = sys.argv[1]
BS = 4096
p = os.path.join(d, "sparse")
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
# data at [64K, 72K) and [1M, 1M+100), size 2M: holes elsewhere
os.pwrite(fd, b"A" * 8192, 65536)
os.pwrite(fd, b"B" * 100, 1 << 20)
os.ftruncate(fd, 2 << 20)
st = os.fstat(fd)
assert st.st_size == 2 << 20
assert st.st_blocks * 512 <= 4 * 16 * BS, "sparse file allocated %d bytes" % (st.st_blocks * 512)
assert os.lseek(fd, 0, os.SEEK_DATA) == 65536, os.lseek(fd, 0, os.SEEK_DATA)
assert os.lseek(fd, 65536, os.SEEK_HOLE) == 65536 + 8192, os.lseek(fd, 65536, os.SEEK_HOLE)
assert os.lseek(fd, 65536 + 8192, os.SEEK_DATA) == 1 << 20
h = os.lseek(fd, 1 << 20, os.SEEK_HOLE)
assert h == (1 << 20) + BS, h
assert os.lseek(fd, (1 << 20) + BS, os.SEEK_HOLE) == (1 << 20) + BS
try:
    os.lseek(fd, (1 << 20) + BS, os.SEEK_DATA)
    raise AssertionError("SEEK_DATA past the last data should be ENXIO")
except OSError as e:
    assert e.errno == 6, e
assert os.lseek(fd, (2 << 20) - 1, os.SEEK_HOLE) == (2 << 20) - 1  # inside a hole: itself
data = os.pread(fd, 2 << 20, 0)
assert data[:65536] == b"\0" * 65536 and data[65536:65536 + 8192] == b"A" * 8192
assert data[65536 + 8192:1 << 20] == b"\0" * ((1 << 20) - 65536 - 8192)
assert data[1 << 20:(1 << 20) + 100] == b"B" * 100 and data[(1 << 20) + 100:] == b"\0" * ((1 << 20) - 100)

# fallocate: allocate keeps zeros, KEEP_SIZE does not grow, punch hole zeroes and frees
q = os.path.join(d, "falloc")
fd2 = os.open(q, os.O_RDWR | os.O_CREAT, 0o644)
os.posix_fallocate(fd2, 0, 1 << 20)
st = os.fstat(fd2)
assert st.st_size == 1 << 20 and st.st_blocks * 512 >= 1 << 20, (st.st_size, st.st_blocks)
assert os.pread(fd2, 1 << 20, 0) == b"\0" * (1 << 20)
os.pwrite(fd2, b"C" * (1 << 20), 0)
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
KEEP, PUNCH = 1, 2
assert libc.fallocate(fd2, KEEP, 1 << 20, 1 << 20) == 0, ctypes.get_errno()
assert os.fstat(fd2).st_size == 1 << 20
before = os.fstat(fd2).st_blocks
assert libc.fallocate(fd2, KEEP | PUNCH, 8192, 3 * 4096) == 0, ctypes.get_errno()
assert os.fstat(fd2).st_blocks < before
got = os.pread(fd2, 1 << 20, 0)
assert got[:8192] == b"C" * 8192 and got[8192:8192 + 12288] == b"\0" * 12288 and got[8192 + 12288:] == b"C" * ((1 << 20) - 20480)
assert os.lseek(fd2, 8192, os.SEEK_HOLE) == 8192
# ZERO_RANGE: zeros, every block of the range mapped again (the punched hole too), the size kept with
# KEEP_SIZE and grown to the range's end without it
ZERO_RANGE = 0x10
assert libc.fallocate(fd2, ZERO_RANGE | KEEP, 4096 + 100, 30000) == 0, ctypes.get_errno()
got = os.pread(fd2, 1 << 20, 0)
want = b"C" * (4096 + 100) + b"\0" * 30000
want += b"C" * ((1 << 20) - len(want))
assert os.fstat(fd2).st_size == 1 << 20
assert got == want, "zero range inside EOF"
assert os.lseek(fd2, 0, os.SEEK_HOLE) == 1 << 20, os.lseek(fd2, 0, os.SEEK_HOLE)
assert libc.fallocate(fd2, ZERO_RANGE, (1 << 20) - 10, 8192) == 0, ctypes.get_errno()
assert os.fstat(fd2).st_size == (1 << 20) - 10 + 8192, os.fstat(fd2).st_size
assert os.pread(fd2, 8192 + 20, (1 << 20) - 20) == b"C" * 10 + b"\0" * 8192
assert os.lseek(fd2, (1 << 20) - 10, os.SEEK_HOLE) == (1 << 20) - 10 + 8192
# a mode neither the kernel's FUSE nor ext2 serves (INSERT_RANGE) is EOPNOTSUPP, never EINVAL
r = libc.fallocate(fd2, 0x20, 0, 4096)
assert r == -1 and ctypes.get_errno() == 95, ctypes.get_errno()
os.close(fd2)

# copy_file_range
c = os.path.join(d, "copy")
fd3 = os.open(c, os.O_RDWR | os.O_CREAT, 0o644)
n = os.copy_file_range(fd, fd3, 2 << 20, 0, 0)
assert n > 0
while n < 2 << 20:
    k = os.copy_file_range(fd, fd3, (2 << 20) - n, n, n)
    assert k > 0
    n += k
assert os.pread(fd3, 2 << 20, 0) == data
os.close(fd3)
os.close(fd)
print("sparse ok")
PY
python3 "$T/sparse.py" "$MNT" || fail "sparse/seek/fallocate"

# truncate up and down while readers read: every byte read is the file's pattern or a zero
cat >"$T/trunc.py" <<'PY'
import os, sys, time, multiprocessing as mp
p = sys.argv[1]
N = 4 << 20
pat = bytes((i * 31 + 7) & 0xff for i in range(N))
with open(p, "wb") as f:
    f.write(pat)
def reader(stop):
    fd = os.open(p, os.O_RDONLY)
    while not stop.is_set():
        for off in (0, 1 << 20, 3 << 20):
            b = os.pread(fd, 65536, off)
            for i in range(0, len(b), 997):
                if b[i] != 0 and b[i] != pat[off + i]:
                    print("reader saw garbage at", off + i); os._exit(1)
    os._exit(0)
stop = mp.Event()
rs = [mp.Process(target=reader, args=(stop,)) for _ in range(3)]
for r in rs: r.start()
fd = os.open(p, os.O_RDWR)
for k in range(40):
    os.ftruncate(fd, (k % 5) * (1 << 20) + 12345)
    os.ftruncate(fd, N)
    os.pwrite(fd, pat[(k % 5) << 20:], (k % 5) << 20)
stop.set()
for r in rs:
    r.join()
    assert r.exitcode == 0
os.ftruncate(fd, 1000001)
assert os.fstat(fd).st_size == 1000001
os.ftruncate(fd, 3000000)
b = os.pread(fd, 3000000, 0)
assert b[:1000001] == pat[:1000001] and b[1000001:] == b"\0" * 1999999
print("truncate ok")
PY
python3 "$T/trunc.py" "$MNT/trunc" || fail "truncate under reads"

# 5 GiB sparse file: data at the start, in the middle and at the very end
big=$MNT/big
python3 - "$big" <<'PY' || fail "5 GiB sparse file"
import os, sys
p = sys.argv[1]
G = 1 << 30
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
for off, tag in ((0, b"start"), (4 * G + 12345, b"past-4GiB"), (5 * G - 3, b"end")):
    os.pwrite(fd, tag, off)
os.fsync(fd)
st = os.fstat(fd)
assert st.st_size == 5 * G, st.st_size
assert st.st_blocks * 512 < 64 << 20, st.st_blocks
assert os.pread(fd, 9, 4 * G + 12345) == b"past-4GiB"
assert os.pread(fd, 3, 5 * G - 3) == b"end"
assert os.pread(fd, 16, 3 * G) == b"\0" * 16
assert os.lseek(fd, 4096, os.SEEK_DATA) == 4 * G + 12288, os.lseek(fd, 4096, os.SEEK_DATA)
os.close(fd)
PY
unmount_vnopfs
check_image
mount_vnopfs -o kcache=none
[ "$(stat -c %s "$big")" = $((5 << 30)) ] || fail "5 GiB file size after remount"
[ "$(dd if="$big" bs=1 skip=$(( (5 << 30) - 3 )) count=3 2>/dev/null)" = end ] || fail "5 GiB file tail after remount"
finish_case

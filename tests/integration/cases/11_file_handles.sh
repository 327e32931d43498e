#!/usr/bin/env bash
# File handles (name_to_handle_at / open_by_handle_at, what NFS export uses) stay valid after the kernel
# has forgotten the inodes (drop_caches): the frontend answers lookups of "." and ".." for any inode
# number through VFS_VGET. A handle of a deleted file is ESTALE.
source "$(dirname "$0")/../lib/common.sh"
make_image 64M
mount_vnopfs
mkdir -p "$MNT/a/b"
echo "through a handle" >"$MNT/a/b/file"
echo "doomed" >"$MNT/a/gone"
python3 - "$MNT" <<'PY' || fail "file handles"
import ctypes, errno, os, sys
m = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
class FH(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("f_handle", ctypes.c_ubyte * 128)]
def handle(p):
    fh = FH(); fh.handle_bytes = 128; mid = ctypes.c_int()
    if libc.name_to_handle_at(-100, p.encode(), ctypes.byref(fh), ctypes.byref(mid), 0) != 0:
        raise OSError(ctypes.get_errno(), "name_to_handle_at " + p)
    return fh
def open_h(fh, flags=os.O_RDONLY):
    mfd = os.open(m, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = libc.open_by_handle_at(mfd, ctypes.byref(fh), flags)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "open_by_handle_at")
        return fd
    finally:
        os.close(mfd)
hf, hd, hg = handle(m + "/a/b/file"), handle(m + "/a/b"), handle(m + "/a/gone")
os.unlink(m + "/a/gone")
for round in range(2):
    open("/proc/sys/vm/drop_caches", "w").write("3")
    fd = open_h(hf)
    assert os.read(fd, 100) == b"through a handle\n"
    os.close(fd)
    dfd = open_h(hd, os.O_RDONLY | os.O_DIRECTORY)
    assert os.listdir(dfd) == ["file"], os.listdir(dfd)
    # ".." of a directory found by handle: the kernel looks it up on the forgotten inode
    pfd = os.open("..", os.O_RDONLY, dir_fd=dfd)
    assert sorted(os.listdir(pfd)) == ["b"], os.listdir(pfd)
    os.close(pfd); os.close(dfd)
    try:
        open_h(hg)
        raise AssertionError("a deleted file's handle opened")
    except OSError as e:
        assert e.errno == errno.ESTALE, e
print("file handles ok")
PY
finish_case

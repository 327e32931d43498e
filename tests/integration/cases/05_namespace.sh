#!/usr/bin/env bash
# Namespace: hard links, fast and slow symlinks, rename over files and directories, RENAME_NOREPLACE,
# RENAME_EXCHANGE and RENAME_WHITEOUT, xattrs, open-unlinked files, fifos, sockets and device nodes, long
# names, and a directory of 50,000 entries (readdir offsets under deletion).
source "$(dirname "$0")/../lib/common.sh"
make_image 256M -N 120000
mount_vnopfs

python3 - "$MNT" <<'PY' || fail "namespace operations"
import ctypes, errno, os, socket, stat, sys
d = sys.argv[1]
j = lambda *a: os.path.join(d, *a)
libc = ctypes.CDLL(None, use_errno=True)
def renameat2(a, b, flags):
    AT_FDCWD = -100
    r = libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags)
    if r != 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e), a)
NOREPLACE, EXCHANGE = 1, 2
def expect(err, fn, *a):
    try:
        fn(*a)
    except OSError as e:
        assert e.errno == err, "%s%r: errno %d, expected %d" % (fn.__name__, a, e.errno, err)
        return
    raise AssertionError("%s%r succeeded, expected errno %d" % (fn.__name__, a, err))

# hard links
open(j("f"), "w").write("file f")
os.link(j("f"), j("f2"))
os.mkdir(j("sub"))
os.link(j("f"), j("sub", "f3"))
assert os.stat(j("f")).st_nlink == 3 and os.stat(j("f")).st_ino == os.stat(j("sub", "f3")).st_ino
expect(errno.EEXIST, os.link, j("f"), j("f2"))
expect(errno.EPERM, os.link, j("sub"), j("sublink"))
os.unlink(j("f2"))
assert os.stat(j("f")).st_nlink == 2

# symlinks: fast (< 60 bytes, in the inode), slow (a block), too long, dangling
os.symlink("f", j("fast"))
slow = "x/" * 100 + "target"
os.symlink(slow, j("slow"))
assert os.readlink(j("fast")) == "f" and os.readlink(j("slow")) == slow
assert open(j("fast")).read() == "file f"
os.symlink("/nonexistent/" + "y" * 40, j("dangling"))
expect(errno.ENOENT, os.stat, j("dangling"))
assert os.lstat(j("dangling")).st_size == 53
expect(errno.ENAMETOOLONG, os.symlink, "z" * 5000, j("toolong"))
expect(errno.ENAMETOOLONG, open, j("n" * 256), "w")
open(j("n" * 255), "w").write("long name")
expect(errno.ENAMETOOLONG, os.rename, j("n" * 255), j("m" * 256))

# rename: over a file, over an empty dir, a dir into another, errors as Linux
open(j("a"), "w").write("A")
open(j("b"), "w").write("B")
os.rename(j("a"), j("b"))
assert open(j("b")).read() == "A" and not os.path.exists(j("a"))
os.mkdir(j("d1")); os.mkdir(j("d2")); open(j("d1", "in"), "w").write("in d1")
os.rename(j("d1"), j("d2"))
assert open(j("d2", "in")).read() == "in d1" and not os.path.exists(j("d1"))
os.mkdir(j("d3")); os.mkdir(j("d3", "child"))
os.rename(j("d3", "child"), j("d2", "moved"))
assert os.stat(j("d3")).st_nlink == 2 and os.stat(j("d2")).st_nlink == 3
assert os.stat(j("d2", "moved", "..")).st_ino == os.stat(j("d2")).st_ino
os.mkdir(j("full")); open(j("full", "x"), "w").close()
expect(errno.ENOTEMPTY, os.rename, j("d3"), j("full"))
expect(errno.ENOTDIR, os.rename, j("d3"), j("b"))
expect(errno.EISDIR, os.rename, j("b"), j("d3"))
expect(errno.EINVAL, os.rename, j("d2"), j("d2", "moved", "inside"))
expect(errno.ENOENT, os.rename, j("nope"), j("x"))
# RENAME_NOREPLACE and RENAME_EXCHANGE (file<->dir across directories too)
open(j("c"), "w").write("C")
expect(errno.EEXIST, renameat2, j("b"), j("c"), NOREPLACE)
renameat2(j("c"), j("c2"), NOREPLACE)
renameat2(j("b"), j("c2"), EXCHANGE)
assert open(j("b")).read() == "C" and open(j("c2")).read() == "A"
renameat2(j("c2"), j("d2"), EXCHANGE)
assert os.path.isdir(j("c2")) and open(j("d2")).read() == "A"
assert os.stat(j("c2", "moved", "..")).st_ino == os.stat(j("c2")).st_ino
expect(errno.ENOENT, renameat2, j("b"), j("nothere"), EXCHANGE)
# RENAME_WHITEOUT (overlayfs's): the old name is left naming a character device 0:0 without permission
# bits; a file over an existing name, and a directory across directories
WHITEOUT = 4
open(j("wsrc"), "w").write("W")
open(j("wold"), "w").write("old")
ino = os.stat(j("wsrc")).st_ino
expect(errno.EINVAL, renameat2, j("wsrc"), j("wold"), WHITEOUT | EXCHANGE)
expect(errno.EEXIST, renameat2, j("wsrc"), j("wold"), WHITEOUT | NOREPLACE)
renameat2(j("wsrc"), j("wold"), WHITEOUT)
st = os.lstat(j("wsrc"))
assert stat.S_ISCHR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0 and st.st_rdev == 0, st
assert st.st_ino != ino and st.st_nlink == 1, st
assert open(j("wold")).read() == "W" and os.stat(j("wold")).st_ino == ino
os.mkdir(j("wdir"))
open(j("wdir", "x"), "w").write("x")
links = os.stat(d).st_nlink
renameat2(j("wdir"), j("sub", "wdir"), WHITEOUT | NOREPLACE)
assert stat.S_ISCHR(os.lstat(j("wdir")).st_mode)
assert open(j("sub", "wdir", "x")).read() == "x"
assert os.stat(d).st_nlink == links - 1 and os.stat(j("sub", "wdir", "..")).st_ino == os.stat(j("sub")).st_ino

# xattrs
os.setxattr(j("b"), "user.color", b"blue")
os.setxattr(j("b"), "user.big", os.urandom(3000))
os.setxattr(j("c2"), "user.dir", b"")
os.setxattr(j("fast"), "trusted.link", b"on a symlink", follow_symlinks=False)
assert os.getxattr(j("b"), "user.color") == b"blue"
assert sorted(os.listxattr(j("b"))) == ["user.big", "user.color"]
expect(errno.EEXIST, os.setxattr, j("b"), "user.color", b"red", os.XATTR_CREATE)
expect(errno.ENODATA, os.setxattr, j("b"), "user.none", b"red", os.XATTR_REPLACE)
os.setxattr(j("b"), "user.color", b"red", os.XATTR_REPLACE)
assert os.getxattr(j("b"), "user.color") == b"red"
expect(errno.ENODATA, os.getxattr, j("b"), "user.none")
expect(errno.ENODATA, os.removexattr, j("b"), "user.none")
os.setxattr(j("f"), "user.gone", b"1"); os.removexattr(j("f"), "user.gone")
assert os.listxattr(j("f")) == []
# shared xattr block: two files with the same xattrs
os.setxattr(j("sub", "f3"), "user.same", b"v")

# open-unlinked files: data and fstat survive the unlink; the inode goes at close
fd = os.open(j("ghost"), os.O_RDWR | os.O_CREAT, 0o600)
os.write(fd, b"boo" * 10000)
os.unlink(j("ghost"))
assert os.fstat(fd).st_nlink == 0
os.pwrite(fd, b"late", 50000)
assert os.pread(fd, 3, 0) == b"boo" and os.pread(fd, 4, 50000) == b"late"
os.fsync(fd)
os.close(fd)
# an open directory that rename replaced stays usable
os.mkdir(j("victim")); os.mkdir(j("winner"))
dfd = os.open(j("victim"), os.O_RDONLY | os.O_DIRECTORY)
os.rename(j("winner"), j("victim"))
st = os.fstat(dfd)
assert st.st_nlink == 0 or stat.S_ISDIR(st.st_mode)
os.close(dfd)

# special files
os.mkfifo(j("fifo"), 0o640)
os.mknod(j("null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
os.mknod(j("loopdev"), 0o660 | stat.S_IFBLK, os.makedev(7, 0))
s = socket.socket(socket.AF_UNIX); s.bind(j("sock")); s.close()
assert stat.S_ISFIFO(os.stat(j("fifo")).st_mode) and stat.S_ISSOCK(os.stat(j("sock")).st_mode)
assert os.stat(j("null")).st_rdev == os.makedev(1, 3) and stat.S_ISBLK(os.stat(j("loopdev")).st_mode)
# rmdir / unlink errors
expect(errno.ENOTEMPTY, os.rmdir, j("full"))
expect(errno.ENOTDIR, os.rmdir, j("b"))
expect(errno.EISDIR, os.unlink, j("full"))
expect(errno.EEXIST, os.mkdir, j("full"))
print("namespace ok")
PY

log "50,000 entries"
python3 - "$MNT/big" <<'PY' || fail "50,000-entry directory"
import os, sys
d = sys.argv[1]
os.mkdir(d)
N = 50000
for i in range(N):
    os.close(os.open(os.path.join(d, "entry-%06d-%s" % (i, "p" * (i % 40))), os.O_CREAT | os.O_WRONLY, 0o644))
names = os.listdir(d)
assert len(names) == N, len(names)
# delete every third entry while reading the directory: no entry twice, none of the survivors missed
survivors = set()
with os.scandir(d) as it:
    for k, e in enumerate(it):
        if k % 3 == 0:
            os.unlink(e.path)
        else:
            survivors.add(e.name)
left = os.listdir(d)
assert len(left) == len(set(left)), "duplicates after deletion"
assert survivors <= set(left), "missed %d" % len(survivors - set(left))
assert len(left) == N - (N + 2) // 3, len(left)
print("big dir ok:", len(left))
PY
finish_case

#!/usr/bin/env python3
"""manifest.py DIR: one line per file under DIR, sorted: path, type, mode, uid, gid, size, nlink, rdev,
symlink target, xattrs (name=sha256 of value; system.posix_acl_* included), sha256 of regular files. Times are left out: they are not
expected to match across drivers. Used on the vnopfs mount and on the kernel's ext2 mount of the image."""
import hashlib, os, stat, sys

root = sys.argv[1]

def xattrs(p):
    try:
        names = sorted(os.listxattr(p, follow_symlinks=False))
    except OSError:
        return ""
    out = []
    for n in names:
        # POSIX ACLs are compared (both drivers give the user-space posix_acl_xattr form); other system.*
        # names and SELinux labels belong to the host, not to the image.
        if (n.startswith("system.") and not n.startswith("system.posix_acl_")) or n.startswith("security.selinux"):
            continue
        try:
            v = os.getxattr(p, n, follow_symlinks=False)
        except OSError as e:
            v = ("error %d" % e.errno).encode()
        out.append("%s=%s" % (n, hashlib.sha256(v).hexdigest()[:16]))
    return ",".join(out)

def digest(p):
    h = hashlib.sha256()
    size = os.path.getsize(p)
    if size > (256 << 20):
        # Big sparse files: hash the data segments (SEEK_DATA/SEEK_HOLE) with their offsets.
        fd = os.open(p, os.O_RDONLY)
        try:
            off = 0
            while off < size:
                try:
                    off = os.lseek(fd, off, os.SEEK_DATA)
                except OSError:
                    break
                end = os.lseek(fd, off, os.SEEK_HOLE)
                h.update(b"@%d:" % off)
                while off < end:
                    b = os.pread(fd, min(1 << 20, end - off), off)
                    if not b:
                        break
                    h.update(b)
                    off += len(b)
        finally:
            os.close(fd)
        return "segments:" + h.hexdigest()
    with open(p, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()

lines = []
for dirpath, dirnames, filenames in os.walk(root):
    for name in sorted(dirnames + filenames) + ([] if dirpath != root else ["."]):
        p = os.path.join(dirpath, name) if name != "." else root
        rel = os.path.relpath(p, root)
        st = os.lstat(p)
        kind = stat.S_IFMT(st.st_mode)
        extra = ""
        if stat.S_ISLNK(st.st_mode):
            extra = "-> " + os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            extra = digest(p)
        rdev = "%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev)) if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "-"
        size = st.st_size
        lines.append("%s %o %o %d %d %s %d %s %s [%s]" % (rel, kind >> 12, stat.S_IMODE(st.st_mode), st.st_uid,
                     st.st_gid, size, st.st_nlink, rdev, extra, xattrs(p)))
for l in sorted(lines):
    print(l)

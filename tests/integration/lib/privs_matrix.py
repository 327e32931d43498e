#!/usr/bin/env python3
"""The privilege-clearing matrix (case 20): which of S_ISUID, S_ISGID and security.capability survive a
write, truncate, open(O_TRUNC), fallocate or chown, by which caller, on which file.

  privs_matrix.py setup DIR          as root: one file per case, uid 1000 gid 2000, its mode, maybe a capability
  privs_matrix.py run WRITER DIR     as that writer: the operation on each of its cases; prints case + errno
  privs_matrix.py report DIR         as root: case, mode, capability present

Run the same on the reference (the kernel's ext2 on a loop mount) and on vnopfs and diff the outputs. DIR
holds the cases of every operation; the caller may pass a different DIR per operation (fallocate needs a
filesystem that has it: the kernel's ext2 has not) with `--op-dir OP=DIR`.
"""
import errno
import os
import struct
import sys

WRITERS = ["owner", "other", "member", "root", "root-nofsetid", "other-fsetid"]
MODES = [0o666, 0o4666, 0o2666, 0o2676, 0o6666, 0o6676, 0o4777]
OPS = ["write", "truncate", "otrunc", "fallocate", "chown"]
CAP = "security.capability"
# VFS_CAP_REVISION_2 with the effective flag, permitted = CAP_NET_RAW (13), no inheritable.
CAP_VALUE = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


def cases():
    for w in WRITERS:
        for m in MODES:
            for c in (False, True):
                for op in OPS:
                    yield w, m, c, op


def name(w, m, c, op):
    return "%s.%04o.%s.%s" % (w, m, "cap" if c else "nocap", op)


def dirs(argv):
    base, per_op = None, {}
    it = iter(argv)
    for a in it:
        if a == "--op-dir":
            op, d = next(it).split("=", 1)
            per_op[op] = d
        else:
            base = a
    return lambda op: per_op.get(op, base)


def setup(where):
    for w, m, c, op in cases():
        p = os.path.join(where(op), name(w, m, c, op))
        with open(p, "wb") as f:
            f.write(b"0123456789" * 100)
        os.chown(p, 1000, 2000)
        os.chmod(p, m)  # after chown: chown would clear the bits
        if c:
            os.setxattr(p, CAP, CAP_VALUE)


def run(writer, where):
    for w, m, c, op in cases():
        if w != writer:
            continue
        p = os.path.join(where(op), name(w, m, c, op))
        err = 0
        try:
            if op == "write":
                fd = os.open(p, os.O_WRONLY)
                try:
                    os.pwrite(fd, b"x", 5)
                finally:
                    os.close(fd)
            elif op == "truncate":
                os.truncate(p, 10)
            elif op == "otrunc":
                os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))
            elif op == "fallocate":
                fd = os.open(p, os.O_WRONLY)
                try:
                    os.posix_fallocate(fd, 0, 16384)
                finally:
                    os.close(fd)
            elif op == "chown":
                os.chown(p, -1, 1000)
        except OSError as e:
            err = e.errno
        print("%s %s" % (name(w, m, c, op), errno.errorcode.get(err, "ok") if err else "ok"))


def report(where):
    for w, m, c, op in cases():
        p = os.path.join(where(op), name(w, m, c, op))
        st = os.stat(p)
        try:
            os.getxattr(p, CAP)
            cap = "cap"
        except OSError as e:
            if e.errno != errno.ENODATA:
                raise
            cap = "-"
        print("%s mode=%04o gid=%d %s" % (name(w, m, c, op), st.st_mode & 0o7777, st.st_gid, cap))


def main():
    cmd = sys.argv[1]
    if cmd == "setup":
        setup(dirs(sys.argv[2:]))
    elif cmd == "run":
        run(sys.argv[2], dirs(sys.argv[3:]))
    elif cmd == "report":
        report(dirs(sys.argv[2:]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()

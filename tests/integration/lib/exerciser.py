#!/usr/bin/env python3
"""exerciser.py MNT REF [--seed N] [--ops N]: random file operations applied to the vnopfs mount and, the
same op in lockstep, to a reference directory on the host filesystem. Every op's result (value or errno)
must match, and so must the final trees (type, mode, size, nlink, symlink target, bytes). Prints the seed;
replay with --seed. Directory sizes and times are not compared (they differ between filesystems)."""
import argparse, errno, hashlib, os, random, stat, sys

ap = argparse.ArgumentParser()
ap.add_argument("mnt"); ap.add_argument("ref")
ap.add_argument("--seed", type=int, default=None)
ap.add_argument("--ops", type=int, default=3000)
a = ap.parse_args()
seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 31)
print("exerciser seed %d (replay: --seed %d --ops %d)" % (seed, seed, a.ops), flush=True)
rng = random.Random(seed)
ROOTS = [a.mnt, a.ref]
NAMES = ["a", "b", "c", "dd", "e" * 30, "f.txt", "g" * 200]

def paths():
    """All relative paths under the reference tree (the model of what exists)."""
    out = [""]
    for dp, dn, fn in os.walk(a.ref):
        rel = os.path.relpath(dp, a.ref)
        rel = "" if rel == "." else rel
        for n in dn + fn:
            out.append(os.path.join(rel, n))
    return out

def pick_dir():
    ds = [p for p in paths() if p == "" or (os.path.isdir(os.path.join(a.ref, p)) and not os.path.islink(os.path.join(a.ref, p)))]
    return rng.choice(ds)

def pick_any():
    ps = paths()[1:]
    return rng.choice(ps) if ps else rng.choice(NAMES)

def new_path():
    d = pick_dir()
    if d.count("/") > 4:
        d = ""
    return os.path.join(d, rng.choice(NAMES))

def run(fn):
    out = []
    for r in ROOTS:
        try:
            out.append(("ok", fn(r)))
        except OSError as e:
            out.append(("err", errno.errorcode.get(e.errno, e.errno)))
    return out

fds = {}  # key -> (fd_mnt, fd_ref)

def op_write(p):
    data = rng.randbytes(rng.choice([1, 100, 4096, 5000, 70000]))
    off = rng.choice([0, 1, 4095, 4096, 12345, 1 << 20, rng.randrange(1 << 21)])
    append = rng.random() < 0.2
    def f(r):
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else 0)
        fd = os.open(os.path.join(r, p), flags, 0o644)
        try:
            return os.pwrite(fd, data, off) if not append else os.write(fd, data)
        finally:
            os.close(fd)
    return f

def op_read(p):
    off = rng.choice([0, 100, 4096, rng.randrange(1 << 21)]); n = rng.choice([1, 4096, 100000])
    def f(r):
        fd = os.open(os.path.join(r, p), os.O_RDONLY)
        try:
            return hashlib.sha256(os.pread(fd, n, off)).hexdigest()
        finally:
            os.close(fd)
    return f

def op_truncate(p):
    n = rng.choice([0, 1, 4095, 4097, 100000, 3 << 20])
    return lambda r: os.truncate(os.path.join(r, p), n)

def op_stat(p):
    def f(r):
        st = os.lstat(os.path.join(r, p))
        size = st.st_size if not stat.S_ISDIR(st.st_mode) else 0
        return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), size, st.st_nlink)
    return f

def op_listdir(p):
    return lambda r: sorted(os.listdir(os.path.join(r, p)))

OPS = [
    (14, lambda: ("write", op_write(new_path() if rng.random() < 0.3 else pick_any()))),
    (8, lambda: ("read", op_read(pick_any()))),
    (5, lambda: ("truncate", op_truncate(pick_any()))),
    (8, lambda: ("stat", op_stat(pick_any()))),
    (4, lambda: ("listdir", op_listdir(pick_dir()))),
    (6, lambda: (lambda p: ("mkdir", lambda r: os.mkdir(os.path.join(r, p), 0o755)))(new_path())),
    (3, lambda: (lambda p: ("rmdir", lambda r: os.rmdir(os.path.join(r, p))))(pick_any())),
    (5, lambda: (lambda p: ("unlink", lambda r: os.unlink(os.path.join(r, p))))(pick_any())),
    (6, lambda: (lambda s, d: ("rename", lambda r: os.rename(os.path.join(r, s), os.path.join(r, d))))(pick_any(), new_path() if rng.random() < 0.5 else pick_any())),
    (3, lambda: (lambda s, d: ("link", lambda r: os.link(os.path.join(r, s), os.path.join(r, d))))(pick_any(), new_path())),
    (3, lambda: (lambda t, d: ("symlink", lambda r: os.symlink(t, os.path.join(r, d))))(rng.choice(NAMES + ["../x", "a/b/c"]), new_path())),
    (2, lambda: (lambda p: ("readlink", lambda r: os.readlink(os.path.join(r, p))))(pick_any())),
    (3, lambda: (lambda p, m: ("chmod", lambda r: os.chmod(os.path.join(r, p), m, follow_symlinks=False) if not os.path.islink(os.path.join(r, p)) else None))(pick_any(), rng.choice([0o600, 0o644, 0o755, 0o4755, 0o1777]))),
]
total = sum(w for w, _ in OPS)

def choose():
    x = rng.randrange(total)
    for w, mk in OPS:
        if x < w:
            return mk()
        x -= w

for i in range(a.ops):
    name, fn = choose()
    res = run(fn)
    if res[0] != res[1]:
        print("MISMATCH at op %d (%s): vnopfs %r, reference %r (seed %d)" % (i, name, res[0], res[1], seed))
        sys.exit(1)

def tree(root):
    out = {}
    for dp, dn, fn in os.walk(root):
        for n in dn + fn:
            p = os.path.join(dp, n); rel = os.path.relpath(p, root)
            st = os.lstat(p)
            v = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_nlink]
            if stat.S_ISREG(st.st_mode):
                v += [st.st_size, hashlib.sha256(open(p, "rb").read()).hexdigest()]
            elif stat.S_ISLNK(st.st_mode):
                v += [os.readlink(p)]
            out[rel] = v
    return out

tm = tree(a.mnt); tm.pop("lost+found", None)
tr = tree(a.ref)
if tm != tr:
    for k in sorted(set(tm) | set(tr)):
        if tm.get(k) != tr.get(k):
            print("TREE DIFFERS at %s: vnopfs %r, reference %r" % (k, tm.get(k), tr.get(k)))
    print("seed %d" % seed)
    sys.exit(1)
print("exerciser: %d ops, trees match (%d entries), seed %d" % (a.ops, len(tr), seed))

#!/usr/bin/env python3
"""meta.py: create, stat and unlink COUNT empty files under DIR; prints one JSON object.

    meta.py DIR COUNT spread|onedir CAP_SECONDS

spread: the files are spread over directories of 1,000 entries (made before timing starts);
onedir: all of them in one directory, so the directory grows to COUNT entries.
Each phase stops after COUNT files or CAP_SECONDS, whichever comes first; stat and unlink work on the
files the create phase made. The rate of a phase is files done / seconds taken. The create rates of the
first and of the last 1,000 files (create_first_step_ops, create_last_step_ops) show whether create slows
down as the directory grows. A phase also ends early, and says so ("stopped"), when the file system runs
out of file descriptors or space (EMFILE, ENFILE, EBADF, ENOSPC).
"""
import errno
import json
import os
import sys
import time


def main():
    top, count, layout, cap = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    per_dir = 1000 if layout == "spread" else count
    dirs = []
    for d in range((count + per_dir - 1) // per_dir):
        p = os.path.join(top, "d%03d" % d)
        os.mkdir(p)
        dirs.append(p)
    names = [os.path.join(dirs[i // per_dir], "f%06d" % i) for i in range(count)]
    out = {"layout": layout, "count": count, "cap_seconds": cap}
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY

    step = min(1000, max(1, count // 10))
    marks = []
    t0 = time.monotonic()
    deadline = t0 + cap
    made = 0
    stopped = {}
    for n in names:
        try:
            os.close(os.open(n, flags, 0o644))
        except OSError as e:
            stopped["create"] = limit_error(e)
            break
        made += 1
        if made % step == 0:
            marks.append(time.monotonic())
        if made % 64 == 0 and time.monotonic() > deadline:
            break
    t1 = time.monotonic()
    out["create"] = phase(made, t1 - t0, count, stopped.get("create"))
    if len(marks) >= 2:
        out["create_step"] = step
        out["create_first_step_ops"] = step / (marks[0] - t0)
        out["create_last_step_ops"] = step / (marks[-1] - marks[-2])

    for name, fn in (("stat", os.stat), ("unlink", os.unlink)):
        t0 = time.monotonic()
        deadline = t0 + cap
        done = 0
        for n in names[:made]:
            try:
                fn(n)
            except OSError as e:
                stopped[name] = limit_error(e)
                break
            done += 1
            if done % 64 == 0 and time.monotonic() > deadline:
                break
        out[name] = phase(done, time.monotonic() - t0, made, stopped.get(name))
    print(json.dumps(out))


def limit_error(e):
    """A file system that runs out of a resource (passthrough_ll keeps one fd per inode it knows, so it
    fails with EMFILE or EBADF near RLIMIT_NOFILE inodes) ends the phase like the time cap; others fail."""
    if e.errno in (errno.EMFILE, errno.ENFILE, errno.EBADF, errno.ENOSPC):
        return "%s after the files counted" % errno.errorcode[e.errno]
    raise e


def phase(done, secs, wanted, stopped=None):
    r = {"files": done, "seconds": secs, "ops": done / secs if secs > 0 else 0.0, "complete": done == wanted}
    if stopped:
        r["stopped"] = stopped
    return r


if __name__ == "__main__":
    main()

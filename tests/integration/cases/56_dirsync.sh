#!/usr/bin/env bash
# dirsync (vnops/ext2/dirsync.cpp): with -o dirsync, and in a chattr +D directory on an ordinary mount,
# every create, mkdir, symlink, link, rename, unlink and rmdir is on the image when it returns. A writer
# logs each op before ("begin") and after ("done") it; the daemon is SIGKILLed mid-run with a dirty cache
# and nothing ever fsync'd; after e2fsck -fy the kernel's ext2 must show the tree every completed op left
# (the op in flight at the kill may have happened or not), and no removed name may be back. New
# directories under the +D one inherit +D.
# VNOPFS_DIRSYNC_CONTROL=1 runs the same without dirsync, which must fail (names lost).
source "$(dirname "$0")/../lib/common.sh"

cat >"$T/ops.py" <<'PY'
import os, random, sys
root, ledger, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
led = open(ledger, "a", buffering=1)
files, dirs, k = [], [""], 0
def p(rel): return os.path.join(root, rel)
try:
    while True:
        k += 1
        op = rng.random()
        d = rng.choice(dirs)
        new = os.path.join(d, "n%d" % k)
        if op < 0.35 or not files:
            kind = rng.choice(["file", "dir", "symlink"])
            led.write("begin %s %s\n" % (kind, new))
            if kind == "file":
                with open(p(new), "wb") as f: f.write(b"x" * rng.choice([0, 100, 5000]))
                files.append(new)
            elif kind == "dir":
                os.mkdir(p(new)); dirs.append(new)
            else:
                os.symlink("t" * rng.choice([5, 300]), p(new)); files.append(new)
        elif op < 0.5:
            src = rng.choice(files)
            led.write("begin link %s %s\n" % (src, new))
            os.link(p(src), p(new), follow_symlinks=False); files.append(new)
        elif op < 0.75:
            src = rng.choice(files)
            led.write("begin rename %s %s\n" % (src, new))
            os.rename(p(src), p(new)); files.remove(src); files.append(new)
        elif op < 0.95:
            src = rng.choice(files)
            led.write("begin unlink %s\n" % src)
            os.unlink(p(src)); files.remove(src)
        else:
            empty = [x for x in dirs if x and not os.listdir(p(x))]
            if not empty: continue
            x = rng.choice(empty)
            led.write("begin rmdir %s\n" % x)
            os.rmdir(p(x)); dirs.remove(x)
        led.write("done\n")
except OSError as e:
    print("writer stopped by %s after %d ops" % (e, k))
PY

# Replays the ledger: what every completed op left must be there; the op in flight may be either way.
cat >"$T/check.py" <<'PY'
import os, sys
root, ledger, lf = sys.argv[1], sys.argv[2], sys.argv[3]
want, gone, pending = set(), set(), set()
cur = None
for line in open(ledger):
    w = line.split()
    if not w: continue
    if w[0] == "begin": cur = w[1:]; continue
    if w[0] != "done" or cur is None: continue
    kind, a = cur[0], cur[1]
    if kind in ("file", "dir", "symlink"): want.add(a); gone.discard(a)
    elif kind == "link": want.add(cur[2]); gone.discard(cur[2])
    elif kind == "rename": want.discard(a); gone.add(a); want.add(cur[2]); gone.discard(cur[2])
    elif kind in ("unlink", "rmdir"): want.discard(a); gone.add(a)
    cur = None
if cur is not None:  # begun, not done
    pending.update(cur[1:])
bad = 0
for x in sorted(want - pending):
    if not os.path.lexists(os.path.join(root, x)): print("missing after its op returned: %s" % x); bad += 1
for x in sorted(gone - pending):
    if os.path.lexists(os.path.join(root, x)): print("present after its removal returned: %s" % x); bad += 1
# An unlinked file's link count is written later (dirsync.cpp, as in Linux's ext2): e2fsck may connect such
# an inode to lost+found. Counted, not a failure: the names are what dirsync keeps.
lost = os.listdir(lf)
print("%d names checked, %d bad, %d in lost+found" % (len(want) + len(gone), bad, len(lost)))
sys.exit(1 if bad else 0)
PY

run_mode() {  # run_mode LABEL SUBDIR MOUNT-OPTS...
  local label=$1 sub=$2; shift 2
  make_image 64M
  mount_vnopfs "$@"
  local top="$MNT"
  if [ -n "$sub" ]; then mkdir "$MNT/$sub" && chattr +D "$MNT/$sub" || fail "$label: chattr +D"; top="$MNT/$sub"; fi
  : >"$T/ledger"
  timeout 60 python3 "$T/ops.py" "$top" "$T/ledger" "$RANDOM" >"$T/ops.log" 2>&1 &
  local wpid=$!
  want=$((100 + RANDOM % 300))
  for _ in $(seq 1 600); do
    [ "$(grep -c '^done' "$T/ledger")" -ge $want ] && break
    sleep 0.05
  done
  crash_daemon "$wpid"
  local n; n=$(grep -c '^done' "$T/ledger")
  [ "$n" -ge 20 ] || fail "$label: only $n ops completed before the kill"
  rc=0; e2fsck -fy "$IMG" >"$T/fsck.log" 2>&1 || rc=$?
  [ $rc -le 1 ] || { tail -20 "$T/fsck.log"; fail "$label: e2fsck -fy could not repair the image (rc=$rc)"; }
  check_image
  mount -t ext2 -o loop,ro "$IMG" "$RO" || fail "$label: the kernel's ext2 cannot mount the image"
  local out; rc=0; out=$(python3 "$T/check.py" "$RO${sub:+/$sub}" "$T/ledger" "$RO/lost+found" 2>&1) || rc=$?
  umount "$RO"
  log "$label: $n ops done before the kill: $out"
  [ $rc = 0 ] || fail "$label: a completed directory change was lost"
}

[ -n "${VNOPFS_DIRSYNC_CONTROL:-}" ] && { run_mode "no dirsync (control)" ""; exit 0; }
run_mode "-o dirsync" "" -o dirsync
run_mode "chattr +D" "d"
log "ok: every directory change that returned was on the image after SIGKILL"

#!/usr/bin/env bash
# Permissions as non-root users (setpriv --reuid/--regid --clear-groups): EACCES/EPERM where Linux gives
# them, sticky directories, setgid directories, suid/sgid cleared by write and chown, utimes rules, exec-only.
source "$(dirname "$0")/../lib/common.sh"
make_image 64M
chmod 755 "$T"   # the users must reach $T/mnt and the helper script
mount_vnopfs -o allow_other   # (root mounts; other users need allow_other to get in at all)

M=$MNT
mkdir "$M/pub" "$M/priv" "$M/sg"
chmod 1777 "$M/pub"
chmod 0755 "$M/priv"
echo secret >"$M/priv/ro.txt"; chmod 0644 "$M/priv/ro.txt"
echo hidden >"$M/priv/hidden.txt"; chmod 0600 "$M/priv/hidden.txt"
chgrp 2000 "$M/sg"; chmod 2777 "$M/sg"
cp /bin/true "$M/xonly"; chmod 0711 "$M/xonly"
echo data >"$M/suid"; chmod 6775 "$M/suid"; chgrp 1000 "$M/suid"
echo data >"$M/suid2"; chmod 6755 "$M/suid2"
echo data >"$M/writable"; chmod 0666 "$M/writable"

cat >"$T/user.py" <<'PY'
import errno, os, sys
M = sys.argv[1]
def expect(err, fn, *a, **k):
    try:
        fn(*a, **k)
    except OSError as e:
        assert e.errno == err, "%s%r: errno %s, expected %s" % (fn.__name__, a, errno.errorcode.get(e.errno), errno.errorcode[err])
        return
    raise AssertionError("%s%r succeeded, expected %s" % (fn.__name__, a, errno.errorcode[err]))
def openw(p): os.close(os.open(p, os.O_WRONLY))
def create(p): os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
uid = os.getuid()
assert uid in (1000, 1001)
if uid == 1000:
    assert open(M + "/priv/ro.txt").read() == "secret\n"
    expect(errno.EACCES, open, M + "/priv/hidden.txt")
    expect(errno.EACCES, openw, M + "/priv/ro.txt")
    expect(errno.EACCES, create, M + "/priv/new")
    expect(errno.EACCES, os.mkdir, M + "/priv/newdir")
    expect(errno.EACCES, os.unlink, M + "/priv/ro.txt")
    expect(errno.EPERM, os.chmod, M + "/priv/ro.txt", 0o777)
    expect(errno.EPERM, os.chown, M + "/priv/ro.txt", 1000, 1000)
    expect(errno.EPERM, os.utime, M + "/writable", (1, 1))        # explicit times: owner only
    os.utime(M + "/writable", None)                                # UTIME_NOW: write access is enough
    expect(errno.EACCES, os.utime, M + "/priv/ro.txt", None)
    # sticky directory: own files only
    create(M + "/pub/mine")
    os.chmod(M + "/pub/mine", 0o666)
    # setgid directory: new files get the directory's group, new directories keep the bit
    create(M + "/sg/file")
    os.mkdir(M + "/sg/dir")
    st = os.stat(M + "/sg/file"); assert st.st_gid == 2000, st.st_gid
    st = os.stat(M + "/sg/dir"); assert st.st_gid == 2000 and st.st_mode & 0o2000, oct(st.st_mode)
    # exec-only binary runs for a non-owner
    assert os.system(M + "/xonly") == 0
    expect(errno.EACCES, open, M + "/xonly")
    # a write by a non-owner clears suid and sgid (group-exec) bits
    with open(M + "/suid", "a") as f:
        f.write("more")
    st = os.stat(M + "/suid"); assert st.st_mode & 0o6000 == 0, oct(st.st_mode)
    # chown to yourself of a file you do not own: EPERM; chgrp to a group you are not in: EPERM
    create(M + "/pub/mine2")
    expect(errno.EPERM, os.chown, M + "/pub/mine2", -1, 2000)
    os.chown(M + "/pub/mine2", -1, 1000)
    expect(errno.EPERM, os.chown, M + "/pub/mine2", 0, -1)
    # a file created with mode 0 still opens for the creator (O_CREAT|O_RDWR)
    fd = os.open(M + "/pub/zero", os.O_CREAT | os.O_RDWR, 0)
    os.write(fd, b"x"); os.close(fd)
    assert os.stat(M + "/pub/zero").st_mode & 0o777 == 0
else:
    expect(errno.EPERM, os.unlink, M + "/pub/mine")
    expect(errno.EPERM, os.rename, M + "/pub/mine", M + "/pub/stolen")
    with open(M + "/pub/mine", "a") as f: f.write("writable by mode")
    create(M + "/pub/theirs"); os.unlink(M + "/pub/theirs")
print("uid", uid, "ok")
PY
as_user 1000 -- /usr/bin/python3 "$T/user.py" "$M" || fail "permission checks as uid 1000"
as_user 1001 -- /usr/bin/python3 "$T/user.py" "$M" || fail "permission checks as uid 1001"

# chown by root clears suid, and sgid when group-exec is set
chown 1000 "$M/suid2"
m=$(stat -c %a "$M/suid2")
[ "$m" = 755 ] || fail "chown left mode $m on a 6755 file (expected 755)"
[ "$(stat -c %a "$M/pub")" = 1777 ] || fail "sticky bit lost"
finish_case

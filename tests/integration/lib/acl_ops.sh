#!/usr/bin/env bash
# acl_ops.sh DIR: the ACL operations of case 21, run as root in DIR (a fresh directory on the file system
# under test), then permission probes as other users. Prints what the case compares: the probes' results,
# then every file's mode/owner and getfacl output.
set -u
D=$1
cd "$D" || exit 1
umask 022
as() { local u=$1; shift; setpriv --reuid "$u" --regid "$u" --clear-groups -- "$@"; }
as_member() { setpriv --reuid 1002 --regid 1002 --groups 2000 -- "$@"; }
step() { "$@" 2>&1 | sed "s|$D|D|g"; echo "$* -> ${PIPESTATUS[0]}"; }

step mkdir dir
step touch file
step setfacl -m u:1001:rw,g:2000:r file                       # named user, named group, mask computed
step setfacl -m u:1001:rwx,g:2000:rx,m:rx dir                # explicit mask
step setfacl -d -m u:1001:rwx,g:2000:rx,o::- dir             # default ACL
step touch dir/inherited
step mkdir dir/subdir                                          # access and default ACL inherited
step sh -c 'umask 077; touch umask077'                         # no default ACL: the umask applies
step sh -c 'umask 077; touch dir/inherited077; mkdir dir/sub077'   # the default ACL instead of the umask
step chmod 751 file                                            # chmod after setfacl: mask follows group bits
step chmod 700 dir/inherited
step touch equiv
step setfacl -m u::rw,g::r,o::r equiv                          # says no more than the mode: no ACL stored
step touch gone; step setfacl -m u:1001:r gone; step setfacl -b gone
step touch removed; step setfacl -m u:1001:r,u:1003:w removed; step setfacl -x u:1001 removed
step setfacl -m g:2000:w removed
step setfacl -m o::rwx,m::- removed
step touch sg; step chown 1000:2000 sg; step chmod 2775 sg
step as 1000 setfacl -m u:1001:r sg                            # owner not in the group: S_ISGID goes
step touch sg2; step chown 1000:1000 sg2; step chmod 2775 sg2
step as 1000 setfacl -m u:1001:r sg2                           # owner in the group: S_ISGID stays
step as 1001 setfacl -m u:1001:rwx file                        # not the owner: EPERM
step setfacl -d -m u:1001:r file                               # default ACL on a file: EACCES
step mkdir open; step chmod 700 open; step setfacl -m u:1001:rwx open
step as 1001 touch open/by1001                                 # a named user creates in a 0700 directory
step mkdir closed; step chmod 777 closed; step setfacl -m u:1003:- closed
step as 1003 touch closed/by1003                               # a named user shut out of a 0777 directory

# probes: who may read, write, search
for u in 1001 1002 1003; do
  for p in file dir dir/inherited dir/subdir dir/inherited077 removed sg open closed; do
    for op in r w x; do
      if [ "$u" = 1002 ]; then as_member test -$op "$p"; else as "$u" test -$op "$p"; fi
      echo "probe $u $p $op $?"
    done
  done
done
find . -path ./lost+found -prune -o -print | sort | while read -r f; do
  stat -c '%n %A %u %g' "$f"
  getfacl -n -p "$f" 2>/dev/null | grep -v '^# file'
done

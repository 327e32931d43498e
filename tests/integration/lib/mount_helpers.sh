# mount_helpers.sh: for cases that need mount(8)'s helpers of the type fuse.vnopfs (source after common.sh).
#   install_mount_helpers   links /sbin/mount.fuse.vnopfs and /sbin/umount.fuse.vnopfs to this build's
#                           vnopfs-ctl; whatever was there is put back by the EXIT trap
#   daemon_pids IMG         pids of the vnopfs daemons serving IMG (from their control sockets)
VNOPFS_CTL=$VNOPFS_BUILD/src/tools/vnopfs-ctl
[ -x "$VNOPFS_CTL" ] || skip "vnopfs-ctl is not built yet ($VNOPFS_CTL)"

install_mount_helpers() {
  local h
  for h in mount.fuse.vnopfs umount.fuse.vnopfs; do
    if [ -e "/sbin/$h" ] || [ -L "/sbin/$h" ]; then
      cp -a "/sbin/$h" "$T/saved.$h"
      ON_EXIT+=("rm -f /sbin/$h; cp -a $T/saved.$h /sbin/$h")
    else
      ON_EXIT+=("rm -f /sbin/$h")
    fi
    ln -sfn "$VNOPFS_CTL" "/sbin/$h"
  done
  command -v mount.fuse3 >/dev/null || skip "mount.fuse3 is not installed"
}

daemon_pids() {
  "$VNOPFS_CTL" --list | python3 -c 'import json,sys
for l in sys.stdin:
    j = json.loads(l)
    if j.get("image") == sys.argv[1]: print(j["pid"])' "$1"
}

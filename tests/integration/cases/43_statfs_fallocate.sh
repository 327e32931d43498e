#!/usr/bin/env bash
# generic/103: df's Avail is a promise. A fallocate of all of it into one new file succeeds (ext2's indirect
# blocks, which the free count does not show, are already left out of f_bavail), with and without a root
# reserve, for root and for a user; then the space is really gone and a further write fails cleanly.
source "$(dirname "$0")/../lib/common.sh"
command -v fallocate >/dev/null || skip "fallocate (util-linux) is missing"
chmod 755 "$T"   # the user must reach $T/mnt
avail_k() { df -k --output=avail "$MNT" | tail -1 | tr -d ' '; }
for reserve in 0 5; do
  make_image 128M -m $reserve
  mount_vnopfs -o allow_other
  a=$(avail_k)
  log "-m $reserve: Avail ${a} KiB; fallocate all of it as root"
  fallocate -l "${a}K" "$MNT/big" || fail "-m $reserve: fallocate of df's Avail (${a} KiB) failed"
  [ "$(avail_k)" -lt 64 ] || fail "-m $reserve: $(avail_k) KiB still available after taking it all"
  rm "$MNT/big"
  mkdir -m 777 "$MNT/u"
  a=$(avail_k)
  log "-m $reserve: and as a user (no reserve)"
  as_user 1000 -- fallocate -l "${a}K" "$MNT/u/big" || fail "-m $reserve: a user's fallocate of Avail (${a} KiB) failed"
  if as_user 1000 -- dd if=/dev/zero of="$MNT/u/more" bs=64k count=4 status=none 2>/dev/null; then
    fail "-m $reserve: a user wrote 256 KiB more after taking all of Avail"
  fi
  rm -f "$MNT/u/big" "$MNT/u/more"
  if [ $reserve = 5 ]; then finish_case; else unmount_vnopfs; check_image; fi
done

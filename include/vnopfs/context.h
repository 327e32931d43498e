// context.h: vfs_context, the credentials a VNOP authenticates against.
//
// Built by the frontend from fuse_req_ctx + fuse_req_getgroups, or by a test/tool for itself. A VNOP
// never keeps a pointer to the context past its return.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <vector>

namespace vnopfs {

struct vfs_context {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups (without gid unless the caller has it twice)
  pid_t pid = 0;
  mode_t umask = 022;
  // CAP_FSETID of the caller, where the frontend knows it: the kernel says "lacks it" with the
  // KILL_SUIDGID bits of WRITE, SETATTR(size) and OPEN(O_TRUNC) under FUSE_HANDLE_KILLPRIV_V2, and a chown
  // or fallocate on a set-ID file reads the caller's effective capabilities. Unknown: uid 0 has it.
  enum class cap : unsigned char { unknown, yes, no };
  cap fsetid = cap::unknown;
  // Out: set by a VNOP that cleared S_ISUID/S_ISGID of the file it changed (write, truncate, fallocate by a
  // caller without CAP_FSETID), so the frontend can drop the attributes the kernel cached. Never cleared by
  // a VNOP: the caller resets it before reusing the context. Layers pass the caller's context through.
  mutable bool setid_cleared = false;

  bool is_superuser() const { return uid == 0; }
  bool has_fsetid() const { return fsetid == cap::unknown ? is_superuser() : fsetid == cap::yes; }
  // True when the caller belongs to gid: its primary group or one of its supplementary groups.
  bool groupmember(gid_t g) const {
    return g == gid || std::find(groups.begin(), groups.end(), g) != groups.end();
  }
  // Root credentials for internal work (mount, flusher, tools).
  static const vfs_context& kernel();
};

}  // namespace vnopfs

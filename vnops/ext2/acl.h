// acl.h: POSIX ACLs in memory, in the two byte forms they travel in, and the kernel's rules over them.
//
// Forms (little-endian):
//   user space / FUSE (posix_acl_xattr, include/uapi/linux/posix_acl_xattr.h): u32 a_version = 2, then
//     entries of 8 bytes { u16 e_tag, u16 e_perm, u32 e_id } (e_id ACL_UNDEFINED_ID for the *_OBJ, MASK
//     and OTHER entries);
//   on disk in ext2's system.posix_acl_access / _default xattr (fs/ext2/acl.h ext2_acl_*, e2fsprogs
//     lib/ext2fs/ext_attr.c): u32 a_version = 1, then entries of 4 bytes { u16 e_tag, u16 e_perm } for
//     USER_OBJ, GROUP_OBJ, MASK and OTHER and of 8 bytes { u16 e_tag, u16 e_perm, u32 e_id } for USER
//     and GROUP. An ACL with no entries is a header alone in both.
// Rules (Linux fs/posix_acl.c): posix_acl_valid, posix_acl_equiv_mode, posix_acl_create_masq,
// __posix_acl_chmod, posix_acl_permission. Pure functions: no I/O, no locks.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vnopfs/context.h"

namespace vnopfs::ext2 {

enum : uint16_t {  // e_tag
  ACL_TAG_USER_OBJ = 0x01,
  ACL_TAG_USER = 0x02,
  ACL_TAG_GROUP_OBJ = 0x04,
  ACL_TAG_GROUP = 0x08,
  ACL_TAG_MASK = 0x10,
  ACL_TAG_OTHER = 0x20,
};
constexpr uint32_t kAclUndefinedId = 0xffffffffu;
constexpr uint32_t kAclXattrVersion = 2;  // POSIX_ACL_XATTR_VERSION
constexpr uint32_t kAclDiskVersion = 1;   // EXT2_ACL_VERSION

struct acl_entry {
  uint16_t tag;
  uint16_t perm;  // rwx in the low three bits
  uint32_t id;    // uid or gid for USER/GROUP, kAclUndefinedId otherwise
  bool operator==(const acl_entry&) const = default;
};
using posix_acl = std::vector<acl_entry>;

// Decoders: false for a wrong version, a length that is not whole entries, an unknown tag or perm bits
// beyond rwx. They do not check the ACL's structure (acl_valid does).
bool acl_from_xattr(std::string_view bytes, posix_acl* out);
bool acl_from_disk(std::string_view bytes, posix_acl* out);
std::string acl_to_xattr(const posix_acl& acl);
std::string acl_to_disk(const posix_acl& acl);

// posix_acl_valid: one USER_OBJ, GROUP_OBJ and OTHER; USER/GROUP entries with distinct ids; a MASK
// required when there is a USER or GROUP entry, at most one. EINVAL otherwise. (Entries in the kernel's
// order: acl_sort puts them so.)
int acl_valid(const posix_acl& acl);
void acl_sort(posix_acl* acl);
// posix_acl_equiv_mode: 0 if the ACL says no more than the mode bits (then *mode gets them), 1 if it needs
// to be kept (the mode bits still get the ACL's owner, group-or-mask and other permissions).
int acl_equiv_mode(const posix_acl& acl, mode_t* mode);
// posix_acl_create_masq: the default ACL of the parent, cut by the create mode; returns 0 when the result
// says no more than *mode (no access ACL to store), 1 otherwise. *mode gets the permission bits.
int acl_create_masq(posix_acl* acl, mode_t* mode);
// __posix_acl_chmod: the access ACL after a chmod to mode (USER_OBJ, MASK or else GROUP_OBJ, OTHER).
void acl_chmod(posix_acl* acl, mode_t mode);
// posix_acl_permission: 0 or EACCES for want (EXT2_VREAD/VWRITE/VEXEC bits) by ctx on a file owned by
// uid/gid. Root is not special here (the caller handles capabilities).
int acl_permission(const posix_acl& acl, uid_t uid, gid_t gid, int want, const vfs_context& ctx);

}  // namespace vnopfs::ext2

// namei.h: the helpers namei.cpp shares with rename.cpp (name checks, permission to delete, unlinking).
#pragma once

#include <string_view>

#include "vnops/ext2/dir.h"
#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

constexpr uint32_t EXT2_LINK_MAX = 32000;  // the kernel's ext2 limit on i_links_count

// A name a directory may hold: ENAMETOOLONG past EXT2_NAME_LEN, ENOENT when empty, EINVAL with '/' or NUL.
int ext2_check_name(const componentname* cnp);

// The vnode of the inode an entry names (+iocount). A number that cannot name a file, an unused inode,
// or (with filetype) an entry type that disagrees with the inode's mode is corruption: EIO + log line.
int ext2_iget_entry(ext2_inode_info* dp, uint32_t ino, uint8_t expect_ft, vnode** vpp);

// May ctx remove an entry naming ip from dp: write and search on dp, then the sticky rule (root, owner of
// ip or of dp). ENOENT for a removed directory, EACCES, EPERM.
int ext2_may_delete(ext2_inode_info* dp, ext2_inode_info* ip, const vfs_context& ctx);

// Finds name in dp and checks that it still names ip (ENOENT otherwise) and that the mount is writable.
int ext2_unlink_name(ext2_inode_info* dp, ext2_inode_info* ip, std::string_view name, dir_pos* pos);

// A directory that lost its name: links 0 (its ".", and its parent's entry, are gone), written with
// bdwrite. Inactive frees it at the last reference. [caller holds no i_lock]
int ext2_dir_orphan(ext2_inode_info* ip);

// A rename's whiteout (RENAME_WHITEOUT, as overlayfs uses it): a new character device 0:0 with no
// permission bits, owned as a new inode in dp would be (setgid directories included; no ACL), its link
// count 1 written synchronously, and no name yet: the caller points the renamed entry at it, or hands it
// to ext2_discard_unnamed. *vpp comes back with an iocount. ENOSPC (no free inode), EIO. [dp locked E]
int ext2_make_whiteout(ext2_inode_info* dp, const vfs_context& ctx, vnode** vpp);

// Drops an inode that was allocated but never named: links 0, and the last reference (this put, unless
// another holder has one) frees it and its blocks.
void ext2_discard_unnamed(vnode* vp);

}  // namespace vnopfs::ext2

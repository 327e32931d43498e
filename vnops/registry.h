// registry.h: registers every filesystem in vnops/ with the VFS (vfs_register_fs), by name.
#pragma once

namespace vnopfs {

// Idempotent; call once at startup before vfs_lookup_fs ("ext2").
void vnops_register_filesystems();

}  // namespace vnopfs

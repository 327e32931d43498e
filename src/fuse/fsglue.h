// fsglue.h: the filesystems the daemon can mount and the VNOP table each gives its vnodes (the bottom of
// a layer stack).
#pragma once

#include <string>

#include "vnopfs/vnops.h"

namespace vnopfs::fuse {

void register_filesystems();
const vnop_table* filesystem_table(const std::string& name);  // nullptr: unknown

}  // namespace vnopfs::fuse

#!/usr/bin/env bash
# Includes point downward only (docs/design.md, "Layers"): src/dev knows no VFS, cache, table or FUSE; cache/
# knows no ext2, layers or FUSE; nothing below src/fuse includes a FUSE header. Prints each offending line.
set -u
cd "$(dirname "$0")/../.."
bad=0
check() {  # check DIR REGEX WHY
  local hits
  hits=$(grep -rnE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]($2)" $1 2>/dev/null)
  if [ -n "$hits" ]; then
    echo "layering: $3:"; echo "$hits" | sed 's/^/  /'; bad=1
  fi
}
check "src/dev" 'cache/|vnops/|src/fuse|src/vfs|fuse|vnopfs/(buf|cluster|vnops|vnode|mount|uio|context)\.h' \
  "src/dev knows nothing of the VFS, the cache, the tables or FUSE"
check "cache" 'vnops/|src/fuse|fuse' "cache/ knows nothing of ext2, layers or FUSE"
check "src/vfs include" 'cache/|vnops/|src/fuse|fuse' "the VFS core knows no cache implementation, table or FUSE"
check "vnops" 'src/fuse|fuse3?/|fuse_lowlevel' "nothing below src/fuse includes FUSE"
[ "$bad" = 0 ] && echo "layering: includes point downward"
exit $bad

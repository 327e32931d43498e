// xattr.cpp: getxattr/setxattr/listxattr/removexattr over the ext2 xattr block (xattrblock.h).
//
// Where attributes live: in the block i_file_acl names, and (images written by ext4 or debugfs with large
// inodes) in the inode after i_extra_isize. We read both; we write only the block, as Linux's ext2 does:
// a name changed or removed that was in the inode is taken out of the inode area.
//
// A block shared by several inodes (h_refcount > 1) is never changed in place: the change goes to a new
// block (written before the inode points to it), then the old block loses one reference. The refcount is
// read and decided on while its buffer is held busy, so two sharers cannot both decide to copy and leak it.
//
// VX_NOSECXATTR (vnode.h) is set whenever a getxattr or listxattr has read every attribute and found no
// security.* one (VX_NOCAPXATTR: no security.capability), and both are cleared by a setxattr of a
// security.* name before it writes: the FUSE frontend answers the kernel's security.capability question
// from the first, the privilege clearing of writes (ext2_xattr_kill_caps) skips its read with the second.
//
// Errors and permissions are Linux's (fs/xattr.c xattr_permission, fs/ext2/xattr.c): ERANGE for a name
// over 255 bytes or a value larger than a block, E2BIG over 64 KiB, ENOSPC when the block is full,
// ENODATA for a missing name, EEXIST/ENODATA for XATTR_OPT_CREATE/REPLACE, EOPNOTSUPP for a namespace we
// do not store, EPERM for trusted.* (non-root), security.* writes (non-root), user.* on anything but
// regular files and directories, and sticky directories; EACCES from the mode bits for user.*.
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "vnops/ext2/ext2.h"
#include "vnops/ext2/xattrblock.h"

namespace vnopfs::ext2 {

namespace {

constexpr size_t kXattrNameMax = 255;      // XATTR_NAME_MAX, the whole name with its prefix
constexpr size_t kXattrSizeMax = 65536;    // XATTR_SIZE_MAX

// The in-inode area of a large inode: its offset and length within the on-disk inode. 0 length: none.
struct ibody_area {
  uint32_t off = 0, len = 0;
};

ibody_area ibody_of(const ext2_inode_info* ip) {
  const ext2_mount* m = ip->i_mnt;
  if (m->m_inode_size <= EXT2_GOOD_OLD_INODE_SIZE) return {};
  uint32_t start = EXT2_GOOD_OLD_INODE_SIZE + ip->i_di.i_extra_isize;
  if (start + 4 > m->m_inode_size) return {};  // iget validated i_extra_isize; nothing fits after it
  return {start, m->m_inode_size - start};
}

// The whole on-disk inode bytes as iupdate writes them: i_di then i_tail. [i_lock]
std::vector<uint8_t> inode_bytes(const ext2_inode_info* ip) {
  std::vector<uint8_t> b(sizeof(ext2_inode_large) + ip->i_tail.size());
  std::memcpy(b.data(), &ip->i_di, sizeof(ext2_inode_large));
  std::memcpy(b.data() + sizeof(ext2_inode_large), ip->i_tail.data(), ip->i_tail.size());
  b.resize(std::max<size_t>(b.size(), ip->i_mnt->m_inode_size));
  return b;
}

void store_inode_bytes(ext2_inode_info* ip, const std::vector<uint8_t>& b) {
  std::memcpy(&ip->i_di, b.data(), sizeof(ext2_inode_large));
  std::memcpy(ip->i_tail.data(), b.data() + sizeof(ext2_inode_large), ip->i_tail.size());
  ip->i_dirty = true;
}

int read_ibody(ext2_inode_info* ip, std::vector<xattr_item>* items) {
  std::lock_guard g(ip->i_lock);
  items->clear();
  ibody_area a = ibody_of(ip);
  if (a.len == 0) return 0;
  std::vector<uint8_t> b = inode_bytes(ip);
  xattr_fault f;
  if (!xattr_ibody_decode(b.data() + a.off, a.len, items, &f))
    return ext2_corrupt(ip->i_mnt, ip->i_ino, 0, f.field, "in-inode xattr at offset %u (value %llu)", f.offset,
                        static_cast<unsigned long long>(f.value));
  return 0;
}

uint32_t file_acl(ext2_inode_info* ip) {
  std::lock_guard g(ip->i_lock);
  return ip->i_di.base.i_file_acl;
}

// Reads and decodes the xattr block blk of ip; bp keeps it busy for a caller that will change it.
int read_block(ext2_inode_info* ip, uint32_t blk, std::vector<xattr_item>* items, BufRef* bp) {
  ext2_mount* m = ip->i_mnt;
  items->clear();
  if (!ext2_data_block_ok(m, blk))
    return ext2_corrupt(m, ip->i_ino, blk, "i_file_acl", "block %u outside the data area", blk);
  TRY(buf_meta_bread(m->m_devvp, blk, bp));
  xattr_fault f;
  if (!xattr_block_decode(reinterpret_cast<const uint8_t*>(bp->data()), m->m_block_size, items, &f))
    return ext2_corrupt(m, ip->i_ino, blk, f.field, "xattr block entry at offset %u (value %llu)", f.offset,
                        static_cast<unsigned long long>(f.value));
  return 0;
}

// Everything the inode has: in-inode items first, then the block's.
int read_all(ext2_inode_info* ip, std::vector<xattr_item>* items) {
  TRY(read_ibody(ip, items));
  uint32_t blk = file_acl(ip);
  if (blk == 0) return 0;
  std::vector<xattr_item> more;
  BufRef bp;
  TRY(read_block(ip, blk, &more, &bp));
  items->insert(items->end(), more.begin(), more.end());
  return 0;
}

auto find_item(std::vector<xattr_item>& items, const xattr_name& n) {
  return std::find_if(items.begin(), items.end(),
                      [&](const xattr_item& it) { return it.index == n.index && it.name == n.suffix; });
}

// Linux's xattr_permission plus the handlers' own checks. write: set/remove. ENODATA means "as if absent".
int xattr_permission(ext2_inode_info* ip, const xattr_name& n, bool write, const vfs_context& ctx) {
  std::lock_guard g(ip->i_lock);
  mode_t mode = ext2_i_mode(ip);
  if (write && (ip->i_di.base.i_flags & (EXT2_IMMUTABLE_FL | EXT2_APPEND_FL))) return EPERM;
  switch (n.index) {
    case EXT2_XATTR_INDEX_USER:
      if (!S_ISREG(mode) && !S_ISDIR(mode)) return write ? EPERM : ENODATA;
      if (write && S_ISDIR(mode) && (mode & S_ISVTX) && !ext2_owner_or_root(ip, ctx)) return EPERM;
      return ext2_access_check(ip, write ? EXT2_VWRITE : EXT2_VREAD, ctx);
    case EXT2_XATTR_INDEX_TRUSTED:
      if (!ctx.is_superuser()) return write ? EPERM : ENODATA;
      return 0;
    case EXT2_XATTR_INDEX_SECURITY:
      return write && !ctx.is_superuser() ? EPERM : 0;  // cap_inode_setxattr: CAP_SYS_ADMIN
    case EXT2_XATTR_INDEX_POSIX_ACL_ACCESS:
    case EXT2_XATTR_INDEX_POSIX_ACL_DEFAULT:
      if (!ip->i_mnt->m_posix_acl || S_ISLNK(mode)) return EOPNOTSUPP;
      if (n.index == EXT2_XATTR_INDEX_POSIX_ACL_DEFAULT && !S_ISDIR(mode)) return write ? EACCES : ENODATA;
      return write && !ext2_owner_or_root(ip, ctx) ? EPERM : 0;
    default:
      return EOPNOTSUPP;
  }
}

// Parses and checks a full name the way the VFS does before any filesystem code runs.
int parse_name(const char* name, xattr_name* out) {
  if (name == nullptr) return EINVAL;
  std::string_view full(name);
  if (full.empty() || full.size() > kXattrNameMax) return ERANGE;
  auto n = xattr_split_name(full);
  if (!n || n->index == EXT2_XATTR_INDEX_SYSTEM || n->index == EXT2_XATTR_INDEX_RICHACL ||
      n->index == EXT2_XATTR_INDEX_LUSTRE)
    return EOPNOTSUPP;
  bool whole = n->index == EXT2_XATTR_INDEX_POSIX_ACL_ACCESS || n->index == EXT2_XATTR_INDEX_POSIX_ACL_DEFAULT;
  if (!whole && n->suffix.empty()) return EINVAL;
  *out = *n;
  return 0;
}

// Rewrites the in-inode area without `n` (it moves to the block, or goes). [caller holds no i_lock]
int drop_from_ibody(ext2_inode_info* ip, const xattr_name& n) {
  std::lock_guard g(ip->i_lock);
  ibody_area a = ibody_of(ip);
  std::vector<uint8_t> b = inode_bytes(ip);
  std::vector<xattr_item> items;
  xattr_fault f;
  if (!xattr_ibody_decode(b.data() + a.off, a.len, &items, &f)) return EIO;  // read_ibody reported it
  std::erase_if(items, [&](const xattr_item& it) { return it.index == n.index && it.name == n.suffix; });
  if (!xattr_ibody_encode(b.data() + a.off, a.len, items)) return EIO;  // smaller than before: fits
  store_inode_bytes(ip, b);
  ext2_itimes(ip, EXT2_ICHG);
  return ext2_iupdate(ip, true);
}

// A fresh block for items, written before the inode points to it; the old block (if any) loses this
// inode's reference afterwards.
int write_new_block(ext2_inode_info* ip, const std::vector<xattr_item>& items, const vfs_context& ctx) {
  ext2_mount* m = ip->i_mnt;
  uint32_t goal = ext2_group_first_block(m, ext2_group_of_ino(m, ip->i_ino));
  uint32_t blk;
  TRY(ext2_balloc(m, goal, ext2_may_use_reserve(m, ctx), &blk));
  BufRef bp = buf_getblk(m->m_devvp, blk, BLK_META);
  (void)xattr_block_encode(reinterpret_cast<uint8_t*>(bp.data()), m->m_block_size, items, 1);  // size checked
  if (int err = buf_bwrite(std::move(bp))) {
    (void)ext2_bfree(m, blk, 1);
    return err;
  }
  std::lock_guard g(ip->i_lock);
  TRY(ext2_xattr_block_release(ip));  // the old one: refcount - 1 (it was shared) or freed
  ip->i_di.base.i_file_acl = blk;
  ext2_i_blocks_add(ip, 1);
  ext2_itimes(ip, EXT2_ICHG);
  return ext2_iupdate(ip, true);
}

// Stores items as ip's block: in place when ip is its only user, else in a new block; none when empty.
int write_block_items(ext2_inode_info* ip, const std::vector<xattr_item>& items, const vfs_context& ctx) {
  ext2_mount* m = ip->i_mnt;
  if (xattr_block_need(items) > m->m_block_size) return ENOSPC;
  if (items.empty()) {
    std::lock_guard g(ip->i_lock);
    TRY(ext2_xattr_block_release(ip));
    ext2_itimes(ip, EXT2_ICHG);
    return ext2_iupdate(ip, true);
  }
  uint32_t blk = file_acl(ip);
  if (blk != 0) {
    std::vector<xattr_item> cur;
    BufRef bp;
    TRY(read_block(ip, blk, &cur, &bp));
    uint8_t* data = reinterpret_cast<uint8_t*>(bp.data());
    if (xattr_block_refcount(data) == 1) {
      (void)xattr_block_encode(data, m->m_block_size, items, 1);
      buf_bdwrite(std::move(bp));
      std::lock_guard g(ip->i_lock);
      ext2_note_meta_dirty(ip, blk);
      ext2_itimes(ip, EXT2_ICHG);
      return ext2_iupdate(ip, false);
    }
  }
  return write_new_block(ip, items, ctx);
}

// The block's items without the in-inode ones (those are dropped separately).
int read_block_items(ext2_inode_info* ip, std::vector<xattr_item>* items) {
  items->clear();
  uint32_t blk = file_acl(ip);
  if (blk == 0) return 0;
  BufRef bp;
  return read_block(ip, blk, items, &bp);
}

int set_or_remove(ext2_inode_info* ip, const xattr_name& n, const std::string* value, int options,
                  const vfs_context& ctx) {
  std::vector<xattr_item> inode_items, block_items;
  TRY(read_ibody(ip, &inode_items));
  TRY(read_block_items(ip, &block_items));
  bool in_inode = find_item(inode_items, n) != inode_items.end();
  auto bit = find_item(block_items, n);
  bool in_block = bit != block_items.end();
  bool exists = in_inode || in_block;
  if (!value && !exists) return ENODATA;
  if (value && (options & XATTR_OPT_CREATE) && exists) return EEXIST;
  if (value && (options & XATTR_OPT_REPLACE) && !exists) return ENODATA;
  TRY(ext2_check_writable(ip->i_mnt));
  if (in_block) block_items.erase(bit);
  if (value) {
    block_items.push_back({n.index, std::string(n.suffix), *value});
    if (xattr_block_need(block_items) > ip->i_mnt->m_block_size) return ENOSPC;
  }
  // The block first, so a crash in between leaves the new value (and possibly an old in-inode copy),
  // never neither.
  if (value || in_block) TRY(write_block_items(ip, block_items, ctx));
  if (in_inode) TRY(drop_from_ibody(ip, n));
  return 0;
}

constexpr xattr_name kCapability{EXT2_XATTR_INDEX_SECURITY, "capability"};
constexpr xattr_name kAclAccess{EXT2_XATTR_INDEX_POSIX_ACL_ACCESS, ""};
constexpr xattr_name kAclDefault{EXT2_XATTR_INDEX_POSIX_ACL_DEFAULT, ""};

bool is_acl(uint8_t index) {
  return index == EXT2_XATTR_INDEX_POSIX_ACL_ACCESS || index == EXT2_XATTR_INDEX_POSIX_ACL_DEFAULT;
}

// The ACL stored under n (empty: none). EINVAL for a value that is not ext2's ACL form (ext2_acl_from_disk).
int read_acl(ext2_inode_info* ip, const xattr_name& n, posix_acl* acl) {
  acl->clear();
  std::vector<xattr_item> items;
  TRY(read_all(ip, &items));
  auto it = find_item(items, n);
  if (it == items.end()) return 0;
  return acl_from_disk(it->value, acl) ? 0 : EINVAL;
}

int remove_if_present(ext2_inode_info* ip, const xattr_name& n, const vfs_context& ctx) {
  int err = set_or_remove(ip, n, nullptr, 0, ctx);
  return err == ENODATA ? 0 : err;
}

// Setting an ACL (value in the user-space form), as fs/ext2/acl.c ext2_set_acl with posix_acl_update_mode:
// an access ACL that says no more than the mode bits is not stored, the mode takes its permissions, and
// S_ISGID goes unless the caller is in the file's group or has CAP_FSETID.
int set_acl(ext2_inode_info* ip, const xattr_name& n, std::string_view value, int options, const vfs_context& ctx) {
  posix_acl acl;
  if (!acl_from_xattr(value, &acl)) return EINVAL;
  acl_sort(&acl);
  if (!acl.empty()) TRY(acl_valid(acl));
  if (n.index == EXT2_XATTR_INDEX_POSIX_ACL_DEFAULT) {
    if (acl.empty()) return remove_if_present(ip, n, ctx);
    std::string disk = acl_to_disk(acl);
    return set_or_remove(ip, n, &disk, options, ctx);
  }
  if (acl.empty()) {
    TRY(remove_if_present(ip, n, ctx));
    std::lock_guard g(ip->i_lock);
    ip->i_acl.clear();
    return 0;
  }
  mode_t mode;
  gid_t gid;
  {
    std::lock_guard g(ip->i_lock);
    mode = ext2_i_mode(ip);
    gid = ext2_i_gid(ip);
  }
  const bool keep = acl_equiv_mode(acl, &mode) != 0;
  if (!ctx.groupmember(gid) && !ctx.has_fsetid()) mode &= ~S_ISGID;
  if (keep) {
    std::string disk = acl_to_disk(acl);
    TRY(set_or_remove(ip, n, &disk, options, ctx));
  } else {
    TRY(remove_if_present(ip, n, ctx));
  }
  std::lock_guard g(ip->i_lock);
  ip->i_di.base.i_mode = static_cast<uint16_t>(mode);
  ip->i_acl = keep ? std::move(acl) : posix_acl{};
  ext2_itimes(ip, EXT2_ICHG);
  ip->i_dirty = true;
  return 0;
}

// VX_NOSECXATTR and VX_NOCAPXATTR from a full read of the inode's attributes. [vnode lock held, at least
// shared]
void note_security_fact(vnode* vp, const std::vector<xattr_item>& items) {
  uint32_t facts = VX_NOSECXATTR | VX_NOCAPXATTR;
  for (const xattr_item& it : items) {
    if (it.index != EXT2_XATTR_INDEX_SECURITY) continue;
    facts &= ~uint32_t{VX_NOSECXATTR};
    if (it.name == kCapability.suffix) facts &= ~uint32_t{VX_NOCAPXATTR};
  }
  if (facts) vp->v_facts.fetch_or(facts, std::memory_order_release);
}

int copy_out(const std::string& data, uio* uio, size_t* sizep) {
  if (uio == nullptr) {
    if (sizep) *sizep = data.size();
    return 0;
  }
  if (uio->resid() < data.size()) return ERANGE;
  if (sizep) *sizep = data.size();
  return uiomove(const_cast<char*>(data.data()), data.size(), uio);
}

}  // namespace

int ext2_vnop_getxattr(vnop_getxattr_args* ap) try {
  ext2_inode_info* ip = VTOI(ap->a_vp);
  xattr_name n;
  TRY(parse_name(ap->a_name, &n));
  TRY(xattr_permission(ip, n, false, *ap->a_context));
  std::vector<xattr_item> items;
  TRY(read_all(ip, &items));
  note_security_fact(ap->a_vp, items);
  auto it = find_item(items, n);
  if (it == items.end()) return ENODATA;
  if (is_acl(n.index)) {  // ext2's form on disk, the user-space form through the interface
    posix_acl acl;
    if (!acl_from_disk(it->value, &acl)) return EINVAL;
    return copy_out(acl_to_xattr(acl), ap->a_uio, ap->a_size);
  }
  return copy_out(it->value, ap->a_uio, ap->a_size);
} catch (const std::bad_alloc&) {
  return ENOMEM;
}

int ext2_vnop_listxattr(vnop_listxattr_args* ap) try {
  ext2_inode_info* ip = VTOI(ap->a_vp);
  std::vector<xattr_item> items;
  TRY(read_all(ip, &items));
  note_security_fact(ap->a_vp, items);
  std::string list;
  for (const xattr_item& it : items) {
    xattr_name n{it.index, it.name};
    if (n.index == EXT2_XATTR_INDEX_TRUSTED && !ap->a_context->is_superuser()) continue;
    if (is_acl(n.index) && !ip->i_mnt->m_posix_acl) continue;  // posix_acl_xattr_list: only with ACLs on
    std::string full = xattr_full_name(it.index, it.name);
    if (full.empty()) continue;  // an index we do not know: not listed (the kernel's ext2 does the same)
    list += full;
    list.push_back('\0');
  }
  return copy_out(list, ap->a_uio, ap->a_size);
} catch (const std::bad_alloc&) {
  return ENOMEM;
}

int ext2_vnop_setxattr(vnop_setxattr_args* ap) try {
  ext2_inode_info* ip = VTOI(ap->a_vp);
  xattr_name n;
  TRY(parse_name(ap->a_name, &n));
  size_t size = ap->a_uio ? ap->a_uio->resid() : 0;
  if (size > kXattrSizeMax) return E2BIG;
  if (n.suffix.size() > 255 || size > ip->i_mnt->m_block_size) return ERANGE;
  if ((ap->a_options & XATTR_OPT_CREATE) && (ap->a_options & XATTR_OPT_REPLACE)) return EINVAL;
  TRY(xattr_permission(ip, n, true, *ap->a_context));
  std::string value(size, '\0');
  if (size) TRY(uiomove(value.data(), size, ap->a_uio));
  // Cleared before the attribute can be read back (and left cleared if the set fails: "unknown" is safe).
  if (n.index == EXT2_XATTR_INDEX_SECURITY)
    ap->a_vp->v_facts.fetch_and(~uint32_t{VX_NOSECXATTR | VX_NOCAPXATTR}, std::memory_order_release);
  if (is_acl(n.index)) return set_acl(ip, n, value, ap->a_options, *ap->a_context);
  return set_or_remove(ip, n, &value, ap->a_options, *ap->a_context);
} catch (const std::bad_alloc&) {
  return ENOMEM;
}

// Linux's dentry_needs_remove_privs -> security_inode_killpriv: the capability goes whoever changes the
// file (CAP_FSETID does not keep it). The common answer, "none", comes from VX_NOCAPXATTR without a read;
// the first call on a vnode reads the attributes once to learn it.
int ext2_xattr_kill_caps(vnode* vp, const vfs_context& ctx) try {
  if (vp->v_facts.load(std::memory_order_acquire) & (VX_NOCAPXATTR | VX_NOSECXATTR)) return 0;
  ext2_inode_info* ip = VTOI(vp);
  std::vector<xattr_item> items;
  TRY(read_all(ip, &items));
  note_security_fact(vp, items);
  if (find_item(items, kCapability) == items.end()) return 0;
  if (!vp->v_lock.held_exclusive()) return ERESTART;
  TRY(set_or_remove(ip, kCapability, nullptr, 0, ctx));
  vp->v_facts.fetch_or(VX_NOCAPXATTR, std::memory_order_release);
  return 0;
} catch (const std::bad_alloc&) {
  return ENOMEM;
}

int ext2_vnop_removexattr(vnop_removexattr_args* ap) try {
  ext2_inode_info* ip = VTOI(ap->a_vp);
  xattr_name n;
  TRY(parse_name(ap->a_name, &n));
  TRY(xattr_permission(ip, n, true, *ap->a_context));
  TRY(set_or_remove(ip, n, nullptr, 0, *ap->a_context));
  if (n.index == EXT2_XATTR_INDEX_POSIX_ACL_ACCESS) {
    std::lock_guard g(ip->i_lock);
    ip->i_acl.clear();
  }
  return 0;
} catch (const std::bad_alloc&) {
  return ENOMEM;
}

void ext2_acl_load(ext2_inode_info* ip) try {
  posix_acl acl;
  if (read_acl(ip, kAclAccess, &acl) == 0) ip->i_acl = std::move(acl);
} catch (const std::bad_alloc&) {
  ip->i_acl.clear();
}

int ext2_acl_get_default(ext2_inode_info* dp, posix_acl* acl) try {
  return read_acl(dp, kAclDefault, acl);
} catch (const std::bad_alloc&) {
  return ENOMEM;
}

int ext2_acl_init(ext2_inode_info* ip, const posix_acl& access, const posix_acl& dflt, const vfs_context& ctx) try {
  if (!dflt.empty()) {
    std::string disk = acl_to_disk(dflt);
    TRY(set_or_remove(ip, kAclDefault, &disk, 0, ctx));
  }
  if (!access.empty()) {
    std::string disk = acl_to_disk(access);
    TRY(set_or_remove(ip, kAclAccess, &disk, 0, ctx));
    std::lock_guard g(ip->i_lock);
    ip->i_acl = access;
  }
  return 0;
} catch (const std::bad_alloc&) {
  return ENOMEM;
}

int ext2_acl_chmod(ext2_inode_info* ip, const vfs_context& ctx) try {
  posix_acl acl;
  {
    std::lock_guard g(ip->i_lock);
    if (ip->i_acl.empty()) return 0;
    acl = ip->i_acl;
    acl_chmod(&acl, ext2_i_mode(ip));
  }
  std::string disk = acl_to_disk(acl);
  TRY(set_or_remove(ip, kAclAccess, &disk, 0, ctx));
  std::lock_guard g(ip->i_lock);
  ip->i_acl = std::move(acl);
  return 0;
} catch (const std::bad_alloc&) {
  return ENOMEM;
}

}  // namespace vnopfs::ext2

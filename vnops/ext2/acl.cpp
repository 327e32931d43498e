// acl.cpp: POSIX ACL codecs and rules (acl.h). The kernel's fs/posix_acl.c decides the same things the
// same way; the byte forms are ext2's (fs/ext2/acl.c) and the user-space xattr's.
#include "vnops/ext2/acl.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>

namespace vnopfs::ext2 {

namespace {

uint16_t get16(const char* p) {
  return static_cast<uint16_t>(static_cast<uint8_t>(p[0]) | static_cast<uint8_t>(p[1]) << 8);
}
uint32_t get32(const char* p) { return get16(p) | static_cast<uint32_t>(get16(p + 2)) << 16; }
void put16(std::string* s, uint16_t v) {
  s->push_back(static_cast<char>(v & 0xff));
  s->push_back(static_cast<char>(v >> 8));
}
void put32(std::string* s, uint32_t v) {
  put16(s, static_cast<uint16_t>(v & 0xffff));
  put16(s, static_cast<uint16_t>(v >> 16));
}

bool known_tag(uint16_t t) {
  return t == ACL_TAG_USER_OBJ || t == ACL_TAG_USER || t == ACL_TAG_GROUP_OBJ || t == ACL_TAG_GROUP ||
         t == ACL_TAG_MASK || t == ACL_TAG_OTHER;
}
bool has_id(uint16_t t) { return t == ACL_TAG_USER || t == ACL_TAG_GROUP; }

}  // namespace

bool acl_from_xattr(std::string_view b, posix_acl* out) {
  out->clear();
  if (b.size() < 4 || (b.size() - 4) % 8 != 0 || get32(b.data()) != kAclXattrVersion) return false;
  for (size_t off = 4; off < b.size(); off += 8) {
    acl_entry e{get16(b.data() + off), get16(b.data() + off + 2), get32(b.data() + off + 4)};
    if (!known_tag(e.tag) || (e.perm & ~7u)) return false;
    if (!has_id(e.tag)) e.id = kAclUndefinedId;
    out->push_back(e);
  }
  return true;
}

bool acl_from_disk(std::string_view b, posix_acl* out) {
  out->clear();
  if (b.size() < 4 || get32(b.data()) != kAclDiskVersion) return false;
  size_t off = 4;
  while (off < b.size()) {
    if (b.size() - off < 4) return false;
    acl_entry e{get16(b.data() + off), get16(b.data() + off + 2), kAclUndefinedId};
    if (!known_tag(e.tag) || (e.perm & ~7u)) return false;
    off += 4;
    if (has_id(e.tag)) {
      if (b.size() - off < 4) return false;
      e.id = get32(b.data() + off);
      off += 4;
    }
    out->push_back(e);
  }
  return true;
}

std::string acl_to_xattr(const posix_acl& acl) {
  std::string s;
  s.reserve(4 + 8 * acl.size());
  put32(&s, kAclXattrVersion);
  for (const acl_entry& e : acl) {
    put16(&s, e.tag);
    put16(&s, e.perm);
    put32(&s, has_id(e.tag) ? e.id : kAclUndefinedId);
  }
  return s;
}

std::string acl_to_disk(const posix_acl& acl) {
  std::string s;
  put32(&s, kAclDiskVersion);
  for (const acl_entry& e : acl) {
    put16(&s, e.tag);
    put16(&s, e.perm);
    if (has_id(e.tag)) put32(&s, e.id);
  }
  return s;
}

void acl_sort(posix_acl* acl) {
  std::stable_sort(acl->begin(), acl->end(), [](const acl_entry& a, const acl_entry& b) {
    if (a.tag != b.tag) return a.tag < b.tag;  // the tag values are in the kernel's entry order
    return has_id(a.tag) && a.id < b.id;
  });
}

int acl_valid(const posix_acl& acl) {
  int user_obj = 0, group_obj = 0, other = 0, mask = 0, named = 0;
  uint16_t prev_tag = 0;
  uint32_t prev_id = 0;
  for (const acl_entry& e : acl) {
    if (e.perm & ~7u) return EINVAL;
    if (e.tag < prev_tag) return EINVAL;  // out of order
    switch (e.tag) {
      case ACL_TAG_USER_OBJ: user_obj++; break;
      case ACL_TAG_GROUP_OBJ: group_obj++; break;
      case ACL_TAG_OTHER: other++; break;
      case ACL_TAG_MASK: mask++; break;
      case ACL_TAG_USER:
      case ACL_TAG_GROUP:
        if (e.id == kAclUndefinedId) return EINVAL;
        if (e.tag == prev_tag && e.id <= prev_id) return EINVAL;  // duplicate or unsorted
        named++;
        break;
      default: return EINVAL;
    }
    prev_tag = e.tag;
    prev_id = e.id;
  }
  if (user_obj != 1 || group_obj != 1 || other != 1 || mask > 1) return EINVAL;
  if (named && !mask) return EINVAL;
  return 0;
}

int acl_equiv_mode(const posix_acl& acl, mode_t* mode) {
  mode_t m = 0;
  int not_equiv = 0;
  for (const acl_entry& e : acl) {
    switch (e.tag) {
      case ACL_TAG_USER_OBJ: m |= (e.perm & S_IRWXO) << 6; break;
      case ACL_TAG_GROUP_OBJ: m |= (e.perm & S_IRWXO) << 3; break;
      case ACL_TAG_OTHER: m |= e.perm & S_IRWXO; break;
      case ACL_TAG_MASK:
        m = (m & ~S_IRWXG) | ((e.perm & S_IRWXO) << 3);
        not_equiv = 1;
        break;
      default: not_equiv = 1; break;
    }
  }
  *mode = (*mode & ~(S_IRWXU | S_IRWXG | S_IRWXO)) | m;
  return not_equiv;
}

int acl_create_masq(posix_acl* acl, mode_t* modep) {
  mode_t mode = *modep;
  int not_equiv = 0;
  acl_entry* group_obj = nullptr;
  acl_entry* mask_obj = nullptr;
  for (acl_entry& e : *acl) {
    switch (e.tag) {
      case ACL_TAG_USER_OBJ:
        e.perm &= static_cast<uint16_t>((mode >> 6) | ~S_IRWXO);
        mode &= (static_cast<mode_t>(e.perm) << 6) | ~S_IRWXU;
        break;
      case ACL_TAG_USER:
      case ACL_TAG_GROUP: not_equiv = 1; break;
      case ACL_TAG_GROUP_OBJ: group_obj = &e; break;
      case ACL_TAG_OTHER:
        e.perm &= static_cast<uint16_t>(mode | ~S_IRWXO);
        mode &= e.perm | ~S_IRWXO;
        break;
      case ACL_TAG_MASK:
        mask_obj = &e;
        not_equiv = 1;
        break;
    }
  }
  acl_entry* g = mask_obj ? mask_obj : group_obj;
  if (g) {
    g->perm &= static_cast<uint16_t>((mode >> 3) | ~S_IRWXO);
    mode &= (static_cast<mode_t>(g->perm) << 3) | ~S_IRWXG;
  }
  *modep = (*modep & ~(S_IRWXU | S_IRWXG | S_IRWXO)) | (mode & (S_IRWXU | S_IRWXG | S_IRWXO));
  return not_equiv;
}

void acl_chmod(posix_acl* acl, mode_t mode) {
  acl_entry* group_obj = nullptr;
  acl_entry* mask_obj = nullptr;
  for (acl_entry& e : *acl) {
    switch (e.tag) {
      case ACL_TAG_USER_OBJ: e.perm = static_cast<uint16_t>((mode & S_IRWXU) >> 6); break;
      case ACL_TAG_GROUP_OBJ: group_obj = &e; break;
      case ACL_TAG_MASK: mask_obj = &e; break;
      case ACL_TAG_OTHER: e.perm = static_cast<uint16_t>(mode & S_IRWXO); break;
      default: break;
    }
  }
  acl_entry* g = mask_obj ? mask_obj : group_obj;
  if (g) g->perm = static_cast<uint16_t>((mode & S_IRWXG) >> 3);
}

int acl_permission(const posix_acl& acl, uid_t uid, gid_t gid, int want, const vfs_context& ctx) {
  want &= 7;
  bool group_matched = false;
  uint16_t mask = 7;
  for (const acl_entry& e : acl)
    if (e.tag == ACL_TAG_MASK) mask = e.perm;
  for (const acl_entry& e : acl) {
    switch (e.tag) {
      case ACL_TAG_USER_OBJ:
        if (ctx.uid == uid) return (e.perm & want) == want ? 0 : EACCES;
        break;
      case ACL_TAG_USER:
        if (ctx.uid == e.id) {
          return ((e.perm & mask) & want) == want ? 0 : EACCES;
        }
        break;
      case ACL_TAG_GROUP_OBJ:
      case ACL_TAG_GROUP:
        if (ctx.groupmember(e.tag == ACL_TAG_GROUP_OBJ ? gid : static_cast<gid_t>(e.id))) {
          group_matched = true;
          if (((e.perm & mask) & want) == want) return 0;
        }
        break;
      case ACL_TAG_OTHER:
        if (group_matched) return EACCES;
        return (e.perm & want) == want ? 0 : EACCES;
      default: break;
    }
  }
  return EACCES;
}

}  // namespace vnopfs::ext2

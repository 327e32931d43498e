// check.cpp: the validation helpers and the one way corruption is reported.
//
// A corrupt value found after mount is answered like the kernel's ext2_error(): one log line that names
// what was wrong, EXT2_ERROR_FS in the superblock so e2fsck runs next time, and s_errors obeyed. "panic" is
// treated as remount-read-only: a user-space daemon does not take the host down, and no further write can
// build on the bad value.
#include <cstdarg>
#include <cstdio>

#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

bool is_power_of(uint32_t n, uint32_t base) {
  while (n > 1 && n % base == 0) n /= base;
  return n == 1;
}

}  // namespace

bool ext2_group_has_super(const ext2_mount* m, uint32_t g) {
  if (g == 0) return true;
  if (m->m_sparse_super2) return g == m->m_sb.s_backup_bgs[0] || g == m->m_sb.s_backup_bgs[1];
  if (!m->m_sparse_super) return true;
  return g == 1 || is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7);
}

bool ext2_ino_ok(const ext2_mount* m, uint32_t ino) {
  return ino == EXT2_ROOT_INO || (ino >= m->m_first_ino && ino <= m->m_inodes_count);
}

bool ext2_data_block_ok(const ext2_mount* m, uint32_t blk) {
  if (blk < m->m_first_data_block || blk >= m->m_blocks_count) return false;
  uint32_t g = ext2_group_of_block(m, blk);
  uint32_t first = ext2_group_first_block(m, g);
  if (ext2_group_has_super(m, g) && blk < first + 1 + m->m_gdt_blocks + m->m_reserved_gdt) return false;
  // The descriptors were validated at mount (inside the device, inside their group); g_desc's location
  // fields never change afterwards, so reading them without g_lock is safe.
  const ext2_group_desc& d = m->m_groups[g].g_desc;
  if (blk == d.bg_block_bitmap || blk == d.bg_inode_bitmap) return false;
  if (blk >= d.bg_inode_table && blk < d.bg_inode_table + m->m_itb_per_group) return false;
  return true;
}

int ext2_corrupt(ext2_mount* m, uint32_t ino, uint64_t blk, const char* field, const char* fmt, ...) {
  char detail[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  VLOG_ERR("ext2 %s: inode %u, block %llu: %s: %s", m->m_mp->mnt_from.c_str(), ino,
           static_cast<unsigned long long>(blk), field, detail);

  uint16_t policy;
  {
    std::lock_guard g(m->m_sb_lock);
    m->m_sb.s_state |= EXT2_ERROR_FS;
    policy = m->m_sb.s_errors;
  }
  if (policy != EXT2_ERRORS_CONTINUE && !m->m_rdonly.exchange(true)) {
    VLOG_ERR("ext2 %s: remounted read-only (s_errors=%u)", m->m_mp->mnt_from.c_str(), policy);
    // Record the error state now, while nothing else is written any more (e2fsck must look at this image).
    if (m->m_mounted_rw) (void)ext2_write_super_error(m);
  }
  return EIO;
}

}  // namespace vnopfs::ext2

// super.cpp: the ext2 vfsops: mount (validate everything before trusting it), unmount, root, statfs, sync,
// vget; and the superblock/descriptor write-back.
//
// Mount reads the superblock with dev_sync_io before the cache exists (the block size is in it), validates
// it and the group descriptors like the kernel's ext2_fill_super/ext2_check_descriptors plus the overlap
// checks of e2fsck, and refuses with one log line naming the field and value. Free counts are taken from
// the group descriptors (the superblock's copy may lag, as in the kernel) and written back summed at every
// sync and at unmount.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>
#include <thread>
#include <string>
#include <vector>

#include "vnopfs/cluster.h"
#include "vnopfs/device.h"
#include "vnops/ext2/ext2.h"

namespace vnopfs::ext2 {

namespace {

// The superblock lives at byte 1024: block 1 with 1 KiB blocks, inside block 0 otherwise.
uint32_t super_block_nr(const ext2_mount* m) { return EXT2_SUPER_OFFSET / m->m_block_size; }
uint32_t super_block_off(const ext2_mount* m) { return EXT2_SUPER_OFFSET % m->m_block_size; }
uint32_t gdt_first_block(const ext2_mount* m) { return m->m_first_data_block + 1; }

int refuse(const mount* mp, int err, const char* field, const char* fmt, ...) __attribute__((format(printf, 4, 5)));
int refuse(const mount* mp, int err, const char* field, const char* fmt, ...) {
  char detail[256];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  VLOG_ERR("ext2 %s: cannot mount: %s: %s", mp->mnt_from.c_str(), field, detail);
  return err;
}

struct feature_name { uint32_t bit; const char* name; };
constexpr feature_name kIncompat[] = {
    {EXT2_FEATURE_INCOMPAT_COMPRESSION, "compression"}, {EXT2_FEATURE_INCOMPAT_FILETYPE, "filetype"},
    {EXT3_FEATURE_INCOMPAT_RECOVER, "needs_recovery"}, {EXT3_FEATURE_INCOMPAT_JOURNAL_DEV, "journal_dev"},
    {EXT2_FEATURE_INCOMPAT_META_BG, "meta_bg"}, {EXT4_FEATURE_INCOMPAT_EXTENTS, "extent"},
    {EXT4_FEATURE_INCOMPAT_64BIT, "64bit"}, {EXT4_FEATURE_INCOMPAT_MMP, "mmp"},
    {EXT4_FEATURE_INCOMPAT_FLEX_BG, "flex_bg"}, {EXT4_FEATURE_INCOMPAT_EA_INODE, "ea_inode"},
    {EXT4_FEATURE_INCOMPAT_DIRDATA, "dirdata"}, {EXT4_FEATURE_INCOMPAT_CSUM_SEED, "metadata_csum_seed"},
    {EXT4_FEATURE_INCOMPAT_LARGEDIR, "large_dir"}, {EXT4_FEATURE_INCOMPAT_INLINE_DATA, "inline_data"},
    {EXT4_FEATURE_INCOMPAT_ENCRYPT, "encrypt"}, {EXT4_FEATURE_INCOMPAT_CASEFOLD, "casefold"},
};
constexpr feature_name kRoCompat[] = {
    {EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER, "sparse_super"}, {EXT2_FEATURE_RO_COMPAT_LARGE_FILE, "large_file"},
    {EXT2_FEATURE_RO_COMPAT_BTREE_DIR, "btree_dir"}, {EXT4_FEATURE_RO_COMPAT_HUGE_FILE, "huge_file"},
    {EXT4_FEATURE_RO_COMPAT_GDT_CSUM, "uninit_bg"}, {EXT4_FEATURE_RO_COMPAT_DIR_NLINK, "dir_nlink"},
    {EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE, "extra_isize"}, {EXT4_FEATURE_RO_COMPAT_HAS_SNAPSHOT, "snapshot"},
    {EXT4_FEATURE_RO_COMPAT_QUOTA, "quota"}, {EXT4_FEATURE_RO_COMPAT_BIGALLOC, "bigalloc"},
    {EXT4_FEATURE_RO_COMPAT_METADATA_CSUM, "metadata_csum"}, {EXT4_FEATURE_RO_COMPAT_REPLICA, "replica"},
    {EXT4_FEATURE_RO_COMPAT_READONLY, "read-only"}, {EXT4_FEATURE_RO_COMPAT_PROJECT, "project"},
    {EXT4_FEATURE_RO_COMPAT_SHARED_BLOCKS, "shared_blocks"}, {EXT4_FEATURE_RO_COMPAT_VERITY, "verity"},
    {EXT4_FEATURE_RO_COMPAT_ORPHAN_PRESENT, "orphan_present"},
};

// "extent,64bit" or "0x80000000" for bits without a name.
template <size_t N>
std::string feature_names(uint32_t bits, const feature_name (&table)[N]) {
  std::string out;
  for (const auto& f : table) {
    if (bits & f.bit) {
      out += out.empty() ? "" : ",";
      out += f.name;
      bits &= ~f.bit;
    }
  }
  if (bits) {
    char hex[32];
    std::snprintf(hex, sizeof hex, "%sunknown 0x%x", out.empty() ? "" : ",", bits);
    out += hex;
  }
  return out;
}

// Features: refuse (EINVAL/ENOTSUP) or note read-only.
int check_features(mount* mp, ext2_mount* m, bool* force_ro) {
  const ext2_super_block& sb = m->m_sb;
  if (sb.s_rev_level == EXT2_GOOD_OLD_REV) {
    if (sb.s_feature_compat | sb.s_feature_incompat | sb.s_feature_ro_compat)
      VLOG_WARN("ext2 %s: feature flags set on a revision 0 filesystem: ignored (run e2fsck)", mp->mnt_from.c_str());
    return 0;
  }
  if (sb.s_feature_incompat & EXT3_FEATURE_INCOMPAT_RECOVER)
    return refuse(mp, ENOTSUP, "s_feature_incompat", "needs_recovery is set: the journal must be replayed (run e2fsck)");
  if (sb.s_feature_compat & EXT3_FEATURE_COMPAT_HAS_JOURNAL)
    return refuse(mp, ENOTSUP, "s_feature_compat", "has_journal: this is ext3/ext4, not ext2");
  if (uint32_t bad = sb.s_feature_incompat & ~EXT2_FEATURE_INCOMPAT_SUPP)
    return refuse(mp, ENOTSUP, "s_feature_incompat", "unsupported feature %s (0x%x)",
                  feature_names(bad, kIncompat).c_str(), bad);
  if (uint32_t ro = sb.s_feature_ro_compat & ~EXT2_FEATURE_RO_COMPAT_SUPP) {
    VLOG_WARN("ext2 %s: s_feature_ro_compat: unsupported feature %s (0x%x): mounting read-only",
              mp->mnt_from.c_str(), feature_names(ro, kRoCompat).c_str(), ro);
    *force_ro = true;
  }
  m->m_filetype = sb.s_feature_incompat & EXT2_FEATURE_INCOMPAT_FILETYPE;
  m->m_sparse_super = sb.s_feature_ro_compat & EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER;
  m->m_large_file = sb.s_feature_ro_compat & EXT2_FEATURE_RO_COMPAT_LARGE_FILE;
  m->m_ext_attr = sb.s_feature_compat & EXT2_FEATURE_COMPAT_EXT_ATTR;
  m->m_dir_index = sb.s_feature_compat & EXT2_FEATURE_COMPAT_DIR_INDEX;
  m->m_sparse_super2 = sb.s_feature_compat & EXT4_FEATURE_COMPAT_SPARSE_SUPER2;
  return 0;
}

// The largest file the block map and the 32-bit i_blocks can describe: the kernel's ext2_max_size.
uint64_t max_file_size(const ext2_mount* m) {
  const uint32_t bits = m->m_log_block_size;
  const uint64_t ppb = m->m_addr_per_block;
  uint64_t upper = ((1ull << 32) - 1) >> (bits - 9);  // i_blocks counts 512-byte units in 32 bits
  uint64_t res = EXT2_NDIR_BLOCKS + ppb + ppb * ppb + ppb * ppb * ppb;
  uint64_t meta = 1 + (1 + ppb) + (1 + ppb + ppb * ppb);
  if (res + meta > upper) {  // i_blocks, not the block tree, limits the size
    res = upper;
    upper -= EXT2_NDIR_BLOCKS + ppb;
    meta = 1;
    if (upper < ppb * ppb) {
      meta += 1 + (upper + ppb - 1) / ppb;
    } else {
      meta += 1 + ppb;
      upper -= ppb * ppb;
      meta += 1 + (upper + ppb - 1) / ppb + (upper + ppb * ppb - 1) / (ppb * ppb);
    }
    res -= meta;
  }
  uint64_t bytes = res << bits;
  if (bytes > static_cast<uint64_t>(INT64_MAX)) bytes = static_cast<uint64_t>(INT64_MAX);
  if (m->m_rev == EXT2_GOOD_OLD_REV && bytes > 0x7fffffffull) bytes = 0x7fffffffull;  // no large_file there
  return bytes;
}

// Geometry: every number the rest of the code computes with.
int check_geometry(mount* mp, ext2_mount* m, uint64_t dev_size) {
  const ext2_super_block& sb = m->m_sb;
  if (sb.s_magic != EXT2_SUPER_MAGIC) return refuse(mp, EINVAL, "s_magic", "0x%04x, not ext2 (0xEF53)", sb.s_magic);
  if (sb.s_rev_level > EXT2_DYNAMIC_REV) return refuse(mp, EINVAL, "s_rev_level", "%u (0 and 1 are known)", sb.s_rev_level);
  if (sb.s_log_block_size > EXT2_MAX_BLOCK_LOG_SIZE - EXT2_MIN_BLOCK_LOG_SIZE)
    return refuse(mp, EINVAL, "s_log_block_size", "%u (block size above 64 KiB)", sb.s_log_block_size);
  if (sb.s_log_frag_size != sb.s_log_block_size)
    return refuse(mp, EINVAL, "s_log_frag_size", "%u differs from s_log_block_size %u", sb.s_log_frag_size, sb.s_log_block_size);
  m->m_rev = sb.s_rev_level;
  m->m_log_block_size = EXT2_MIN_BLOCK_LOG_SIZE + sb.s_log_block_size;
  m->m_block_size = 1u << m->m_log_block_size;
  const uint32_t bs = m->m_block_size;
  if (m->m_rev == EXT2_GOOD_OLD_REV) {
    m->m_inode_size = EXT2_GOOD_OLD_INODE_SIZE;
    m->m_first_ino = EXT2_GOOD_OLD_FIRST_INO;
  } else {
    m->m_inode_size = sb.s_inode_size;
    m->m_first_ino = sb.s_first_ino;
    if (m->m_inode_size < EXT2_GOOD_OLD_INODE_SIZE || m->m_inode_size > bs || !std::has_single_bit(m->m_inode_size))
      return refuse(mp, EINVAL, "s_inode_size", "%u (a power of two in [128, block size %u])", m->m_inode_size, bs);
    if (m->m_first_ino < EXT2_GOOD_OLD_FIRST_INO)
      return refuse(mp, EINVAL, "s_first_ino", "%u (below 11)", m->m_first_ino);
  }
  const uint32_t want_first = bs == 1024 ? 1 : 0;
  if (sb.s_first_data_block != want_first)
    return refuse(mp, EINVAL, "s_first_data_block", "%u (must be %u with %u-byte blocks)", sb.s_first_data_block, want_first, bs);
  if (sb.s_blocks_per_group == 0 || sb.s_blocks_per_group > 8 * bs)
    return refuse(mp, EINVAL, "s_blocks_per_group", "%u (must be in [1, %u])", sb.s_blocks_per_group, 8 * bs);
  if (sb.s_frags_per_group != sb.s_blocks_per_group)
    return refuse(mp, EINVAL, "s_frags_per_group", "%u differs from s_blocks_per_group %u", sb.s_frags_per_group, sb.s_blocks_per_group);
  m->m_inodes_per_block = bs / m->m_inode_size;
  if (sb.s_inodes_per_group < m->m_inodes_per_block || sb.s_inodes_per_group > 8 * bs ||
      sb.s_inodes_per_group % m->m_inodes_per_block != 0)
    return refuse(mp, EINVAL, "s_inodes_per_group", "%u (must be a multiple of %u in [%u, %u])", sb.s_inodes_per_group,
                  m->m_inodes_per_block, m->m_inodes_per_block, 8 * bs);
  if (sb.s_blocks_count <= sb.s_first_data_block)
    return refuse(mp, EINVAL, "s_blocks_count", "%u (no data blocks)", sb.s_blocks_count);
  if (static_cast<uint64_t>(sb.s_blocks_count) * bs > dev_size)
    return refuse(mp, EINVAL, "s_blocks_count", "%u blocks of %u bytes, past the device's %llu bytes", sb.s_blocks_count,
                  bs, static_cast<unsigned long long>(dev_size));
  m->m_blocks_count = sb.s_blocks_count;
  m->m_first_data_block = sb.s_first_data_block;
  m->m_blocks_per_group = sb.s_blocks_per_group;
  m->m_inodes_per_group = sb.s_inodes_per_group;
  m->m_groups_count = (m->m_blocks_count - m->m_first_data_block + m->m_blocks_per_group - 1) / m->m_blocks_per_group;
  if (static_cast<uint64_t>(m->m_groups_count) * m->m_inodes_per_group != sb.s_inodes_count)
    return refuse(mp, EINVAL, "s_inodes_count", "%u, but %u groups x %u inodes per group", sb.s_inodes_count,
                  m->m_groups_count, m->m_inodes_per_group);
  m->m_inodes_count = sb.s_inodes_count;
  if (m->m_first_ino > m->m_inodes_count)
    return refuse(mp, EINVAL, "s_first_ino", "%u past s_inodes_count %u", m->m_first_ino, m->m_inodes_count);
  if (sb.s_r_blocks_count > sb.s_blocks_count)
    return refuse(mp, EINVAL, "s_r_blocks_count", "%u past s_blocks_count %u", sb.s_r_blocks_count, sb.s_blocks_count);
  m->m_itb_per_group = (m->m_inodes_per_group + m->m_inodes_per_block - 1) / m->m_inodes_per_block;
  m->m_addr_per_block = bs / 4;
  m->m_desc_per_block = bs / sizeof(ext2_group_desc);
  m->m_gdt_blocks = (m->m_groups_count + m->m_desc_per_block - 1) / m->m_desc_per_block;
  m->m_reserved_gdt = (sb.s_feature_compat & EXT2_FEATURE_COMPAT_RESIZE_INODE) ? sb.s_reserved_gdt_blocks : 0;
  if (m->m_blocks_per_group <= m->m_itb_per_group + 3 + m->m_gdt_blocks + m->m_reserved_gdt && m->m_groups_count > 1)
    return refuse(mp, EINVAL, "s_blocks_per_group", "%u too small for %u inode-table and %u descriptor blocks",
                  m->m_blocks_per_group, m->m_itb_per_group, m->m_gdt_blocks + m->m_reserved_gdt);
  if (sb.s_errors < EXT2_ERRORS_CONTINUE || sb.s_errors > EXT2_ERRORS_PANIC)
    VLOG_WARN("ext2 %s: s_errors: %u unknown: treated as continue", mp->mnt_from.c_str(), sb.s_errors);
  return 0;
}

// One descriptor: bitmaps and inode table inside its group, clear of the superblock/GDT copy and of each
// other; counts within the group's size.
int check_group(mount* mp, ext2_mount* m, uint32_t g) {
  const ext2_group_desc& d = m->m_groups[g].g_desc;
  uint32_t first = ext2_group_first_block(m, g);
  uint32_t last = (g + 1 == m->m_groups_count) ? m->m_blocks_count : first + m->m_blocks_per_group;  // exclusive
  uint32_t meta_end = first + (ext2_group_has_super(m, g) ? 1 + m->m_gdt_blocks + m->m_reserved_gdt : 0);
  auto inside = [&](uint64_t b, uint64_t n) { return b >= meta_end && b + n <= last; };
  char field[64];
  if (!inside(d.bg_block_bitmap, 1)) {
    std::snprintf(field, sizeof field, "group %u bg_block_bitmap", g);
    return refuse(mp, EINVAL, field, "%u outside [%u, %u)", d.bg_block_bitmap, meta_end, last);
  }
  if (!inside(d.bg_inode_bitmap, 1) || d.bg_inode_bitmap == d.bg_block_bitmap) {
    std::snprintf(field, sizeof field, "group %u bg_inode_bitmap", g);
    return refuse(mp, EINVAL, field, "%u outside [%u, %u) or on the block bitmap", d.bg_inode_bitmap, meta_end, last);
  }
  uint64_t it = d.bg_inode_table, ite = it + m->m_itb_per_group;
  auto in_table = [&](uint32_t b) { return b >= it && b < ite; };
  if (!inside(it, m->m_itb_per_group) || in_table(d.bg_block_bitmap) || in_table(d.bg_inode_bitmap)) {
    std::snprintf(field, sizeof field, "group %u bg_inode_table", g);
    return refuse(mp, EINVAL, field, "%u (+%u blocks) outside [%u, %u) or over a bitmap", d.bg_inode_table,
                  m->m_itb_per_group, meta_end, last);
  }
  if (d.bg_free_blocks_count > last - first || d.bg_free_inodes_count > m->m_inodes_per_group ||
      d.bg_used_dirs_count > m->m_inodes_per_group) {
    std::snprintf(field, sizeof field, "group %u counts", g);
    return refuse(mp, EINVAL, field, "free blocks %u, free inodes %u, dirs %u beyond the group", d.bg_free_blocks_count,
                  d.bg_free_inodes_count, d.bg_used_dirs_count);
  }
  // INODE_UNINIT (0x1) and BLOCK_UNINIT (0x2) would mean "trust the checksummed descriptor, not the bitmap":
  // meaningless without uninit_bg, so refused. INODE_ZEROED (0x4) is only a hint (mke2fs sets it after a
  // discard) and changes nothing for ext2: accepted, as the kernel does.
  constexpr uint16_t kUninitFlags = 0x1 | 0x2;
  if ((d.bg_flags & kUninitFlags) && !(m->m_sb.s_feature_ro_compat & EXT4_FEATURE_RO_COMPAT_GDT_CSUM)) {
    std::snprintf(field, sizeof field, "group %u bg_flags", g);
    return refuse(mp, EINVAL, field, "0x%x (uninit flags without uninit_bg)", d.bg_flags);
  }
  return 0;
}

int load_groups(mount* mp, ext2_mount* m) {
  m->m_groups.reset(new ext2_group[m->m_groups_count]);
  int64_t free_blocks = 0, free_inodes = 0;
  for (uint32_t b = 0; b < m->m_gdt_blocks; b++) {
    BufRef bp;
    if (int err = buf_meta_bread(m->m_devvp, gdt_first_block(m) + b, &bp))
      return refuse(mp, err, "group descriptors", "reading block %u failed (errno %d)", gdt_first_block(m) + b, err);
    for (uint32_t i = 0; i < m->m_desc_per_block; i++) {
      uint32_t g = b * m->m_desc_per_block + i;
      if (g >= m->m_groups_count) break;
      std::memcpy(&m->m_groups[g].g_desc, bp.data() + i * sizeof(ext2_group_desc), sizeof(ext2_group_desc));
    }
  }
  for (uint32_t g = 0; g < m->m_groups_count; g++) {
    TRY(check_group(mp, m, g));
    free_blocks += m->m_groups[g].g_desc.bg_free_blocks_count;
    free_inodes += m->m_groups[g].g_desc.bg_free_inodes_count;
    m->m_overhead_blocks += 2 + m->m_itb_per_group +
                            (ext2_group_has_super(m, g) ? 1 + m->m_gdt_blocks + m->m_reserved_gdt : 0);
  }
  m->m_overhead_blocks += m->m_first_data_block;
  m->m_free_blocks = free_blocks;
  m->m_free_inodes = free_inodes;
  return 0;
}

// The root must be a directory with blocks (the kernel's check).
int check_root(mount* mp, ext2_mount* m) {
  vnode* vp = nullptr;
  int err = ext2_iget(m, EXT2_ROOT_INO, &vp);
  if (err) return refuse(mp, err == ESTALE ? EINVAL : err, "root inode", "cannot be read (errno %d)", err);
  ext2_inode_info* ip = VTOI(vp);
  bool ok = S_ISDIR(ext2_i_mode(ip)) && ip->i_di.base.i_blocks != 0 && ext2_i_size(ip) != 0;
  mode_t mode = ext2_i_mode(ip);
  vnode_put(vp);
  if (!ok) return refuse(mp, EINVAL, "root inode", "mode 0%o is not a directory with blocks", mode);
  return 0;
}

// Marks the filesystem mounted: not clean, one more mount, the time.
int mark_mounted(ext2_mount* m) {
  {
    std::lock_guard g(m->m_sb_lock);
    ext2_super_block& sb = m->m_sb;
    if (sb.s_max_mnt_count > 0 && sb.s_mnt_count >= static_cast<uint16_t>(sb.s_max_mnt_count))
      VLOG_WARN("ext2 %s: maximal mount count reached, running e2fsck is recommended", m->m_mp->mnt_from.c_str());
    sb.s_mnt_count++;
    sb.s_mtime = static_cast<uint32_t>(time(nullptr));
    sb.s_state &= ~EXT2_VALID_FS;
  }
  return ext2_sbupdate(m, true);
}

void free_mount(mount* mp, ext2_mount* m) {
  if (mp->mnt_cache) (void)bufcache_destroy(mp);
  delete m;
  mp->mnt_data = nullptr;
  mp->mnt_devvp = nullptr;
}

// Reads the primary superblock before the cache exists. The read covers [0, 2048) rounded up to the device's
// sector size, into sector-aligned memory, so an O_DIRECT device (4 KiB sectors) can serve it too.
static int read_super(dev::device& d, ext2_super_block* sb) {
  const size_t sector = std::max<size_t>(d.sector_size(), 512);
  const size_t len = (EXT2_SUPER_OFFSET + sizeof *sb + sector - 1) / sector * sector;
  void* mem = std::aligned_alloc(std::max<size_t>(sector, 4096), (len + 4095) / 4096 * 4096);
  if (mem == nullptr) return ENOMEM;
  int err = dev::dev_sync_io(d, dev::io_op::read, 0, mem, len);
  if (!err) std::memcpy(sb, static_cast<char*>(mem) + EXT2_SUPER_OFFSET, sizeof *sb);
  std::free(mem);
  return err;
}

int ext2_mount_impl(mount* mp, const mount_args& args, ext2_wpath wpath) {
  if (mp->mnt_device == nullptr) return refuse(mp, EINVAL, "device", "none given");
  auto* m = new ext2_mount;
  m->m_mp = mp;
  m->m_wpath = wpath;
  if (int err = read_super(*mp->mnt_device, &m->m_sb)) {
    delete m;
    return refuse(mp, err, "superblock", "read failed (errno %d)", err);
  }
  bool force_ro = false;
  int err = check_geometry(mp, m, mp->mnt_device->size());
  if (!err) err = check_features(mp, m, &force_ro);
  // Every cache I/O is one or more whole blocks: a device that only moves whole sectors (O_DIRECT) must have
  // sectors no larger than a block.
  if (!err && m->m_block_size < mp->mnt_device->sector_size())
    err = refuse(mp, EINVAL, "s_log_block_size", "block size %u is smaller than the device's sector size %u "
                 "(O_DIRECT needs blocks of at least one sector)", m->m_block_size, mp->mnt_device->sector_size());
  if (err) {
    delete m;
    return err;
  }
  if (!(m->m_sb.s_state & EXT2_VALID_FS) || (m->m_sb.s_state & EXT2_ERROR_FS)) {
    VLOG_WARN("ext2 %s: s_state: 0x%x (%s): mounting read-only; run e2fsck", mp->mnt_from.c_str(), m->m_sb.s_state,
              (m->m_sb.s_state & EXT2_ERROR_FS) ? "errors found" : "not cleanly unmounted");
    force_ro = true;
  }
  m->m_max_file_size = max_file_size(m);
  bufcache_config cfg;
  cfg.block_size = m->m_block_size;
  cfg.cache_bytes = args.cache_bytes;
  cfg.flush_age_ms = args.flush_age_ms;
  m->m_direct_min = args.direct_min;
  if (wpath == ext2_wpath::buf) {  // the BSD buffer path: no coalescing anywhere, no read-ahead
    cfg.max_io_bytes = m->m_block_size;
    cfg.readahead_max_bytes = 0;
  }
  if ((err = bufcache_create(mp, mp->mnt_device, cfg))) {
    delete m;
    return refuse(mp, err, "buffer cache", "cannot be created (errno %d)", err);
  }
  mp->mnt_data = m;
  m->m_devvp = mp->mnt_devvp;
  mp->mnt_time_gran = m->m_inode_size > EXT2_GOOD_OLD_INODE_SIZE ? 1u : 1000000000u;  // ns in the extra fields
  mp->mnt_vnops = args.layers ? args.layers : wpath == ext2_wpath::sync ? &ext2_sync_vnop_table : &ext2_vnop_table;
  bool rdonly = args.rdonly || force_ro;
  m->m_rdonly = rdonly;
  // The caller's other flags (the atime rules: MNT_NOATIME, MNT_STRICTATIME, ...) stay: overwriting them
  // here is how noatime once reached read.cpp as relatime (generic/120).
  mp->mnt_flag = (mp->mnt_flag & ~uint32_t{MNT_RDONLY | MNT_SYNCHRONOUS | MNT_POSIXACL}) |
                 (rdonly ? uint32_t{MNT_RDONLY} : 0u) | (args.synchronous ? uint32_t{MNT_SYNCHRONOUS} : 0u);
  m->m_posix_acl = args.posix_acl && m->m_ext_attr;
  if (m->m_posix_acl) mp->mnt_flag |= MNT_POSIXACL;
  else if (args.posix_acl)
    VLOG_INFO("ext2 %s: no ext_attr feature: POSIX ACLs are off (tune2fs -O ext_attr turns it on)", mp->mnt_from.c_str());
  m->m_gen_seed = static_cast<uint32_t>(time(nullptr)) ^ m->m_sb.s_wtime;
  if ((err = load_groups(mp, m)) || (err = check_root(mp, m))) {
    free_mount(mp, m);
    return err;
  }
  if (!rdonly) {
    m->m_mounted_rw = true;
    if ((err = mark_mounted(m))) {
      free_mount(mp, m);
      return refuse(mp, err, "superblock", "write failed (errno %d)", err);
    }
  }
  return 0;
}

// Runs fn(vp) on every live vnode of the mount, each held by an iocount during the call.
template <class Fn>
int for_each_vnode(mount* mp, Fn fn) {
  std::vector<vnode*> vps;
  {
    std::lock_guard g(mp->mnt_vnode_mutex);
    for (auto& [id, vp] : mp->mnt_vnodes) {
      if (vp->v_lflag & VL_TERMINATE) continue;
      vp->v_iocount++;
      vps.push_back(vp);
    }
  }
  int first = 0;
  for (vnode* vp : vps) {
    int err = fn(vp);
    if (err && !first) first = err;
    vnode_put(vp);
  }
  return first;
}

// MNT_LAZY (the syncer, every few seconds): in-core inode changes go to their inode-table buffers as
// delayed writes, and the superblock's counts to theirs; the flusher writes them after the flush age, file
// data first. No data is pushed early (that is the flusher's and the cluster layer's), nothing waited for.
int ext2_sync_lazy(mount* mp) {
  ext2_mount* m = ext2_mount_of(mp);
  if (m->m_rdonly) return 0;
  const uint64_t now_ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
  bool wrote = false;
  int err = for_each_vnode(mp, [&](vnode* vp) {
    ext2_inode_info* ip = VTOI(vp);
    if (ip == nullptr) return 0;
    std::lock_guard g(ip->i_lock);
    const bool time_due = ip->i_time_dirty && now_ms - ip->i_time_dirty_ms >= kLazytimeExpireMs;
    if (!(ip->i_dirty || time_due) || ext2_i_nlink(ip) == 0) return 0;  // unlinked: freed at last reference
    wrote = true;
    return ext2_iupdate(ip, false);
  });
  // Freed blocks and inodes wait for a device flush (ext2_release_deferred). Released on every pass: a
  // flush every few seconds at most while files are being removed, and the bitmaps they dirty reach the
  // image with the next flusher pass, so an idle filesystem is consistent on the image.
  if (ext2_pending_frees(m)) {
    if (int e = ext2_release_deferred(m); e && !err) err = e;
    wrote = true;
  }
  // The group descriptors and superblock are rewritten only when something changed: an idle mount does
  // not write every flush age.
  uint64_t free_blocks = 0, free_inodes = 0;
  for (uint32_t g = 0; g < m->m_groups_count; g++) {
    std::lock_guard l(m->m_groups[g].g_lock);
    free_blocks += m->m_groups[g].g_desc.bg_free_blocks_count;
    free_inodes += m->m_groups[g].g_desc.bg_free_inodes_count;
  }
  bool counts_changed;
  {
    std::lock_guard g(m->m_sb_lock);
    counts_changed = m->m_sb.s_free_blocks_count != free_blocks || m->m_sb.s_free_inodes_count != free_inodes;
  }
  int e2 = (wrote || counts_changed) ? ext2_sbupdate(m, false) : 0;
  return err ? err : e2;
}

int ext2_sync_impl(mount* mp, int waitfor) {
  ext2_mount* m = ext2_mount_of(mp);
  if (m->m_rdonly && !m->m_mounted_rw) return 0;
  if (waitfor == MNT_LAZY) return ext2_sync_lazy(mp);
  const uint64_t names_lost = m->m_names_lost.load();  // every entry made before this is written below
  std::unordered_map<uint32_t, uint32_t> kept;         // the same for the kept trails
  {
    std::lock_guard g(m->m_names_lock);
    if (waitfor == MNT_WAIT) kept.swap(m->m_names_kept);
  }
  int err = 0;
  bool data_stable = false;
  if (waitfor == MNT_WAIT && !m->m_rdonly) {
    // Ordered (docs/durability.md, rule 7): every file's data, then one device flush, then the pointers,
    // inodes and names that reach it.
    err = for_each_vnode(mp, [](vnode* vp) {
      if (vp->v_type != vtype::VREG || VTOI(vp) == nullptr || !buf_vnode_isdirty(vp)) return 0;
      int e = cluster_push(vp, IO_SYNC);
      int e2 = buf_flushdirtyblks(vp, MNT_WAIT);
      return e ? e : e2;
    });
    int e = ext2_dev_flush(m);
    data_stable = !err && !e;
    if (e && !err) err = e;
  }
  if (int e = for_each_vnode(mp, [&](vnode* vp) {
        return ext2_fsync_vnode(vp, waitfor, /*flush_device=*/false, data_stable);
      }); e && !err)
    err = e;
  if (int e = m->m_rdonly || waitfor != MNT_WAIT ? 0 : ext2_release_deferred(m); e && !err) err = e;
  int e2 = m->m_rdonly ? 0 : ext2_sbupdate(m, false);
  // Without a wait, no flush can separate the data just started from the pointers to it: the metadata
  // waits for the flusher's next ordered pass.
  int e3 = waitfor == MNT_WAIT ? buf_flushdirtyblks(m->m_devvp, MNT_WAIT) : 0;
  int e4 = waitfor == MNT_WAIT ? ext2_dev_flush(m) : 0;
  if (waitfor == MNT_WAIT && !err && !e2 && !e3 && !e4) {
    m->m_names_synced = names_lost;
  } else if (!kept.empty()) {  // not known to be written: the trails stay (those kept meanwhile win)
    std::lock_guard g(m->m_names_lock);
    m->m_names_kept.merge(kept);
  }
  return err ? err : e2 ? e2 : e3 ? e3 : e4;
}

// ---- vfsops

namespace {

bool any_terminating(mount* mp) {
  std::lock_guard g(mp->mnt_vnode_mutex);
  for (auto& [id, vp] : mp->mnt_vnodes)
    if (vp->v_lflag & VL_TERMINATE) return true;
  return false;
}

// The sync before a remount read-only. The sync's vnode walk skips a vnode whose last reference is being
// dropped (VL_TERMINATE): its VNOP_INACTIVE writes it back on its own, and if the mount turned read-only
// meanwhile that write-back failed with EROFS after its blocks were allocated (integration 32 under load:
// a block in the bitmap that no inode points to). Writers are stopped (the kernel refuses a remount
// read-only while a file is open for writing), so it is enough to sync until a pass starts and ends with
// no vnode in termination and no free queued behind it: a vnode that starts terminating after that was
// clean at that pass. Bounded: EBUSY after about 10 s of terminations that do not end.
int sync_for_readonly(mount* mp) {
  ext2_mount* m = ext2_mount_of(mp);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    while (any_terminating(mp)) {
      if (std::chrono::steady_clock::now() > deadline) return EBUSY;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    TRY(ext2_sync_impl(mp, MNT_WAIT));
    if (!any_terminating(mp) && !ext2_pending_frees(m)) return 0;
    if (std::chrono::steady_clock::now() > deadline) return EBUSY;
  }
}

}  // namespace

// MNT_UPDATE (mount_args::update): remount read-only or read-write.
int ext2_update_impl(mount* mp, bool rdonly) {
  ext2_mount* m = ext2_mount_of(mp);
  if (rdonly == m->m_rdonly.load()) return 0;
  if (rdonly) {
    // Flush while still writable (inode updates, pending inodes, the superblock), refuse further writes,
    // then write the clean state as unmount does (the caller has stopped the writers: the kernel's side of
    // the remount refuses files open for writing).
    if (int err = sync_for_readonly(mp)) return err;
    m->m_rdonly = true;
    {
      std::lock_guard g(m->m_sb_lock);
      if (!(m->m_sb.s_state & EXT2_ERROR_FS)) m->m_sb.s_state |= EXT2_VALID_FS;
    }
    m->m_rdonly = false;  // ext2_sbupdate writes nothing on a read-only mount
    int e2 = ext2_sbupdate(m, true);
    m->m_rdonly = true;
    int e3 = buf_flushdirtyblks(m->m_devvp, MNT_WAIT);
    int e4 = ext2_dev_flush(m);
    return e2 ? e2 : e3 ? e3 : e4;
  }
  if (!m->m_mounted_rw) return EROFS;  // mounted read-only (asked, or unclean): the device may be read-only
  {
    std::lock_guard g(m->m_sb_lock);
    if (m->m_sb.s_state & EXT2_ERROR_FS) return EROFS;
  }
  m->m_rdonly = false;
  if (int err = mark_mounted(m)) {
    m->m_rdonly = true;
    return err;
  }
  return 0;
}

template <ext2_wpath W>
int vfs_mount_ext2(mount* mp, const mount_args& args, const vfs_context&) {
  try {
    if (args.update) return ext2_update_impl(mp, args.rdonly);
    return ext2_mount_impl(mp, args, W);
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
}

int vfs_unmount_ext2(mount* mp, bool force, const vfs_context&) {
  ext2_mount* m = ext2_mount_of(mp);
  // Idle vnodes (kept by the cache for their failed writes, vnode.h) are no one's: they do not make the
  // mount busy.
  if (size_t busy = vfs_busy_vnodes(mp)) {
    VLOG_WARN("ext2 %s: unmount%s: %zu vnodes still referenced", mp->mnt_from.c_str(), force ? " (forced)" : "", busy);
    if (!force) return EBUSY;
  }
  int err = ext2_sync_impl(mp, MNT_WAIT);  // the last retry of writes that failed before
  // Writes that still fail are given up: the cache lets their vnodes go and their reclaim discards the data,
  // logs it and keeps the inode in m_lost_writes; the sync above has returned the error.
  bufcache_release_holds(mp);
  vfs_reclaim_idle(mp);
  // The flusher holds vnodes for the length of a pass (an iocount on one in use, a hold on an idle one):
  // they go when it puts them. Waited for up to 5 s; a vnode still referenced then is a caller's (EBUSY).
  for (int i = 0; i < 500; i++) {
    {
      std::lock_guard g(mp->mnt_vnode_mutex);
      if (mp->mnt_vnodes.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    vfs_reclaim_idle(mp);
  }
  if (m->m_mounted_rw) {
    {
      std::lock_guard g(m->m_sb_lock);
      if (!(m->m_sb.s_state & EXT2_ERROR_FS)) m->m_sb.s_state |= EXT2_VALID_FS;
    }
    bool was_ro = m->m_rdonly.exchange(false);  // the clean/error state is written even after remount-ro
    int e2 = ext2_sbupdate(m, true);
    m->m_rdonly = was_ro;
    int e3 = buf_flushdirtyblks(m->m_devvp, MNT_WAIT);
    int e4 = ext2_dev_flush(m);
    if (!err) err = e2 ? e2 : e3 ? e3 : e4;
  }
  {
    std::lock_guard g(mp->mnt_vnode_mutex);
    if (!mp->mnt_vnodes.empty()) return err ? err : EBUSY;  // forced, but vnodes still live: keep the cache
  }
  int e5 = bufcache_destroy(mp);
  if (!err) err = e5;
  delete m;
  mp->mnt_data = nullptr;
  mp->mnt_devvp = nullptr;
  return err;
}

int vfs_root_ext2(mount* mp, vnode** vpp, const vfs_context&) {
  return ext2_iget(ext2_mount_of(mp), EXT2_ROOT_INO, vpp);
}

int vfs_statfs_ext2(mount* mp, struct statvfs* sbp, const vfs_context&) {
  ext2_mount* m = ext2_mount_of(mp);
  std::memset(sbp, 0, sizeof *sbp);
  // Blocks waiting for a device flush to be freed (deferred frees) are free to anyone who asks: an
  // allocation that needs them releases them first.
  int64_t bfree = m->m_free_blocks.load() + static_cast<int64_t>(m->m_pending_nblocks.load());
  int64_t ifree = m->m_free_inodes.load() + static_cast<int64_t>(ext2_pending_inodes(m));
  if (bfree < 0) bfree = 0;
  if (ifree < 0) ifree = 0;
  uint64_t reserved;
  {
    std::lock_guard g(m->m_sb_lock);
    reserved = m->m_sb.s_r_blocks_count;
    std::memcpy(&sbp->f_fsid, m->m_sb.s_uuid, sizeof sbp->f_fsid);
  }
  sbp->f_bsize = m->m_block_size;
  sbp->f_frsize = m->m_block_size;
  sbp->f_blocks = m->m_blocks_count - m->m_overhead_blocks;
  sbp->f_bfree = static_cast<fsblkcnt_t>(bfree);
  sbp->f_bavail = static_cast<fsblkcnt_t>(ext2_statfs_avail(m, static_cast<uint64_t>(bfree), reserved));
  sbp->f_files = m->m_inodes_count;
  sbp->f_ffree = static_cast<fsfilcnt_t>(ifree);
  sbp->f_favail = static_cast<fsfilcnt_t>(ifree);
  sbp->f_namemax = EXT2_NAME_LEN;
  sbp->f_flag = (m->m_rdonly ? ST_RDONLY : 0);
  return 0;
}

int vfs_sync_ext2(mount* mp, int waitfor, const vfs_context&) {
  try {
    return ext2_sync_impl(mp, waitfor);
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
}

int vfs_vget_ext2(mount* mp, uint64_t ino, vnode** vpp, const vfs_context&) {
  ext2_mount* m = ext2_mount_of(mp);
  if (ino > UINT32_MAX || !ext2_ino_ok(m, static_cast<uint32_t>(ino))) return EINVAL;
  try {
    return ext2_iget(m, static_cast<uint32_t>(ino), vpp);
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
}

}  // namespace

// One vfsops per table: they differ only in the write path their mount records.
const vfsops ext2_vfsops = {
    "ext2", vfs_mount_ext2<ext2_wpath::cluster>, vfs_unmount_ext2, vfs_root_ext2, vfs_statfs_ext2, vfs_sync_ext2,
    vfs_vget_ext2,
};
const vfsops ext2_buf_vfsops = {
    "ext2-buf", vfs_mount_ext2<ext2_wpath::buf>, vfs_unmount_ext2, vfs_root_ext2, vfs_statfs_ext2, vfs_sync_ext2,
    vfs_vget_ext2,
};
const vfsops ext2_direct_vfsops = {
    "ext2-direct", vfs_mount_ext2<ext2_wpath::direct>, vfs_unmount_ext2, vfs_root_ext2, vfs_statfs_ext2,
    vfs_sync_ext2, vfs_vget_ext2,
};
const vfsops ext2_sync_vfsops = {
    "ext2-sync", vfs_mount_ext2<ext2_wpath::sync>, vfs_unmount_ext2, vfs_root_ext2, vfs_statfs_ext2, vfs_sync_ext2,
    vfs_vget_ext2,
};

int ext2_dev_flush(ext2_mount* m) {
  return dev::dev_sync_io(*m->m_mp->mnt_device, dev::io_op::flush, 0, nullptr, 0);
}

// Copies the in-core descriptors of the GDT block `b` into its buffer; writes it if any was dirty.
static int write_gdt_block(ext2_mount* m, uint32_t b, bool wait) {
  uint32_t g0 = b * m->m_desc_per_block;
  uint32_t g1 = std::min(g0 + m->m_desc_per_block, m->m_groups_count);
  bool dirty = false;
  for (uint32_t g = g0; g < g1; g++) {
    std::lock_guard l(m->m_groups[g].g_lock);
    dirty |= m->m_groups[g].g_dirty;
  }
  if (!dirty) return 0;
  BufRef bp;
  TRY(buf_meta_bread(m->m_devvp, gdt_first_block(m) + b, &bp));
  for (uint32_t g = g0; g < g1; g++) {
    std::lock_guard l(m->m_groups[g].g_lock);
    std::memcpy(bp.data() + (g - g0) * sizeof(ext2_group_desc), &m->m_groups[g].g_desc, sizeof(ext2_group_desc));
    m->m_groups[g].g_dirty = false;
  }
  if (wait) return buf_bwrite(std::move(bp));
  buf_bdwrite(std::move(bp));
  return 0;
}

static int write_super(ext2_mount* m, bool wait) {
  BufRef bp;
  TRY(buf_meta_bread(m->m_devvp, super_block_nr(m), &bp));
  {
    std::lock_guard g(m->m_sb_lock);
    m->m_sb.s_wtime = static_cast<uint32_t>(time(nullptr));
    std::memcpy(bp.data() + super_block_off(m), &m->m_sb, sizeof m->m_sb);
  }
  if (wait) return buf_bwrite(std::move(bp));
  buf_bdwrite(std::move(bp));
  return 0;
}

int ext2_sbupdate(ext2_mount* m, bool wait) {
  if (m->m_rdonly) return 0;
  uint64_t free_blocks = 0, free_inodes = 0;
  for (uint32_t g = 0; g < m->m_groups_count; g++) {
    std::lock_guard l(m->m_groups[g].g_lock);
    free_blocks += m->m_groups[g].g_desc.bg_free_blocks_count;
    free_inodes += m->m_groups[g].g_desc.bg_free_inodes_count;
  }
  int first = 0;
  for (uint32_t b = 0; b < m->m_gdt_blocks; b++) {
    int err = write_gdt_block(m, b, wait);
    if (err && !first) first = err;
  }
  {
    std::lock_guard g(m->m_sb_lock);
    m->m_sb.s_free_blocks_count = static_cast<uint32_t>(free_blocks);
    m->m_sb.s_free_inodes_count = static_cast<uint32_t>(free_inodes);
  }
  int err = write_super(m, wait);
  return first ? first : err;
}

int ext2_write_super_error(ext2_mount* m) { return write_super(m, true); }

uint64_t ext2_statfs_avail(const ext2_mount* m, uint64_t bfree, uint64_t reserved) {
  const uint64_t usable = bfree > reserved ? bfree - reserved : 0;
  if (usable <= EXT2_NDIR_BLOCKS) return usable;
  // Mapping `usable` data blocks in one file takes at most one indirect block per `per` of them, one
  // second-level block per per^2 and one third-level per per^3, plus the double and triple indirect tops.
  const uint64_t per = m->m_block_size / 4;
  uint64_t cost = 2;
  for (uint64_t span = per; span <= (uint64_t{1} << 40); span *= per) cost += (usable + span - 1) / span;
  return usable > cost ? usable - cost : 0;
}

}  // namespace vnopfs::ext2

// dir.cpp: directories: opendir, readdir, readdirplus, releasedir, fsyncdir.
//
// The FUSE offset of an entry is the cookie VNOP_READDIR gave for resuming after it (0 = start), so offsets
// stay valid while the directory changes. readdirplus gathers a page of entries under the directory's
// shared lock, then (still holding it, so the names cannot go) looks each one up and counts one lookup per
// entry it adds: "." and ".." are not looked up or counted, and an entry that does not fit is not counted.
#include <sys/stat.h>

#include <cstring>
#include <string>
#include <vector>

#include "src/fuse/frontend.h"

namespace vnopfs::fuse {

namespace {

handle* fh_of(const fuse_file_info* fi) { return reinterpret_cast<handle*>(fi->fh); }

struct gathered {
  std::string name;
  uint64_t ino;
  uint8_t type;
  uint64_t cookie;
};

struct gather_ctx {
  fuse_req_t req;
  size_t limit;  // bytes of reply
  size_t used = 0;
  bool plus;
  std::vector<gathered> out;
};

int gather_filler(void* p, const dirent_entry& e) {
  auto* g = static_cast<gather_ctx*>(p);
  std::string name(e.name);
  size_t need = g->plus ? fuse_add_direntry_plus(g->req, nullptr, 0, name.c_str(), nullptr, 0)
                        : fuse_add_direntry(g->req, nullptr, 0, name.c_str(), nullptr, 0);
  if (g->used + need > g->limit) return 1;  // not taken: the next call resumes at this entry
  g->used += need;
  g->out.push_back({std::move(name), e.ino, e.d_type, e.next_cookie});
  return 0;
}

bool dot_or_dotdot(const std::string& n) { return n == "." || n == ".."; }

int do_readdir(fuse_req_t req, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  frontend& f = fe(req);
  handle* h = fh_of(fi);
  if (!h) return EBADF;
  vnode* dvp = h->vp;
  vfs_context ctx = make_context(req, plus);
  gather_ctx g{req, size, 0, plus, {}};
  std::vector<char> buf(size);
  size_t pos = 0;
  vn_shared l(dvp);
  int eof = 0;
  int err = VNOP_READDIR(dvp, static_cast<uint64_t>(off), gather_filler, static_cast<void*>(&g), &eof, &ctx);
  if (err && g.out.empty()) return err;
  for (auto& e : g.out) {
    struct stat st{};
    st.st_ino = e.ino;
    st.st_mode = static_cast<mode_t>(e.type) << 12;
    size_t n;
    if (!plus) {
      n = fuse_add_direntry(req, buf.data() + pos, size - pos, e.name.c_str(), &st, static_cast<off_t>(e.cookie));
      if (n > size - pos) break;
    } else {
      fuse_entry_param ep{};
      ep.attr = st;
      iocount_ref vp;
      if (!dot_or_dotdot(e.name)) {
        componentname cn{e.name.data(), e.name.size()};
        int lerr = VNOP_LOOKUP(dvp, &cn, vp.out(), &ctx);
        if (lerr == 0) lerr = make_entry(req, vp.get(), ctx, &ep);  // counts one lookup
        if (lerr) {
          if (pos == 0) return lerr;
          break;  // reply what is filled; the kernel asks again from this entry's offset
        }
      }
      n = fuse_add_direntry_plus(req, buf.data() + pos, size - pos, e.name.c_str(), &ep,
                                 static_cast<off_t>(e.cookie));
      if (n > size - pos) {
        if (ep.ino) f.inodes->forget(ep.ino, 1);  // did not fit: the kernel never saw it
        break;
      }
    }
    pos += n;
  }
  fuse_reply_buf(req, buf.data(), pos);
  return 0;
}

int do_fsyncdir(fuse_req_t req, int datasync, fuse_file_info* fi) {
  handle* h = fh_of(fi);
  if (!h) return EBADF;
  vfs_context ctx = make_context(req, false);
  TRY(VNOP_FSYNC(h->vp, datasync ? MNT_DWAIT : MNT_WAIT, &ctx));
  fuse_reply_err(req, 0);
  return 0;
}

}  // namespace

void ll_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  run(req, [&] { return dir_open(req, ino, fi); });
}
void ll_readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  run(req, [&] { return do_readdir(req, size, off, fi, false); });
}
void ll_readdirplus(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  run(req, [&] { return do_readdir(req, size, off, fi, true); });
}
void ll_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  run(req, [&] {
    dir_close(req, fi);
    fuse_reply_err(req, 0);
    return 0;
  });
}
void ll_fsyncdir(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  run(req, [&] { return do_fsyncdir(req, datasync, fi); });
}

}  // namespace vnopfs::fuse

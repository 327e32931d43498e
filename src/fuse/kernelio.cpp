// kernelio.cpp: the session's I/O on /dev/fuse (fuse_session_custom_io): plain read and writev, except
// that the INIT reply gets the flags libfuse 3.14 computes but never sends (or cannot express).
//
// libfuse 3.14's do_init maps conn->want to INIT flags bit by bit and has no line for
// FUSE_CAP_PARALLEL_DIROPS or FUSE_CAP_HANDLE_KILLPRIV (libfuse#884/#861, fixed in 3.17), so the kernel
// never sees them. The read hook remembers the INIT request (its unique id and the flags the kernel
// offers); the writev hook ORs the wanted bits into that one reply if the kernel offered them.
// FUSE_HANDLE_KILLPRIV_V2 (no FUSE_CAP_ in 3.14 at all) is added the same way, and the per-request bits it
// makes the kernel send (FUSE_WRITE_KILL_SUIDGID, FUSE_OPEN_KILL_SUIDGID), which 3.14 drops before the
// handler, are kept per worker thread by the read hook. Every other request and reply passes through
// untouched: a few header loads per read, one id compare per reply until INIT is answered, nothing after.
#include <linux/fuse.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "src/fuse/frontend.h"

namespace vnopfs::fuse {

namespace {

// The last request this worker thread read: libfuse's MT loop processes a request on the thread that
// read it, right after the read, so the handler finds its own request's bits here.
struct last_request {
  uint32_t opcode = 0;
  uint64_t nodeid = 0;
  bool kill_suidgid = false;
};
thread_local last_request t_last;

template <class Arg>
bool read_arg(const fuse_in_header* in, ssize_t n, Arg* arg) {
  if (static_cast<size_t>(n) < sizeof(fuse_in_header) + sizeof(Arg)) return false;
  std::memcpy(arg, in + 1, sizeof(Arg));
  return true;
}

// FUSE_WRITE_KILL_SUIDGID and FUSE_OPEN_KILL_SUIDGID: libfuse 3.14 hands neither to the handler.
void note_request(const fuse_in_header* in, ssize_t n) {
  t_last.opcode = in->opcode;
  t_last.nodeid = in->nodeid;
  t_last.kill_suidgid = false;
  switch (in->opcode) {
    case FUSE_WRITE: {
      fuse_write_in a;
      t_last.kill_suidgid = read_arg(in, n, &a) && (a.write_flags & FUSE_WRITE_KILL_SUIDGID);
      break;
    }
    case FUSE_OPEN: {
      fuse_open_in a;
      t_last.kill_suidgid = read_arg(in, n, &a) && (a.open_flags & FUSE_OPEN_KILL_SUIDGID);
      break;
    }
    case FUSE_CREATE: {
      fuse_create_in a;
      t_last.kill_suidgid = read_arg(in, n, &a) && (a.open_flags & FUSE_OPEN_KILL_SUIDGID);
      break;
    }
    default:
      break;
  }
}

ssize_t io_read(int fd, void* buf, size_t len, void* userdata) {
  ssize_t n = ::read(fd, buf, len);
  if (n >= static_cast<ssize_t>(sizeof(fuse_in_header))) {
    const auto* in = static_cast<const fuse_in_header*>(buf);
    note_request(in, n);
    if (in->opcode == FUSE_INIT) {
      auto* f = static_cast<frontend*>(userdata);
      // The kernel sends INIT once, before anything else, and waits for its reply: no reply can race
      // with this store (the writev hook reads it on the thread that answers INIT, after this read).
      fuse_init_in arg{};
      size_t have = static_cast<size_t>(n) - sizeof(fuse_in_header);
      std::memcpy(&arg, in + 1, std::min(have, sizeof arg));
      uint64_t flags = arg.flags;
      if (flags & FUSE_INIT_EXT) flags |= static_cast<uint64_t>(arg.flags2) << 32;
      f->kinit.offered = flags;
      f->kinit.major = arg.major;
      f->kinit.minor = arg.minor;
      f->kinit.unique.store(in->unique, std::memory_order_release);
    }
  }
  return n;
}

// The INIT reply with the extra flags: iov[0] the header, iov[1] fuse_init_out (libfuse sends it whole
// for protocol minors >= 23; an older kernel gets its reply untouched).
ssize_t send_init_reply(frontend* f, int fd, struct iovec* iov, int count) {
  auto* oh = static_cast<const fuse_out_header*>(iov[0].iov_base);
  if (oh->error != 0 || count != 2 || iov[1].iov_len < sizeof(fuse_init_out)) return ::writev(fd, iov, count);
  fuse_init_out out;
  std::memcpy(&out, iov[1].iov_base, sizeof out);
  uint64_t flags = out.flags;
  if (flags & FUSE_INIT_EXT) flags |= static_cast<uint64_t>(out.flags2) << 32;
  flags |= f->kinit.add & f->kinit.offered;
  out.flags = static_cast<uint32_t>(flags);
  if (flags & FUSE_INIT_EXT) out.flags2 = static_cast<uint32_t>(flags >> 32);
  f->kinit.replied = flags;
  f->kinit.killpriv_v2 = (flags & FUSE_HANDLE_KILLPRIV_V2) != 0;
  f->kinit.max_write = out.max_write;
  f->kinit.max_pages = (flags & FUSE_MAX_PAGES) ? out.max_pages : 32;
  f->kinit.max_readahead = out.max_readahead;
  struct iovec v[2] = {iov[0], {&out, iov[1].iov_len}};
  if (iov[1].iov_len > sizeof out) v[1].iov_len = sizeof out;  // never past our copy
  ssize_t n = ::writev(fd, v, 2);
  if (n >= 0) {
    std::fprintf(stderr,
                 "vnopfs: FUSE %u.%u INIT: kernel offered 0x%llx, replied 0x%llx (libfuse's + 0x%llx), "
                 "max_write %u, max_pages %u, max_readahead %u\n",
                 f->kinit.major, f->kinit.minor, static_cast<unsigned long long>(f->kinit.offered),
                 static_cast<unsigned long long>(flags),
                 static_cast<unsigned long long>(f->kinit.add & f->kinit.offered), out.max_write,
                 f->kinit.max_pages, out.max_readahead);
  }
  return n;
}

ssize_t io_writev(int fd, struct iovec* iov, int count, void* userdata) {
  auto* f = static_cast<frontend*>(userdata);
  uint64_t init = f->kinit.unique.load(std::memory_order_acquire);
  if (init != 0 && count >= 1 && iov[0].iov_len >= sizeof(fuse_out_header) &&
      static_cast<const fuse_out_header*>(iov[0].iov_base)->unique == init) {
    f->kinit.unique.store(0, std::memory_order_relaxed);  // answered: the hook goes quiet
    return send_init_reply(f, fd, iov, count);
  }
  return ::writev(fd, iov, count);
}

}  // namespace

uint64_t init_flags_libfuse_drops(unsigned want, bool killpriv_v2) {
  uint64_t add = killpriv_v2 ? FUSE_HANDLE_KILLPRIV_V2 : 0;
  if (want & FUSE_CAP_PARALLEL_DIROPS) add |= FUSE_PARALLEL_DIROPS;
  if (want & FUSE_CAP_HANDLE_KILLPRIV) add |= FUSE_HANDLE_KILLPRIV;
  return add;
}

bool request_kills_suidgid(uint32_t opcode, fuse_ino_t ino) {
  return t_last.kill_suidgid && t_last.opcode == opcode && t_last.nodeid == ino;
}

int install_kernel_io(fuse_session* se) {
  static const fuse_custom_io io = {
      .writev = io_writev,
      .read = io_read,
      .splice_receive = nullptr,  // no splice: see ll_init
      .splice_send = nullptr,
  };
  int fd = fuse_session_fd(se);
  if (fd < 0) return EBADF;
  int rc = fuse_session_custom_io(se, &io, fd);
  return rc < 0 ? -rc : 0;
}

}  // namespace vnopfs::fuse

// probes/uring.cpp: does this machine run io_uring? Exit 0 when a ring can be set up and a NOP completes,
// 1 otherwise. Uses liburing directly and nothing of vnopfs, so scripts/test can tell "the machine lacks
// io_uring" from "vnopfs's uring device is broken" when a test skips under CI=true.
#include <liburing.h>

#include <cstdio>
#include <cstring>

int main() {
  io_uring ring;
  if (int e = io_uring_queue_init(2, &ring, 0); e < 0) {
    std::printf("io_uring_queue_init: %s\n", std::strerror(-e));
    return 1;
  }
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_nop(sqe);
  int rc = io_uring_submit(&ring) == 1 ? 0 : 1;
  io_uring_cqe* cqe = nullptr;
  if (rc == 0 && (io_uring_wait_cqe(&ring, &cqe) != 0 || cqe->res != 0)) rc = 1;
  io_uring_queue_exit(&ring);
  return rc;
}

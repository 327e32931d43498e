// dio_cycle.c: asynchronous O_DIRECT writes of alternating patterns over a whole file while other processes
// read it buffered; after each write completes, a buffered read must see the new bytes (generic/451's
// aio-dio-cycle-write, written for the integration suite: raw io_submit, no libaio).
//   dio_cycle FILE SECONDS READERS     exit 0: never stale; 1: stale data (first offset printed); 2: error
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { kSize = 640 * 1024 };

static int read_all(const char* path, char* buf, int flags) {
  int fd = open(path, O_RDONLY | flags);
  if (fd < 0) return -1;
  ssize_t n = pread(fd, buf, kSize, 0);
  close(fd);
  return n == kSize ? 0 : -1;
}

int main(int argc, char** argv) {
  if (argc != 4) { fprintf(stderr, "usage: dio_cycle FILE SECONDS READERS\n"); return 2; }
  const char* path = argv[1];
  const int seconds = atoi(argv[2]), readers = atoi(argv[3]);
  char *pat[2], *cmp;
  if (posix_memalign((void**)&pat[0], 4096, kSize) || posix_memalign((void**)&pat[1], 4096, kSize) ||
      posix_memalign((void**)&cmp, 4096, kSize)) return 2;
  memset(pat[0], 0x5a, kSize);
  memset(pat[1], 0xa5, kSize);
  int fd = open(path, O_CREAT | O_RDWR | O_DIRECT, 0644);
  if (fd < 0 || ftruncate(fd, kSize) || pwrite(fd, pat[0], kSize, 0) != kSize) { perror("init"); return 2; }
  fsync(fd);
  close(fd);
  pid_t kids[64];
  int nk = readers < 64 ? readers : 64;
  for (int i = 0; i < nk; i++) {
    if ((kids[i] = fork()) == 0) {
      char* b = malloc(kSize);
      for (;;) read_all(path, b, 0);
    }
  }
  aio_context_t ctx = 0;
  if (syscall(SYS_io_setup, 1, &ctx)) { perror("io_setup"); return 2; }
  int rc = 0;
  long rounds = 0;
  time_t end = time(NULL) + seconds;
  while (time(NULL) < end && rc == 0) {
    const int i = (int)(++rounds % 2);
    fd = open(path, O_RDWR | O_DIRECT);
    if (fd < 0) { perror("open"); rc = 2; break; }
    struct iocb cb;
    memset(&cb, 0, sizeof cb);
    cb.aio_lio_opcode = IOCB_CMD_PWRITE;
    cb.aio_fildes = (unsigned)fd;
    cb.aio_buf = (unsigned long)pat[i];
    cb.aio_nbytes = kSize;
    struct iocb* cbs[1] = {&cb};
    struct io_event ev;
    if (syscall(SYS_io_submit, ctx, 1, cbs) != 1 || syscall(SYS_io_getevents, ctx, 1, 1, &ev, NULL) != 1 ||
        ev.res != kSize) {
      fprintf(stderr, "aio write failed (res %lld)\n", (long long)ev.res);
      rc = 2;
    }
    close(fd);
    if (rc) break;
    if (read_all(path, cmp, 0)) { perror("buffered read"); rc = 2; break; }
    for (int off = 0; off < kSize; off++) {
      if (cmp[off] != pat[i][off]) {
        fprintf(stderr, "stale data from a buffered read after round %ld: offset %d holds 0x%02x, not 0x%02x\n",
                rounds, off, (unsigned char)cmp[off], (unsigned char)pat[i][off]);
        rc = 1;
        break;
      }
    }
  }
  for (int i = 0; i < nk; i++) kill(kids[i], SIGKILL);
  for (int i = 0; i < nk; i++) waitpid(kids[i], NULL, 0);
  syscall(SYS_io_destroy, ctx);
  if (rc == 0) printf("%ld rounds, never stale\n", rounds);
  return rc;
}

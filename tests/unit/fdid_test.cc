// Where the shim keeps its fds (shim/common/fdid.h) and how libunwind checks memory
// under it (shim/unwind/unwind_mem.h): high numbers, nothing done to a number that
// changed hands, no fd held while waiting, and a memory probe that needs no
// fd and changes nothing.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "shim/common/fdid.h"
#include "shim/unwind/unwind.h"
#include "shim/unwind/unwind_mem.h"

extern "C" {
// The abort path's symbols tramp's assembly refers to; unused here.
int ks_abort_trampoline_fire(long k) { return static_cast<int>(k) * 0; }
void ks_abort_exit(void) { abort(); }
}

namespace {

// The lowest number open() gives now.
int LowestFree() {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  close(fd);
  return fd;
}

TEST(FdHigh, MovesAFreshFdAboveTheFloorAndFreesTheLowNumber) {
  int low = LowestFree();
  int fd = ks_fd_high(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_GE(fd, KS_FD_FLOOR);
  EXPECT_EQ(LowestFree(), low);
  EXPECT_EQ(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  int type = 0;
  socklen_t len = sizeof type;
  EXPECT_EQ(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len), 0);
  EXPECT_EQ(type, SOCK_STREAM);
  close(fd);
}

TEST(FdHigh, KeepsErrnoOfAFailedCreation) {
  errno = 0;
  EXPECT_EQ(ks_fd_high(socket(12345, SOCK_STREAM, 0)), -1);
  EXPECT_EQ(errno, EAFNOSUPPORT);
}

TEST(FdHigh, FollowsALowSoftLimit) {
  struct rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  struct rlimit low = old;
  low.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  EXPECT_EQ(ks_fd_floor(), 32);
  int fd = ks_fd_high(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_GE(fd, 32);
  EXPECT_LT(fd, 64);
  close(fd);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  EXPECT_EQ(ks_fd_floor(), old.rlim_cur >= 512 ? KS_FD_FLOOR : static_cast<int>(old.rlim_cur / 2));
}

TEST(FdId, LeavesANumberThatChangedHandsAlone) {
  int fd = ks_fd_high(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct ks_fdid id;
  ASSERT_EQ(ks_fdid_get(fd, &id), 0);
  int file = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_EQ(dup2(file, fd), fd);   // the program put its file on our number
  EXPECT_FALSE(ks_fdid_same(fd, &id));
  EXPECT_EQ(ks_fdid_close(fd, &id), 0);
  EXPECT_NE(fcntl(fd, F_GETFD), -1) << "the program's file was closed";
  close(fd);
  close(file);
}

// Every eventfd has the same (st_dev, st_ino): the anonymous inode. The
// private duplicate and kcmp tell ours from another put on its number.
TEST(FdId, TellsAnEventfdFromAnotherOnTheSameNumber) {
  int ours = ks_fd_high(eventfd(0, EFD_CLOEXEC));
  int dup = ks_fdid_dup(ours);
  ASSERT_GE(dup, KS_FD_FLOOR);
  EXPECT_TRUE(ks_fdid_same_dup(ours, dup));
  int theirs = eventfd(0, EFD_CLOEXEC);
  struct ks_fdid a, b;
  ASSERT_EQ(ks_fdid_get(theirs, &a), 0);
  ASSERT_EQ(ks_fdid_get(ours, &b), 0);
  EXPECT_EQ(a.ino, b.ino) << "eventfds no longer share an inode: the duplicate is not needed";
  ASSERT_EQ(dup2(theirs, ours), ours);
  EXPECT_FALSE(ks_fdid_same_dup(ours, dup));
  close(ours);
  close(theirs);
  close(dup);
}

// Without a duplicate (no number free for one) only the kind is checked: a
// regular file on the number is never taken for the eventfd.
TEST(FdId, WithoutADuplicateARegularFileIsStillNotTheEventfd) {
  int ours = ks_fd_high(eventfd(0, EFD_CLOEXEC));
  EXPECT_TRUE(ks_fdid_same_dup(ours, -1));
  int file = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_EQ(dup2(file, ours), ours);
  EXPECT_FALSE(ks_fdid_same_dup(ours, -1));
  close(ours);
  close(file);
}

struct Listener {
  int fd = -1;
  struct ks_fdid id;
  struct sockaddr_un addr = {};
  socklen_t alen = 0;
  Listener() {
    fd = ks_fd_high(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    addr.sun_family = AF_UNIX;
    std::string name = "ks-fdid-test-" + std::to_string(getpid());
    memcpy(addr.sun_path + 1, name.data(), name.size());
    alen = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + 1 + name.size());
    EXPECT_EQ(bind(fd, reinterpret_cast<struct sockaddr*>(&addr), alen), 0);
    EXPECT_EQ(listen(fd, 8), 0);
    EXPECT_EQ(ks_fdid_get(fd, &id), 0);
  }
  ~Listener() { close(fd); }
  int Connect() {
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_EQ(connect(c, reinterpret_cast<struct sockaddr*>(&addr), alen), 0);
    return c;
  }
};

// A blocked accept4 holds the lowest free number for as long as it waits;
// ks_fd_accept waits holding none.
TEST(FdAccept, WaitsWithoutHoldingANumber) {
  Listener l;
  int low = LowestFree();
  std::atomic<int> got{-2};
  std::thread waiter([&] {
    int fd;
    do
      fd = ks_fd_accept(l.fd, &l.id);
    while (fd < 0 && errno == EINTR);
    got = fd;
  });
  usleep(100 * 1000);   // the waiter sits in poll by now (or soon: either way)
  EXPECT_EQ(LowestFree(), low);
  int c = l.Connect();
  waiter.join();
  EXPECT_GE(got.load(), KS_FD_FLOOR);
  close(c);
  EXPECT_EQ(LowestFree(), low);
  close(got.load());
}

TEST(FdAccept, NothingPendingIsEintrAfterTheWait) {
  Listener l;
  errno = 0;
  EXPECT_EQ(ks_fd_accept(l.fd, &l.id), -1);
  EXPECT_EQ(errno, EINTR);
}

TEST(FdAccept, ANumberThatChangedHandsIsNeitherAcceptedOnNorTouched) {
  Listener l;
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  ASSERT_EQ(write(pipefd[1], "x", 1), 1);   // readable: poll says POLLIN
  int saved = dup(l.fd);
  ASSERT_EQ(dup2(pipefd[0], l.fd), l.fd);
  int before = fcntl(l.fd, F_GETFL);
  errno = 0;
  EXPECT_EQ(ks_fd_accept(l.fd, &l.id), -1);
  EXPECT_EQ(errno, EBADF);
  EXPECT_EQ(fcntl(l.fd, F_GETFL), before) << "the program's file flags changed";
  char b;
  EXPECT_EQ(read(pipefd[0], &b, 1), 1) << "the program's byte was taken";
  close(saved);
  close(pipefd[0]);
  close(pipefd[1]);
}

// ---- The fd-free memory probe -------------------------------------------

sigset_t Mask() {
  sigset_t s;
  sigemptyset(&s);
  pthread_sigmask(SIG_SETMASK, nullptr, &s);
  return s;
}

TEST(MemReadable, TellsReadableFromUnmappedAndProtNone) {
  long page = sysconf(_SC_PAGESIZE);
  char* m = static_cast<char*>(
      mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  ASSERT_EQ(mprotect(m + page, page, PROT_NONE), 0);
  ASSERT_EQ(munmap(m + 2 * page, page), 0);
  sigset_t before = Mask();
  auto at = [](const char* p) { return ks_mem_readable(reinterpret_cast<uintptr_t>(p)); };
  EXPECT_TRUE(at(m));
  EXPECT_TRUE(at(m + page - 8));
  EXPECT_FALSE(at(m + page - 4)) << "4 of the 8 bytes lie in the PROT_NONE page";
  EXPECT_FALSE(at(m + page));
  EXPECT_FALSE(at(m + 2 * page));
  EXPECT_FALSE(at(nullptr));
  EXPECT_FALSE(at(reinterpret_cast<const char*>(UINTPTR_MAX - 3)));
  errno = 1234;
  int readable = at(m), unreadable = at(m + page);
  int e = errno;
  EXPECT_EQ(e, 1234) << "errno changed";
  EXPECT_TRUE(readable);
  EXPECT_FALSE(unreadable);
  sigset_t after = Mask();
  for (int sig = 1; sig < 65; sig++)
    EXPECT_EQ(sigismember(&before, sig), sigismember(&after, sig)) << "the probe changed the mask: " << sig;
  munmap(m, page * 2);
}

// Loading the private binding runs libunwind's init through the shim:
// no pipe (or any fd) appears, and stacks still walk.
TEST(MemReadable, LibunwindInitOpensNoFdAndStillWalks) {
  int low = LowestFree();
  ASSERT_EQ(ks_unw_load(), 0);
  EXPECT_TRUE(ks_unw_mem_installed());
  EXPECT_EQ(LowestFree(), low) << "libunwind kept an fd";
  unw_context_t ctx;
  unw_cursor_t cur;
  ASSERT_EQ(ks_unw.getcontext(&ctx), 0);
  ASSERT_EQ(ks_unw.init_local2(&cur, &ctx, 0), 0);
  int frames = 1;
  while (frames < 64 && ks_unw.step(&cur) > 0) frames++;
  EXPECT_GE(frames, 3);   // this test, gtest's runner, main...
  EXPECT_EQ(LowestFree(), low);
}

}  // namespace

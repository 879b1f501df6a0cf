// The blocking-call wrappers (shim/interpose/interpose_block.c), linked into this test
// so that they wrap its own calls: a call cut short by the dump signal is
// resumed with the time left; a call cut short by the program's own signal
// returns EINTR as before; a thread inside a wrapped call publishes its
// registers and cannot leave the call while a dump reads them.
#include <gtest/gtest.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <thread>

#include "shim/core/blocking.h"
#include "shim/core/registry.h"

namespace {

const int kDumpSig = SIGRTMIN + 3;   // stands in for KS_SIG_DUMP
const int kProgSig = SIGUSR1;        // the program's own signal

// What the shim's dump handler does first: count its run on this thread.
void FakeDumpHandler(int) { __atomic_add_fetch(&ks_block_self()->dumps, 1, __ATOMIC_SEQ_CST); }
void ProgramHandler(int) {}

void Install(int sig, void (*fn)(int)) {
  struct sigaction sa = {};
  sa.sa_handler = fn;   // no SA_RESTART: the worst case for a blocking call
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(sig, &sa, nullptr), 0);
}

long NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

struct Outcome {
  long rc = 0;
  int err = 0;
  long ms = 0;
};

// Runs CALL on a thread, sending it SIG every 15 ms while it runs (at most
// TIMES times), and returns what CALL returned.
Outcome RunSignalled(const std::function<long()>& call, int sig, int times) {
  Install(kDumpSig, FakeDumpHandler);
  Install(kProgSig, ProgramHandler);
  std::atomic<bool> done{false};
  Outcome out;
  std::atomic<pthread_t> self{};
  std::atomic<bool> started{false};
  std::thread t([&] {
    self = pthread_self();
    started = true;
    long t0 = NowMs();
    errno = 0;
    out.rc = call();
    out.err = errno;
    out.ms = NowMs() - t0;
    done = true;
  });
  while (!started) usleep(1000);
  for (int i = 0; i < times && !done; i++) {
    struct timespec ts = {0, 15 * 1000000L};
    syscall(SYS_nanosleep, &ts, nullptr);   // unwrapped: the test's own pacing
    if (!done) pthread_kill(self, sig);
  }
  t.join();
  return out;
}

TEST(Block, NanosleepCutByDumpsLastsItsTime) {
  Outcome o = RunSignalled([] {
    struct timespec ts = {0, 400 * 1000000L};
    return (long)nanosleep(&ts, nullptr);
  }, kDumpSig, 10);
  EXPECT_EQ(o.rc, 0) << "errno " << o.err;
  EXPECT_GE(o.ms, 400);
}

TEST(Block, ProgramSignalStillInterruptsNanosleep) {
  Outcome o = RunSignalled([] {
    struct timespec ts = {5, 0}, rem = {};
    long rc = nanosleep(&ts, &rem);
    return rc == -1 && rem.tv_sec > 0 ? -2 : rc;   // -2: EINTR with the time left
  }, kProgSig, 1);
  EXPECT_EQ(o.rc, -2);
  EXPECT_EQ(o.err, EINTR);
  EXPECT_LT(o.ms, 5000);
}

TEST(Block, SleepCutByDumpsReturnsZero) {
  Outcome o = RunSignalled([] { return (long)sleep(1); }, kDumpSig, 10);
  EXPECT_EQ(o.rc, 0);
  EXPECT_GE(o.ms, 1000);
}

TEST(Block, SleepCutByProgramReturnsSecondsLeft) {
  Outcome o = RunSignalled([] { return (long)sleep(5); }, kProgSig, 1);
  EXPECT_GE(o.rc, 1);
  EXPECT_LE(o.rc, 5);
}

TEST(Block, PollAndSelectCutByDumpsTimeOut) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  Outcome o = RunSignalled([&] {
    struct pollfd p = {fds[0], POLLIN, 0};
    return (long)poll(&p, 1, 300);
  }, kDumpSig, 10);
  EXPECT_EQ(o.rc, 0) << "errno " << o.err;
  EXPECT_GE(o.ms, 300);
  o = RunSignalled([&] {
    fd_set r;
    FD_ZERO(&r);
    FD_SET(fds[0], &r);
    struct timeval tv = {0, 300 * 1000};
    return (long)select(fds[0] + 1, &r, nullptr, nullptr, &tv);
  }, kDumpSig, 10);
  EXPECT_EQ(o.rc, 0) << "errno " << o.err;
  EXPECT_GE(o.ms, 300);
  o = RunSignalled([&] {
    struct pollfd p = {fds[0], POLLIN, 0};
    return (long)poll(&p, 1, 5000);
  }, kProgSig, 1);
  EXPECT_EQ(o.rc, -1);
  EXPECT_EQ(o.err, EINTR);
  close(fds[0]);
  close(fds[1]);
}

TEST(Block, ClockNanosleepReturnsItsErrorNumber) {
  Outcome o = RunSignalled([] {
    struct timespec ts = {0, 300 * 1000000L};
    return (long)clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr);
  }, kDumpSig, 10);
  EXPECT_EQ(o.rc, 0);
  EXPECT_GE(o.ms, 300);
  o = RunSignalled([] {
    struct timespec ts = {5, 0};
    return (long)clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, nullptr);
  }, kProgSig, 1);
  EXPECT_EQ(o.rc, EINTR);
}

// pause() ends only with the program's signal, however many dumps come first.
TEST(Block, PauseWaitsForTheProgramsSignal) {
  Install(kDumpSig, FakeDumpHandler);
  Install(kProgSig, ProgramHandler);
  std::atomic<bool> returned{false};
  std::atomic<int> err{0};
  std::atomic<pthread_t> self{};
  std::thread t([&] {
    self = pthread_self();
    int rc = pause();
    err = rc == -1 ? errno : 0;
    returned = true;
  });
  while (!self.load()) usleep(1000);
  for (int i = 0; i < 10; i++) {
    usleep(10000);
    pthread_kill(self, kDumpSig);
  }
  usleep(50000);
  EXPECT_FALSE(returned);
  pthread_kill(self, kProgSig);
  t.join();
  EXPECT_EQ(err, EINTR);
}

// While a dump holds the thread (reader set), it stays inside its wrapper,
// its registers published; released, it returns.
TEST(Block, ReaderHoldsTheThreadInItsCall) {
  std::atomic<ks_thread*> rec{nullptr};
  std::atomic<bool> returned{false};
  std::thread t([&] {
    rec = ks_self();
    usleep(50 * 1000);
    returned = true;
  });
  while (!rec.load() || !__atomic_load_n(&ks_block_of(rec.load())->in_call, __ATOMIC_SEQ_CST)) usleep(100);
  ks_block* b = ks_block_of(rec.load());
  __atomic_store_n(&b->reader, 1, __ATOMIC_SEQ_CST);
  EXPECT_EQ(b->call, KS_CALL_USLEEP);
  EXPECT_STREQ(ks_call_name(b->call), "usleep");
  // The saved frame is on this thread's stack: below the thread's start
  // routine, above where it is blocked now.
  EXPECT_NE(b->regs.rsp, 0u);
  EXPECT_NE(b->regs.rip, 0u);
  usleep(300 * 1000);
  EXPECT_FALSE(returned);   // held: its 50 ms are long over
  EXPECT_EQ(__atomic_load_n(&b->in_call, __ATOMIC_SEQ_CST), 0);   // but it is at the exit
  __atomic_store_n(&b->reader, 0, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, &b->reader, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  t.join();
  EXPECT_TRUE(returned);
}

// A thread that a dump is about to signal (reader set while it was outside
// any wrapped call) enters its next call only once the dump lets it go, so
// the dump's signal cannot land inside that call.
TEST(Block, ThreadHeldBeforeItsCallWaitsAtTheEntry) {
  std::atomic<ks_thread*> rec{nullptr};
  std::atomic<bool> go{false}, returned{false};
  std::thread t([&] {
    rec = ks_self();
    while (!go) {
    }
    usleep(1);
    returned = true;
  });
  while (!rec.load()) usleep(100);
  ks_block* b = ks_block_of(rec.load());
  __atomic_store_n(&b->reader, 1, __ATOMIC_SEQ_CST);
  go = true;
  usleep(300 * 1000);
  // Held at the entry: the call is announced (its registers are readable)
  // but a 1 us sleep has not begun. (Held at the exit, in_call would be 0.)
  EXPECT_EQ(__atomic_load_n(&b->in_call, __ATOMIC_SEQ_CST), 1);
  EXPECT_FALSE(returned);
  __atomic_store_n(&b->reader, 0, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, &b->reader, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  t.join();
  EXPECT_TRUE(returned);
}

// Cancelled inside a wrapped call, the thread leaves through the wrapper's
// cleanup, which also waits for a dump that holds it: its stack is not
// unwound away under the reader.
TEST(Block, CancellationRunsTheWrappersCleanup) {
  std::atomic<ks_thread*> rec{nullptr};
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, nullptr, [](void* p) -> void* {
    static_cast<std::atomic<ks_thread*>*>(p)->store(ks_self());
    sleep(30);
    return nullptr;
  }, &rec), 0);
  while (!rec.load() || !__atomic_load_n(&ks_block_of(rec.load())->in_call, __ATOMIC_SEQ_CST)) usleep(100);
  ks_block* b = ks_block_of(rec.load());
  __atomic_store_n(&b->reader, 1, __ATOMIC_SEQ_CST);
  ASSERT_EQ(pthread_cancel(th), 0);
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_nsec += 300 * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  void* ret = nullptr;
  EXPECT_EQ(pthread_timedjoin_np(th, &ret, &until), ETIMEDOUT);   // held in the cleanup
  EXPECT_EQ(__atomic_load_n(&b->in_call, __ATOMIC_SEQ_CST), 0);
  __atomic_store_n(&b->reader, 0, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, &b->reader, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  ASSERT_EQ(pthread_join(th, &ret), 0);
  EXPECT_EQ(ret, PTHREAD_CANCELED);
}

// A handler that jumps out of a wrapped call abandons it: nothing is
// offered to dumps any more.
sigjmp_buf jump_env;
void JumpingHandler(int) { siglongjmp(jump_env, 1); }

TEST(Block, LongjmpOutOfAWrappedCallDropsIt) {
  Install(SIGUSR2, JumpingHandler);
  std::atomic<ks_thread*> rec{nullptr};
  std::atomic<pthread_t> self{};
  std::atomic<int> after_in_call{-1}, after_depth{-1};
  std::thread t([&] {
    self = pthread_self();
    rec = ks_self();
    if (sigsetjmp(jump_env, 1) == 0) pause();
    after_in_call = __atomic_load_n(&ks_block_self()->in_call, __ATOMIC_SEQ_CST);
    after_depth = ks_block_self()->depth;
  });
  while (!rec.load() || !__atomic_load_n(&ks_block_of(rec.load())->in_call, __ATOMIC_SEQ_CST)) usleep(100);
  pthread_kill(self, SIGUSR2);
  t.join();
  EXPECT_EQ(after_in_call, 0);
  EXPECT_EQ(after_depth, 0);
}

}  // namespace

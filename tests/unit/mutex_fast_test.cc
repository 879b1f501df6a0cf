// The mutex hooks (shim/interpose/interpose_lock.c) with their inline fast
// path (shim/core/mutex_fast.h), linked into this test's executable so that
// its pthread_mutex_* calls are the hooks'. Each check runs the same
// operation through the hooks and through glibc's own functions (KS_REAL)
// on a twin mutex, and compares every byte: the fast path must leave exactly
// glibc's words, for the default type single- and multithreaded; every other
// type must still be glibc's (its own errors: EDEADLK, EPERM, recursion,
// EOWNERDEAD); a mutex may be locked by one and unlocked by the other; a
// waiter blocked in glibc is woken by the fast unlock; condition waits work
// on a fast-locked mutex; and the held counts stay exact.
#include <errno.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <thread>
#include <vector>

#include "shim/core/held.h"
#include "shim/core/lock.h"
#include "shim/core/mutex_fast.h"
#include "shim/core/real.h"
#include "shim/core/registry.h"
#include "shim/deliver/deliver.h"

// The abort's unlock hook, which the shim's deliver room defines: here it
// counts its calls (the last unlock of a thread with an abort pending).
static std::atomic<int> g_released_calls{0};
extern "C" void ks_on_locks_released(struct ks_thread*) { g_released_calls++; }

namespace {

#if defined(__SANITIZE_THREAD__) || defined(KS_TSAN) || defined(__SANITIZE_ADDRESS__)
// Their runtimes define pthread_mutex_lock: the hooks' next definition is
// theirs, and every lock must go through it.
const bool kFastExpected = false;
#else
const bool kFastExpected = true;
#endif

pid_t Tid() { return (pid_t)gettid(); }

// This thread's record. Through an empty asm: GCC's UBSan, on a C++ access
// to an initial-exec TLS member in the executable, tests the TLS offset
// rather than the address and reports a null pointer that is not.
struct ks_thread* Self() {
  struct ks_thread* p = ks_self();
  __asm__("" : "+r"(p));
  return p;
}

int Held() { return Self()->locks_held; }

long NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

struct timespec InMs(long ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

bool SameWords(const pthread_mutex_t& a, const pthread_mutex_t& b) { return memcmp(&a, &b, sizeof a) == 0; }

// The same, but for the robust list's links (each mutex is linked where it
// sits in its thread's list of robust mutexes held).
bool SameWordsButList(const pthread_mutex_t& a, const pthread_mutex_t& b) {
  return memcmp(&a, &b, offsetof(struct __pthread_mutex_s, __list)) == 0;
}

bool IsRobust(const pthread_mutex_t& m) { return m.__data.__kind & 16; }   // PTHREAD_MUTEX_ROBUST_NORMAL_NP

// The hook's lock, trylock and unlock on M against glibc's on a twin made
// by INIT: the same results and the same bytes after each step.
void CheckAgainstGlibc(void (*init)(pthread_mutex_t*)) {
  pthread_mutex_t m, twin;
  init(&m);
  init(&twin);
  int base = Held();
  ASSERT_EQ(pthread_mutex_lock(&m), 0);
  ASSERT_EQ(KS_REAL(pthread_mutex_lock)(&twin), 0);
  EXPECT_TRUE(IsRobust(m) ? SameWordsButList(m, twin) : SameWords(m, twin));
  EXPECT_EQ(Held(), base + 1);   // (__nusers, which glibc's destroy reads, compared above)
  ASSERT_EQ(pthread_mutex_unlock(&m), 0);
  ASSERT_EQ(KS_REAL(pthread_mutex_unlock)(&twin), 0);
  EXPECT_TRUE(SameWords(m, twin));
  EXPECT_EQ(Held(), base);
  ASSERT_EQ(pthread_mutex_trylock(&m), 0);
  ASSERT_EQ(KS_REAL(pthread_mutex_trylock)(&twin), 0);
  EXPECT_TRUE(IsRobust(m) ? SameWordsButList(m, twin) : SameWords(m, twin));
  EXPECT_EQ(Held(), base + 1);
  ASSERT_EQ(pthread_mutex_unlock(&m), 0);
  ASSERT_EQ(KS_REAL(pthread_mutex_unlock)(&twin), 0);
  EXPECT_TRUE(SameWords(m, twin));
  EXPECT_EQ(Held(), base);
  EXPECT_EQ(pthread_mutex_destroy(&m), 0);
}

void InitStatic(pthread_mutex_t* m) { *m = PTHREAD_MUTEX_INITIALIZER; }
void InitDefault(pthread_mutex_t* m) { ASSERT_EQ(pthread_mutex_init(m, nullptr), 0); }

template <int Type>
void InitType(pthread_mutex_t* m) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, Type);
  ASSERT_EQ(pthread_mutex_init(m, &a), 0);
  pthread_mutexattr_destroy(&a);
}

void InitRobust(pthread_mutex_t* m) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  ASSERT_EQ(pthread_mutex_init(m, &a), 0);
  pthread_mutexattr_destroy(&a);
}

void InitPi(pthread_mutex_t* m) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
  ASSERT_EQ(pthread_mutex_init(m, &a), 0);
  pthread_mutexattr_destroy(&a);
}

void InitShared(pthread_mutex_t* m) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  ASSERT_EQ(pthread_mutex_init(m, &a), 0);
  pthread_mutexattr_destroy(&a);
}

// Parks a thread until destroyed: the process is multithreaded meanwhile
// (and stays so for glibc: __libc_single_threaded is never set back).
struct OtherThread {
  std::atomic<bool> stop{false};
  std::thread t{[this] {
    while (!stop.load()) usleep(1000);
  }};
  ~OtherThread() {
    stop = true;
    t.join();
  }
};

// First in this file, before any test starts a thread: the single-threaded
// path (plain stores, as glibc's). gtest runs a file's tests in order.
TEST(MutexFast, A_SingleThreadedDefaultMutexIsGlibcs) {
  ks_mutex_fast_init();
  EXPECT_EQ(ks_mutex_fast_off, kFastExpected ? 0 : 1);
#if !defined(__SANITIZE_THREAD__) && !defined(KS_TSAN)
  ASSERT_TRUE(__libc_single_threaded) << "no thread may exist yet in this test program";
#endif
  CheckAgainstGlibc(InitStatic);
  CheckAgainstGlibc(InitDefault);
  CheckAgainstGlibc(InitType<PTHREAD_MUTEX_NORMAL>);
}

// The trylock's half of the probe runs at the first trylock through the
// hooks, not at start (glibc's trylock reads a page of libc's .rodata that a
// program which never calls it would not touch): until then every trylock
// is glibc's, then the fast one, with the same words either way.
TEST(MutexFast, TrylockIsProbedAtTheFirstTrylockNotAtStart) {
  ks_mutex_fast_try_off = KS_MUTEX_TRY_UNPROBED;
  ks_mutex_fast_init();
  EXPECT_EQ(ks_mutex_fast_try_off, KS_MUTEX_TRY_UNPROBED) << "the start probed trylock";
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER, twin = PTHREAD_MUTEX_INITIALIZER;
  ASSERT_EQ(pthread_mutex_trylock(&m), 0);
  ASSERT_EQ(KS_REAL(pthread_mutex_trylock)(&twin), 0);
  EXPECT_EQ(memcmp(&m, &twin, sizeof m), 0);
  EXPECT_EQ(ks_mutex_fast_try_off, kFastExpected ? 0 : KS_MUTEX_TRY_UNPROBED);
  EXPECT_EQ(pthread_mutex_trylock(&m), EBUSY);
  EXPECT_EQ(memcmp(&m, &twin, sizeof m), 0);
  ASSERT_EQ(pthread_mutex_unlock(&m), 0);
  ASSERT_EQ(KS_REAL(pthread_mutex_unlock)(&twin), 0);
  EXPECT_EQ(memcmp(&m, &twin, sizeof m), 0);
  CheckAgainstGlibc(InitStatic);
}

TEST(MutexFast, MultithreadedDefaultMutexIsGlibcs) {
  ks_mutex_fast_init();
  OtherThread other;
  ASSERT_FALSE(__libc_single_threaded);
  CheckAgainstGlibc(InitStatic);
  CheckAgainstGlibc(InitDefault);
  CheckAgainstGlibc(InitType<PTHREAD_MUTEX_NORMAL>);
}

// Non-default kinds never take the fast path: glibc's words and errors.
TEST(MutexFast, OtherTypesAreGlibcs) {
  ks_mutex_fast_init();
  OtherThread other;
  CheckAgainstGlibc(InitType<PTHREAD_MUTEX_ERRORCHECK>);
  CheckAgainstGlibc(InitType<PTHREAD_MUTEX_RECURSIVE>);
  CheckAgainstGlibc(InitType<PTHREAD_MUTEX_ADAPTIVE_NP>);
  CheckAgainstGlibc(InitRobust);
  CheckAgainstGlibc(InitPi);
  CheckAgainstGlibc(InitShared);
}

TEST(MutexFast, ErrorcheckAndRecursiveKeepTheirSemantics) {
  ks_mutex_fast_init();
  int base = Held();
  pthread_mutex_t e;
  InitType<PTHREAD_MUTEX_ERRORCHECK>(&e);
  ASSERT_EQ(pthread_mutex_lock(&e), 0);
  EXPECT_EQ(pthread_mutex_lock(&e), EDEADLK);
  EXPECT_EQ(pthread_mutex_trylock(&e), EBUSY);
#if !defined(__SANITIZE_THREAD__) && !defined(KS_TSAN)   // misuse TSan reports, rightly
  std::thread([&] { EXPECT_EQ(pthread_mutex_unlock(&e), EPERM); }).join();
#endif
  EXPECT_EQ(Held(), base + 1);
  ASSERT_EQ(pthread_mutex_unlock(&e), 0);
#if !defined(__SANITIZE_THREAD__) && !defined(KS_TSAN)
  EXPECT_EQ(pthread_mutex_unlock(&e), EPERM);
#endif
  EXPECT_EQ(Held(), base);

  pthread_mutex_t r;
  InitType<PTHREAD_MUTEX_RECURSIVE>(&r);
  for (int i = 0; i < 3; i++) ASSERT_EQ(pthread_mutex_lock(&r), 0);
  ASSERT_EQ(pthread_mutex_trylock(&r), 0);
  EXPECT_EQ(r.__data.__count, 4u);
  EXPECT_EQ(Held(), base + 4);
  std::thread([&] { EXPECT_EQ(pthread_mutex_trylock(&r), EBUSY); }).join();
  for (int i = 0; i < 4; i++) ASSERT_EQ(pthread_mutex_unlock(&r), 0);
  EXPECT_EQ(Held(), base);
  EXPECT_EQ(pthread_mutex_destroy(&r), 0);
}

TEST(MutexFast, RobustOwnerDeathIsGlibcs) {
  ks_mutex_fast_init();
  pthread_mutex_t m;
  InitRobust(&m);
  std::thread([&] { ASSERT_EQ(pthread_mutex_lock(&m), 0); }).join();   // dies holding it
  int base = Held();
  ASSERT_EQ(pthread_mutex_lock(&m), EOWNERDEAD);
  EXPECT_EQ(Held(), base) << "EOWNERDEAD is not counted (the hooks count rc == 0 only)";
  ASSERT_EQ(pthread_mutex_consistent(&m), 0);
  ASSERT_EQ(pthread_mutex_unlock(&m), 0);
  ASSERT_EQ(pthread_mutex_lock(&m), 0);
  EXPECT_EQ(Held(), base + 1);
  ASSERT_EQ(pthread_mutex_unlock(&m), 0);
  EXPECT_EQ(Held(), base);
}

// The two implementations on one mutex, both ways, words checked. On a
// thread of its own: a lock the hook counted and glibc released stays in
// that thread's count (the hooks never see glibc's own unlock).
TEST(MutexFast, LockedByOneUnlockedByTheOther) {
  ks_mutex_fast_init();
  std::thread([] {
    const pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    ASSERT_EQ(pthread_mutex_lock(&m), 0);
    EXPECT_EQ(m.__data.__owner, Tid());
    ASSERT_EQ(KS_REAL(pthread_mutex_unlock)(&m), 0);
    EXPECT_TRUE(SameWords(m, fresh));
    EXPECT_EQ(Held(), 1);
    ASSERT_EQ(KS_REAL(pthread_mutex_lock)(&m), 0);
    ASSERT_EQ(pthread_mutex_unlock(&m), 0);
    EXPECT_TRUE(SameWords(m, fresh));
    EXPECT_EQ(Held(), 0);
    ASSERT_EQ(pthread_mutex_trylock(&m), 0);
    EXPECT_EQ(KS_REAL(pthread_mutex_trylock)(&m), EBUSY);
    EXPECT_EQ(pthread_mutex_trylock(&m), EBUSY);
    EXPECT_EQ(Held(), 1);
    ASSERT_EQ(KS_REAL(pthread_mutex_unlock)(&m), 0);
    EXPECT_TRUE(SameWords(m, fresh));
  }).join();
}

// True once thread TID sleeps in a futex wait (its system call, from /proc).
bool InFutexWait(pid_t tid) {
  char path[64], buf[64] = "";
  snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
  FILE* f = fopen(path, "r");
  if (!f) return false;
  bool in = fgets(buf, sizeof buf, f) && strncmp(buf, "202 ", 4) == 0;   // SYS_futex
  fclose(f);
  return in;
}

// timedlock and trylock fail against a fast lock; a waiter blocked in
// glibc's lock (word 2) is woken by the fast unlock's futex wake.
TEST(MutexFast, WaiterInGlibcIsWokenByTheFastUnlock) {
  ks_mutex_fast_init();
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  ASSERT_EQ(pthread_mutex_lock(&m), 0);
  std::atomic<int> phase{0};
  std::atomic<pid_t> tid{0};
  std::thread t([&] {
    tid = Tid();
    struct timespec soon = InMs(50);
    EXPECT_EQ(pthread_mutex_timedlock(&m, &soon), ETIMEDOUT);
    EXPECT_EQ(pthread_mutex_trylock(&m), EBUSY);
    EXPECT_EQ(Held(), 0);
    phase = 1;
    ASSERT_EQ(pthread_mutex_lock(&m), 0);   // blocks in glibc
    EXPECT_EQ(m.__data.__owner, Tid());
    EXPECT_EQ(Held(), 1);
    phase = 2;
    ASSERT_EQ(pthread_mutex_unlock(&m), 0);
    EXPECT_EQ(Held(), 0);
  });
  long deadline = NowMs() + 10000;
  while (!(phase.load() == 1 && InFutexWait(tid.load())) && NowMs() < deadline) usleep(1000);
  ASSERT_TRUE(phase.load() == 1 && InFutexWait(tid.load())) << "the waiter never blocked";
  EXPECT_EQ(__atomic_load_n(&m.__data.__lock, __ATOMIC_ACQUIRE), 2);
  ASSERT_EQ(pthread_mutex_unlock(&m), 0);   // must wake it: no other unlock comes
  t.join();
  EXPECT_EQ(phase.load(), 2);
  const pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  EXPECT_TRUE(SameWords(m, fresh));
}

// The shim's own locks (core/lock.c) take the same inline path, uncounted:
// glibc's words after ks_lock and ks_unlock, and a thread blocked in
// ks_lock (in glibc's wait) is woken by the fast ks_unlock.
KS_LOCK_DEFINE(static, g_shim_mu);

TEST(MutexFast, ShimLocksAreGlibcsAndWakeTheirWaiter) {
  ks_mutex_fast_init();
  pthread_mutex_t twin = PTHREAD_MUTEX_INITIALIZER;
  int base = Held();
  ks_lock(&g_shim_mu);
  ASSERT_EQ(KS_REAL(pthread_mutex_lock)(&twin), 0);
  EXPECT_TRUE(SameWords(g_shim_mu.mu, twin));
  EXPECT_EQ(Held(), base);   // the shim's locking is not the program's
  ks_unlock(&g_shim_mu);
  ASSERT_EQ(KS_REAL(pthread_mutex_unlock)(&twin), 0);
  EXPECT_TRUE(SameWords(g_shim_mu.mu, twin));

  ks_lock(&g_shim_mu);
  std::atomic<int> phase{0};
  std::atomic<pid_t> tid{0};
  std::thread t([&] {
    tid = Tid();
    phase = 1;
    ks_lock(&g_shim_mu);   // blocks in glibc
    EXPECT_EQ(g_shim_mu.mu.__data.__owner, Tid());
    phase = 2;
    ks_unlock(&g_shim_mu);
  });
  long deadline = NowMs() + 10000;
  while (!(phase.load() == 1 && InFutexWait(tid.load())) && NowMs() < deadline) usleep(1000);
  ASSERT_TRUE(phase.load() == 1 && InFutexWait(tid.load())) << "the waiter never blocked";
  EXPECT_EQ(__atomic_load_n(&g_shim_mu.mu.__data.__lock, __ATOMIC_ACQUIRE), 2);
  ks_unlock(&g_shim_mu);   // must wake it: no other unlock comes
  t.join();
  EXPECT_EQ(phase.load(), 2);
  const pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  EXPECT_TRUE(SameWords(g_shim_mu.mu, fresh));
}

TEST(MutexFast, ContendedCounterIsExact) {
  ks_mutex_fast_init();
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  const int kThreads = 4, kIters = 100000;
  long counter = 0;
  std::atomic<long> tried{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; i++)
    ts.emplace_back([&, i] {
      for (int k = 0; k < kIters; k++) {
        // Every third lock of one thread goes around the hooks to glibc.
        bool real = i == 0 && k % 3 == 0;
        ASSERT_EQ(real ? KS_REAL(pthread_mutex_lock)(&m) : pthread_mutex_lock(&m), 0);
        counter++;
        ASSERT_EQ(real ? KS_REAL(pthread_mutex_unlock)(&m) : pthread_mutex_unlock(&m), 0);
        if (k % 7 == 0 && pthread_mutex_trylock(&m) == 0) {
          counter++;
          tried++;
          ASSERT_EQ(pthread_mutex_unlock(&m), 0);
        }
      }
      EXPECT_EQ(Held(), 0);
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(counter, (long)kThreads * kIters + tried.load());
  const pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  EXPECT_TRUE(SameWords(m, fresh));
}

TEST(MutexFast, CondWaitOnAFastLockedMutex) {
  ks_mutex_fast_init();
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
  bool ready = false;
  ASSERT_EQ(pthread_mutex_lock(&m), 0);
  std::thread t([&] {
    ASSERT_EQ(pthread_mutex_lock(&m), 0);   // only once the waiter released it
    ready = true;
    pthread_cond_signal(&cv);
    ASSERT_EQ(pthread_mutex_unlock(&m), 0);
  });
  while (!ready) ASSERT_EQ(pthread_cond_wait(&cv, &m), 0);   // glibc's, on the fast words
  EXPECT_EQ(m.__data.__owner, Tid());
  struct timespec soon = InMs(20);
  EXPECT_EQ(pthread_cond_timedwait(&cv, &m, &soon), ETIMEDOUT);
  EXPECT_EQ(m.__data.__owner, Tid()) << "timedwait returns with the mutex held again";
  ASSERT_EQ(pthread_mutex_unlock(&m), 0);
  t.join();
  EXPECT_EQ(pthread_mutex_destroy(&m), 0);
}

// The held count and the abort's unlock hook, through the fast path.
TEST(MutexFast, HeldCountsAndTheLastUnlockHook) {
  ks_mutex_fast_init();
  struct ks_thread* self = Self();
  ASSERT_EQ(Held(), 0);
  pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER, b = PTHREAD_MUTEX_INITIALIZER;
  ASSERT_EQ(pthread_mutex_lock(&a), 0);
  ASSERT_EQ(pthread_mutex_lock(&b), 0);
  EXPECT_EQ(Held(), 2);
  EXPECT_EQ(self->held[0], (void*)&a);
  EXPECT_EQ(self->held[1], (void*)&b);
  EXPECT_NE(ks_mark_ra(self->held_mark[0]), 0u);
  int before = g_released_calls.load();
  __atomic_store_n(&self->abort.state, KS_ABORT_PENDING, __ATOMIC_RELEASE);
  ASSERT_EQ(pthread_mutex_unlock(&a), 0);   // out of order: b stays remembered
  EXPECT_EQ(Held(), 1);
  EXPECT_EQ(self->held[0], (void*)&b);
  EXPECT_EQ(g_released_calls.load(), before);
  ASSERT_EQ(pthread_mutex_unlock(&b), 0);
  EXPECT_EQ(Held(), 0);
  EXPECT_EQ(g_released_calls.load(), before + 1);
  __atomic_store_n(&self->abort.state, KS_ABORT_NONE, __ATOMIC_RELEASE);

  // The shim's own locks (shim_depth) are not counted, fast or not.
  self->shim_depth++;
  ASSERT_EQ(pthread_mutex_lock(&a), 0);
  EXPECT_EQ(Held(), 0);
  ASSERT_EQ(pthread_mutex_unlock(&a), 0);
  self->shim_depth--;
  EXPECT_EQ(Held(), 0);
}

}  // namespace

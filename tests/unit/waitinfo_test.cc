// Who holds the lock a thread waits for (shim/control/waitinfo.c), and when
// a thread's record of a wait is already over: it names itself as the owner
// but is not blocked in a futex (it took the lock; its hook has yet to clear
// the record: Boehm's collector stopped threads right there, and the
// listing said "waits for mutex held by" the thread itself, a deadlock of
// one). A thread that locked a normal mutex twice is blocked in a futex: a
// real deadlock of one, still named.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim/common/procfs.h"
#include "shim/control/waitinfo.h"
#include "shim/core/registry.h"

namespace {

pthread_mutex_t g_self = PTHREAD_MUTEX_INITIALIZER;
pid_t g_self_tid;

void* LockTwice(void*) {
  pthread_mutex_lock(&g_self);
  __atomic_store_n(&g_self_tid, static_cast<pid_t>(syscall(SYS_gettid)), __ATOMIC_SEQ_CST);
  pthread_mutex_lock(&g_self);   // a normal mutex: blocks for good
  return nullptr;
}

TEST(WaitInfo, TheOwnerOfAMutexIsReadFromGlibc) {
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  EXPECT_EQ(ks_wait_owner(KS_WAIT_MUTEX, &m), KS_OWNER_FREE);
  pthread_mutex_lock(&m);
  pid_t me = static_cast<pid_t>(syscall(SYS_gettid));
  EXPECT_EQ(ks_wait_owner(KS_WAIT_MUTEX, &m), me);
  pthread_mutex_unlock(&m);
}

TEST(WaitInfo, AWaitOnALockTheThreadHoldsIsOverUnlessItBlocks) {
  pid_t me = static_cast<pid_t>(syscall(SYS_gettid));
  // Running (reading its own /proc): it holds what it names itself owner of.
  EXPECT_EQ(ks_wait_is_over(me, me, nullptr), 1);
  // Another owner, or none known: the wait stands.
  EXPECT_EQ(ks_wait_is_over(me, me + 1, nullptr), 0);
  EXPECT_EQ(ks_wait_is_over(me, KS_OWNER_UNKNOWN, nullptr), 0);
  EXPECT_EQ(ks_wait_is_over(me, KS_OWNER_FREE, nullptr), 0);
  // A system call read before (a dump reads it before its signal takes the
  // thread out of its futex for a moment) decides instead of /proc now.
  struct ks_syscall seen = {};
  seen.nr = SYS_futex;
  EXPECT_EQ(ks_wait_is_over(me, me, &seen), 0);
  seen.nr = SYS_rt_sigsuspend;
  EXPECT_EQ(ks_wait_is_over(me, me, &seen), 1);

  pthread_t t;
  ASSERT_EQ(pthread_create(&t, nullptr, LockTwice, nullptr), 0);
  // Until it blocks in the second lock's futex.
  struct ks_syscall sc = {};
  pid_t tid = 0;
  for (int i = 0; i < 500; i++) {
    tid = __atomic_load_n(&g_self_tid, __ATOMIC_SEQ_CST);
    if (tid && ks_read_task_syscall(tid, &sc) == 0 && sc.nr == SYS_futex) break;
    usleep(10000);
  }
  ASSERT_EQ(sc.nr, SYS_futex);
  EXPECT_EQ(ks_wait_owner(KS_WAIT_MUTEX, &g_self), tid);
  EXPECT_EQ(ks_wait_is_over(tid, tid, nullptr), 0) << "a deadlock of one stays one";
  pthread_detach(t);   // blocked for good; the process's exit ends it
}

}  // namespace

// The thread registry, through its C header (linked directly, not preloaded).
#include "shim/core/registry.h"

#include <errno.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "shim/core/ks.h"
#include "shim/core/mutex_fast.h"

namespace {

// What the shim does with a found record: signal it (SIGUSR2 here).
int SendUsr2(ks_thread* t, void*) {
  return syscall(SYS_tgkill, getpid(), t->tid, SIGUSR2) == 0 ? 0 : errno;
}

int SignalIfLinked(pid_t tid, uint64_t id) { return ks_registry_with_linked(tid, id, SendUsr2, nullptr); }

int LinkedCount() {
  ks_registry_lock();
  int n = ks_registry_count();
  ks_registry_unlock();
  return n;
}

TEST(Registry, AddAndRemoveSelf) {
  int before = LinkedCount();
  std::thread t([&] {
    ks_registry_add_self(KS_ROLE_APP, (void*)&LinkedCount);
    ks_registry_add_self(KS_ROLE_APP, nullptr);  // idempotent
    EXPECT_EQ(LinkedCount(), before + 1);
    pid_t tid = (pid_t)syscall(SYS_gettid);
    ks_registry_lock();
    ks_thread* r = ks_registry_find(tid);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r, ks_self());
    EXPECT_EQ(r->role, KS_ROLE_APP);
    EXPECT_EQ(r->start_routine, (void*)&LinkedCount);
    ks_registry_unlock();
    ks_registry_remove_self(ks_now_ns());
    ks_registry_remove_self(ks_now_ns());  // idempotent
    EXPECT_EQ(LinkedCount(), before);
  });
  t.join();
  EXPECT_EQ(LinkedCount(), before);
}

TEST(Registry, IdsAreUniqueAcrossThreads) {
  std::vector<std::thread> ts;
  std::mutex mu;
  std::set<uint64_t> ids;
  for (int i = 0; i < 64; i++)
    ts.emplace_back([&] {
      ks_registry_add_self(KS_ROLE_APP, nullptr);
      uint64_t id = ks_self()->id;
      ks_registry_remove_self(ks_now_ns());
      std::lock_guard<std::mutex> g(mu);
      ids.insert(id);
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ids.size(), 64u);
}

// A record found under the lock is alive: signalling an unlinked thread, or
// a linked tid with another id (a recycled tid), must not send anything.
TEST(Registry, SignalOnlyLinkedThreadWithMatchingId) {
  ks_real_resolve_all();
  static std::atomic<int> hits{0};
  struct sigaction sa = {};
  sa.sa_handler = [](int) { hits++; };
  sigaction(SIGUSR2, &sa, nullptr);

  std::atomic<bool> go{false}, done{false};
  std::atomic<pid_t> tid{0};
  std::atomic<uint64_t> id{0};
  std::thread t([&] {
    ks_registry_add_self(KS_ROLE_APP, nullptr);
    tid = (pid_t)syscall(SYS_gettid);
    id = ks_self()->id;
    while (!go) usleep(1000);
    ks_registry_remove_self(ks_now_ns());
    done = true;
    while (go) usleep(1000);
  });
  while (!tid) usleep(1000);
  EXPECT_EQ(SignalIfLinked(tid, id + 1000), ESRCH);
  EXPECT_EQ(SignalIfLinked(tid, id), 0);
  for (int i = 0; i < 1000 && hits == 0; i++) usleep(1000);
  EXPECT_EQ(hits.load(), 1);
  go = true;
  while (!done) usleep(1000);
  EXPECT_EQ(SignalIfLinked(tid, id), ESRCH);
  EXPECT_EQ(SignalIfLinked(tid, 0), ESRCH);
  go = false;
  t.join();
  EXPECT_EQ(hits.load(), 1);
}

// A thread's record takes its tid from glibc's struct pthread where the
// mutex probe found it there (no system call per thread), from the first
// instruction of the thread's start routine on: the kernel wrote it before
// the thread first ran (CLONE_PARENT_SETTID). Elsewhere (sanitizers, whose
// runtimes define the lock functions) the system call: the same number.
TEST(Registry, TidIsTheKernelsFromTheThreadsStart) {
  ks_mutex_fast_init();
#if defined(__SANITIZE_THREAD__) || defined(KS_TSAN) || defined(__SANITIZE_ADDRESS__)
  EXPECT_EQ(ks_mutex_tid_off, 0u);
#else
  EXPECT_NE(ks_mutex_tid_off, 0u);
#endif
  for (int i = 0; i < 64; i++) {
    pthread_t th;
    pid_t got[2] = {0, 0};
    ASSERT_EQ(pthread_create(
                  &th, nullptr,
                  [](void* p) -> void* {
                    ks_registry_add_self(KS_ROLE_APP, nullptr);
                    static_cast<pid_t*>(p)[0] = ks_self()->tid;
                    static_cast<pid_t*>(p)[1] = (pid_t)syscall(SYS_gettid);
                    ks_registry_remove_self(ks_now_ns());
                    return nullptr;
                  },
                  got),
              0);
    pthread_join(th, nullptr);
    ASSERT_GT(got[1], 0);
    EXPECT_EQ(got[0], got[1]) << "thread " << i;
  }
}

TEST(Registry, RecordIsSmall) {
  // "A few hundred bytes per thread" at most.
  EXPECT_LE(sizeof(ks_thread), 256u);
}

}  // namespace

namespace {

// A thread that unregistered is "exiting" for a while (its task may linger
// in /proc); one that never registered is not.
TEST(Registry, UnregisteredThreadIsExitingForAWhile) {
  ks_registry_prepare_exits();  // as the pthread_create hook does
  pid_t gone = 0;
  std::thread t([&] {
    ks_registry_add_self(KS_ROLE_APP, nullptr);
    gone = (pid_t)syscall(SYS_gettid);
    ks_registry_remove_self(ks_now_ns());
  });
  t.join();
  ks_registry_lock();
  EXPECT_EQ(ks_registry_exiting(gone), 1);
  EXPECT_EQ(ks_registry_exiting((pid_t)syscall(SYS_gettid)), 0);
  EXPECT_EQ(ks_registry_find(gone), nullptr);
  ks_registry_unlock();
}

TEST(Registry, StartingCountsCreationsInFlight) {
  int before = ks_registry_starting();
  ks_registry_starting_add(1);
  EXPECT_EQ(ks_registry_starting(), before + 1);
  ks_registry_starting_add(-1);
  EXPECT_EQ(ks_registry_starting(), before);
}

}  // namespace

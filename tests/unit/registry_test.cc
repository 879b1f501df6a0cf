// The thread registry, through its C header (linked directly, not preloaded).
#include "shim/core/registry.h"

#include <errno.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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
    EXPECT_TRUE(pthread_equal(r->handle, pthread_self()));
    EXPECT_TRUE(pthread_equal(ks_pthread_self(), pthread_self()));
    ks_registry_unlock();
    ks_registry_remove_self(ks_now_ns());
    ks_registry_remove_self(ks_now_ns());  // idempotent
    EXPECT_EQ(LinkedCount(), before);
  });
  t.join();
  EXPECT_EQ(LinkedCount(), before);
  EXPECT_TRUE(pthread_equal(ks_pthread_self(), pthread_self()));   // the main thread's
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

// The registry indexes its records by tid only from the second one linked
// on (the main thread's registration at start leaves the buckets' page
// untouched); a fork child's reset leaves the parent's buckets in place and
// clears them when it links a second record. Every lookup must find exactly
// the linked records: in the parent (buckets), in the child with one record
// (the list), and in the child after a thread of its own linked, where a
// bucket still holding a parent's record would find a thread the child
// does not have (not under ThreadSanitizer, see below).
TEST(Registry, FindsTheLinkedBeforeAndAfterTheBucketsAndNoParentsAfterFork) {
  ks_registry_add_self(KS_ROLE_MAIN, nullptr);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<pid_t> tids(8);
  std::vector<std::thread> ts;
  for (int i = 0; i < 8; i++)
    ts.emplace_back([&, i] {
      ks_registry_add_self(KS_ROLE_APP, nullptr);
      tids[i] = ks_self()->tid;
      ready++;
      while (!go) usleep(1000);
      ks_registry_remove_self(ks_now_ns());
    });
  while (ready < 8) usleep(1000);
  ks_registry_lock();
  for (pid_t t : tids) EXPECT_NE(ks_registry_find(t), nullptr) << t;
  ks_registry_unlock();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ks_registry_reset_after_fork();
    pid_t self = (pid_t)syscall(SYS_gettid);
    int bad = 0;
    ks_registry_lock();
    bad |= ks_registry_count() != 1;
    bad |= ks_registry_find(self) != ks_self() ? 2 : 0;
    for (pid_t t : tids) bad |= ks_registry_find(t) != nullptr ? 4 : 0;
    ks_registry_unlock();
#if defined(__SANITIZE_THREAD__) || defined(KS_TSAN)
    // ThreadSanitizer's runtime ends a child of a multithreaded fork that
    // starts a thread (die_after_fork, exit code 66): the buckets' part is
    // checked in the other builds.
    _exit(bad);
#endif
    pid_t other = 0;
    std::atomic<bool> linked{false}, leave{false};
    std::thread th([&] {
      ks_registry_add_self(KS_ROLE_APP, nullptr);
      other = ks_self()->tid;
      linked = true;
      while (!leave) usleep(1000);
      ks_registry_remove_self(ks_now_ns());
    });
    while (!linked) usleep(1000);
    ks_registry_lock();
    bad |= ks_registry_count() != 2 ? 8 : 0;
    bad |= ks_registry_find(self) != ks_self() ? 16 : 0;
    bad |= ks_registry_find(other) == nullptr ? 32 : 0;
    for (pid_t t : tids) bad |= ks_registry_find(t) != nullptr ? 64 : 0;
    ks_registry_unlock();
    leave = true;
    th.join();
    ks_registry_lock();
    bad |= ks_registry_find(other) != nullptr || ks_registry_find(self) != ks_self() ? 128 : 0;
    ks_registry_unlock();
    _exit(bad);
  }
  int st = 0;
  ASSERT_EQ(waitpid(child, &st, 0), child);
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0) << "bits: 1 count, 2/16 self, 4/64 a parent's thread, 8 count "
                                   "after, 32 the child's thread, 128 after its exit";
  go = true;
  for (auto& t : ts) t.join();
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

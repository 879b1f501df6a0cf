// The abort mode, end to end: real C programs under the built shim,
// driven through the control protocol ("abort tid=N [force=1]", which asks
// or retries the abort and answers with its progress). After every abort the
// program's other threads, heap and locks are checked by the program itself.
// The C++ programs' cases (destructors, noexcept, catch) are in abort_cxx_test.cc.
#include <gtest/gtest.h>
#include <json-c/json.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "tests/e2e/abort_util.h"
#include "tests/e2e/harness.h"

namespace {

using namespace ks::abort_test;

// Each kind, and the call it sleeps in (SyscallNr; "" for those that run).
struct Kind {
  const char* name;
  const char* call;
};
std::ostream& operator<<(std::ostream& o, const Kind& k) { return o << k.name; }

class CVictim : public ::testing::TestWithParam<Kind> {};

TEST_P(CVictim, AbortedWithCleanupAndJoinable) {
  Prog p("abort_victims");
  std::string kind = GetParam().name;
  pid_t tid = p.Start(kind);
  ASSERT_GT(tid, 0);
  ASSERT_TRUE(WaitSettled(p.t().pid(), tid, SyscallNr(GetParam().call)))
      << SyscallOf(p.t().pid(), tid);
  Fields last;
  ASSERT_TRUE(p.AbortUntilGone(tid, false, &last)) << kind << ": " << last["state"] << " "
                                                   << last["reason"];
  EXPECT_EQ(p.WaitFor("cleanup " + std::to_string(p.last())), "cleanup 0 " + kind);
  EXPECT_EQ(p.Join(0), "joined 0 canceled");
  p.ExpectHealthy();
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, CVictim,
    ::testing::Values(Kind{"spin", ""}, Kind{"calls", ""}, Kind{"printf", ""}, Kind{"malloc", ""},
                      Kind{"read", "read"}, Kind{"accept", "accept"}, Kind{"poll", "poll"},
                      Kind{"cond", "futex"}, Kind{"cond_nocleanup", "futex"}, Kind{"sleep", "sleep"},
                      Kind{"nocancel", ""}, Kind{"storm", ""}),
    [](const ::testing::TestParamInfo<Kind>& i) { return std::string(i.param.name); });

TEST(AbortC, HoldingAMutexWaitsForTheUnlock) {
  Prog p("abort_victims");
  pid_t tid = p.Start("lockspin");
  ASSERT_TRUE(WaitSettled(p.t().pid(), tid, ""));
  // While it prints its first line it holds two: its own and the output's.
  Fields f = p.AbortUntil(tid, [](Fields& f) {
    return f["pending"] == "abort pending: holds 1 lock; will abort at unlock";
  });
  EXPECT_EQ(f["abort"], "pending") << p.History();
  EXPECT_EQ(f["abort_how"], "at-unlock");
  // It stays pending while it spins with the lock (100 ms of its CPU time).
  EXPECT_TRUE(RunsOn(p.t().pid(), tid, 10));
  EXPECT_TRUE(ks::TaskExists(p.t().pid(), tid));
  EXPECT_EQ(p.Status(tid)["abort_how"], "at-unlock");
  EXPECT_EQ(p.TryLock("spin_mu"), "busy");
  p.t().Send("release");
  Fields last;
  ASSERT_TRUE(p.AbortUntilGone(tid, false, &last)) << last["reason"];
  // It left at the unlock: the line after the unlock never printed.
  std::string l = p.WaitFor("cleanup 0");
  EXPECT_EQ(l, "cleanup 0 lockspin");
  EXPECT_EQ(p.Join(0), "joined 0 canceled");
  p.t().Send("trylock spin_mu");
  EXPECT_EQ(p.WaitFor("trylock"), "trylock spin_mu free");
  p.ExpectHealthy();
}

// Never while holding a lock, whichever way the lock was taken: the abort
// waits for the unlock and leaves there. Checked from outside the shim's
// count: main cannot take the lock while the abort is pending, and can once
// the thread is gone.
struct Hold {
  const char* how;   // hold_HOW (abort_victims)
  const char* lock;  // main's name for the lock
};
std::ostream& operator<<(std::ostream& o, const Hold& h) { return o << h.how; }

class HeldLock : public ::testing::TestWithParam<Hold> {};

// GCC 12's ThreadSanitizer has no interceptor for pthread_mutex_clocklock
// nor pthread_rwlock_clockwrlock (glibc 2.30): it never sees those locks
// taken, and reports their unlock as the unlock of an unlocked mutex, with or
// without the shim. Under --config=tsan those two victims run with TSan's
// mutex-misuse reports off; races are still reported.
std::vector<std::string> EnvFor(const std::string& how) {
#ifdef __SANITIZE_THREAD__
  if (how.rfind("clock", 0) == 0) {
    const char* inherited = getenv("TSAN_OPTIONS");
    return {std::string("TSAN_OPTIONS=") + (inherited ? std::string(inherited) + ":" : "") +
            "report_mutex_bugs=0"};
  }
#endif
  (void)how;
  return {};
}

TEST_P(HeldLock, AbortWaitsForTheUnlockAndLeavesThere) {
  Prog p("abort_victims", EnvFor(GetParam().how));
  std::string kind = std::string("hold_") + GetParam().how, lock = GetParam().lock;
  pid_t tid = p.Start(kind);
  ASSERT_GT(tid, 0) << p.History();
  ASSERT_TRUE(WaitSettled(p.t().pid(), tid, ""));
  // Until the handler has run, the status says it was signalled; then why
  // it waits.
  Fields f = p.AbortUntil(tid, [](Fields& f) {
    return f["pending"] == "abort pending: holds 1 lock; will abort at unlock";
  });
  ASSERT_EQ(f["pending"], "abort pending: holds 1 lock; will abort at unlock") << p.History();
  EXPECT_EQ(f["abort_how"], "at-unlock");
  EXPECT_TRUE(RunsOn(p.t().pid(), tid, 10));
  EXPECT_TRUE(ks::TaskExists(p.t().pid(), tid));
  EXPECT_EQ(p.TryLock(lock), "busy");
  p.t().Send("release");
  ASSERT_TRUE(p.AbortUntilGone(tid, false, nullptr)) << p.History();
  EXPECT_EQ(p.WaitFor("cleanup 0"), "cleanup 0 " + kind);
  // It left at the unlock: the line after it never printed.
  EXPECT_EQ(p.History().find("unlocked 0"), std::string::npos) << p.History();
  EXPECT_EQ(p.Join(0), "joined 0 canceled");
  EXPECT_EQ(p.TryLock(lock), "free");
  p.ExpectHealthy();
}

INSTANTIATE_TEST_SUITE_P(
    Ways, HeldLock,
    ::testing::Values(Hold{"trylock", "hold_mu"}, Hold{"timedlock", "hold_mu"},
                      Hold{"clocklock", "hold_mu"}, Hold{"wrlock", "hold_rw"},
                      Hold{"trywrlock", "hold_rw"}, Hold{"timedwrlock", "hold_rw"},
                      Hold{"clockwrlock", "hold_rw"}),
    [](const ::testing::TestParamInfo<Hold>& i) { return std::string(i.param.how); });

// A recursive mutex locked twice is held until its second unlock.
TEST(AbortC, RecursiveMutexWaitsForItsLastUnlock) {
  Prog p("abort_victims");
  pid_t tid = p.Start("hold_recursive");
  ASSERT_TRUE(WaitSettled(p.t().pid(), tid, ""));
  Fields f = p.AbortUntil(tid, [](Fields& f) {
    return f["pending"] == "abort pending: holds 2 locks; will abort at unlock";
  });
  ASSERT_EQ(f["pending"], "abort pending: holds 2 locks; will abort at unlock") << p.History();
  EXPECT_EQ(f["abort_how"], "at-unlock");
  EXPECT_TRUE(RunsOn(p.t().pid(), tid, 10));
  EXPECT_EQ(p.TryLock("rec_mu"), "busy");
  p.t().Send("release");  // one unlock: it still holds the mutex
  EXPECT_EQ(p.WaitFor("unlocked-once 0"), "unlocked-once 0") << p.History();
  EXPECT_TRUE(RunsOn(p.t().pid(), tid, 10));
  f = p.Status(tid);
  EXPECT_EQ(f["state"], "alive") << p.History();
  EXPECT_EQ(f["pending"], "abort pending: holds 1 lock; will abort at unlock");
  EXPECT_EQ(p.TryLock("rec_mu"), "busy");
  p.t().Send("release2");
  ASSERT_TRUE(p.AbortUntilGone(tid, false, nullptr)) << p.History();
  EXPECT_EQ(p.WaitFor("cleanup 0"), "cleanup 0 hold_recursive");
  EXPECT_EQ(p.History().find("unlocked 0"), std::string::npos) << p.History();
  EXPECT_EQ(p.Join(0), "joined 0 canceled");
  EXPECT_EQ(p.TryLock("rec_mu"), "free");
  p.ExpectHealthy();
}

// A lock call that failed holds nothing: the abort leaves at once.
TEST(AbortC, AFailedLockCallHoldsNothing) {
  for (const char* how : {"trylock", "timedlock"}) {
    SCOPED_TRACE(how);
    Prog p("abort_victims");
    pid_t tid = p.Start(std::string("fail_") + how);
    ASSERT_GT(tid, 0) << p.History();
    ASSERT_TRUE(WaitSettled(p.t().pid(), tid, ""));
    Report r = InjectAbort(p.t().pid(), tid, {"--timeout", "5"});
    ASSERT_EQ(r.code, 0) << r.raw;
    EXPECT_EQ(r.top["how"], "aborted");
    EXPECT_EQ(r.top["locks_left"], "0");
    EXPECT_EQ(p.WaitFor("cleanup 0"), std::string("cleanup 0 fail_") + how);
    EXPECT_EQ(p.Join(0), "joined 0 canceled");
    p.ExpectHealthy();
  }
}

// A fork child of a thread whose abort is pending is not aborted: the
// request was for the parent's thread, which still leaves at its unlock.
TEST(AbortC, AForkChildDoesNotInheritThePendingAbort) {
  Prog p("abort_victims");
  pid_t tid = p.Start("forker");
  Fields f = p.AbortUntil(tid, [](Fields& f) {
    return f["pending"] == "abort pending: holds 1 lock; will abort at unlock";
  });
  ASSERT_EQ(f["abort_how"], "at-unlock") << p.History();
  p.t().Send("release");
  EXPECT_EQ(p.WaitFor("child of"), "child of 0 alive");
  EXPECT_EQ(p.WaitFor("forked"), "forked 0 child status 7");
  ASSERT_TRUE(p.AbortUntilGone(tid, false, nullptr));
  EXPECT_EQ(p.WaitFor("cleanup 0"), "cleanup 0 forker");
  EXPECT_EQ(p.History().find("unlocked 0"), std::string::npos);
  EXPECT_EQ(p.Join(0), "joined 0 canceled");
  p.ExpectHealthy();
}

TEST(AbortC, HoldingAnRwlockWaitsForTheUnlock) {
  Prog p("abort_victims");
  pid_t tid = p.Start("rwspin");
  Fields f = p.AbortUntil(tid, [](Fields& f) {
    return f["pending"] == "abort pending: holds 1 lock; will abort at unlock";
  });
  EXPECT_EQ(f["abort_how"], "at-unlock") << p.History();
  p.t().Send("release");
  ASSERT_TRUE(p.AbortUntilGone(tid, false, nullptr));
  EXPECT_EQ(p.WaitFor("cleanup 0"), "cleanup 0 rwspin");
  EXPECT_EQ(p.Join(0), "joined 0 canceled");
  p.ExpectHealthy();
}

TEST(AbortC, ForceLeavesAtOnceAndSaysWhichLockItLeft) {
  Prog p("abort_victims");
  pid_t tid = p.Start("lockspin");
  ASSERT_TRUE(WaitSettled(p.t().pid(), tid, ""));
  // Without --force it waits for the unlock: pending at the timeout.
  Report r = InjectAbort(p.t().pid(), tid, {"--timeout", "0.5"});
  EXPECT_EQ(r.code, 3) << r.raw;
  EXPECT_EQ(r.top["result"], "pending");
  EXPECT_NE(r.top["pending"].find("will abort at unlock"), std::string::npos) << r.raw;
  r = InjectAbort(p.t().pid(), tid, {"--force"});
  ASSERT_EQ(r.code, 10) << r.raw;  // gone, but it left a lock held
  EXPECT_EQ(r.top["how"], "aborted");
  EXPECT_EQ(r.top["locks_left"], "1");
  EXPECT_EQ(r.abort["how"], "forced");
  ASSERT_EQ(r.locks_left.size(), 1u) << r.raw;
  EXPECT_EQ(r.locks_left[0].rfind("spin_mu (0x", 0), 0u) << r.locks_left[0];
  EXPECT_EQ(p.WaitFor("cleanup 0"), "cleanup 0 lockspin");
  EXPECT_EQ(p.Join(0), "joined 0 canceled");
  // As reported: the mutex stays locked; everything else is fine.
  p.t().Send("trylock spin_mu");
  EXPECT_EQ(p.WaitFor("trylock"), "trylock spin_mu busy");
  p.ExpectHealthy("spin_mu");
}

TEST(AbortC, BlockedOnAMutexIsPendingUntilForced) {
  Prog p("abort_victims");
  std::string dead_mu = Field(p.ready(), "dead_mu");
  pid_t tid = p.Start("deadlock");
  ASSERT_TRUE(WaitSettled(p.t().pid(), tid, SyscallNr("futex")));
  Fields f = p.AbortUntil(tid, [](Fields& f) { return f["abort_how"] == "lock-wait"; });
  EXPECT_EQ(f["abort"], "pending") << p.History();
  EXPECT_EQ(f["pending"], "abort pending: blocked acquiring mutex " + dead_mu +
                              " held by thread " + std::to_string(p.t().pid()) + "; --force ends it");
  ASSERT_TRUE(p.AbortUntilGone(tid, true, nullptr));
  EXPECT_EQ(p.WaitFor("cleanup 0"), "cleanup 0 deadlock");
  EXPECT_EQ(p.Join(0), "joined 0 canceled");
  p.ExpectHealthy();
  p.t().Send("release");  // main's own lock still works
  p.ExpectHealthy();
}

// Detached threads that are aborted release their resources: the process
// ends up with as many threads as before.
TEST(AbortC, DetachedVictimsAreReleased) {
  Prog p("abort_victims");
  size_t before = ks::ProgramTasks(p.t().pid());
  for (int i = 0; i < 20; i++) {
    pid_t tid = p.Start("detached");
    ASSERT_TRUE(p.AbortUntilGone(tid, false, nullptr)) << p.History();
    EXPECT_EQ(p.WaitFor("cleanup " + std::to_string(i)), "cleanup " + std::to_string(i) + " detached");
  }
  size_t after = 0;
  for (int i = 0; i < 500 && (after = ks::ProgramTasks(p.t().pid())) != before; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(after, before);
  p.ExpectHealthy();
}

TEST(AbortC, TheMainThreadIsNotAborted) {
  Prog p("abort_victims");
  Fields f = p.End(p.t().pid());
  EXPECT_EQ(f["verb"], "err");
  EXPECT_EQ(f["code"], "refused");
  EXPECT_NE(f["msg"].find("main thread"), std::string::npos) << f["msg"];
  p.ExpectHealthy();
}

// A thread that ends by itself while its abort is asked: every answer is a
// clean one, and the program is fine.
TEST(AbortC, RaceWithAThreadThatExits) {
  Prog p("abort_victims");
  int canceled = 0, returned = 0;
  for (int i = 0; i < 200; i++) {
    pid_t tid = p.Start("exitsoon");
    Fields f;
    ASSERT_TRUE(p.AbortUntilGone(tid, false, &f));
    ASSERT_TRUE(f["verb"] == "ok" || (f["verb"] == "err" && f["code"] == "no-thread"))
        << f["verb"] << " " << f["msg"];
    std::string j = p.Join(i);
    canceled += j == "joined " + std::to_string(i) + " canceled";
    returned += j == "joined " + std::to_string(i) + " value";
  }
  EXPECT_EQ(canceled + returned, 200);
  // Both sides of the race happened: some were aborted, some ended first.
  EXPECT_GT(canceled, 0);
  EXPECT_GT(returned, 0);
  std::printf("race: %d aborted, %d returned first\n", canceled, returned);
  p.ExpectHealthy();
}

}  // namespace

// Cancel mode's stack check, end to end: a cancellation whose unwind would
// cross a noexcept frame (std::terminate) or a catch (...) that does not
// rethrow (glibc aborts) is refused before pthread_cancel, so the process
// lives on; the thread runs on untouched and can still be ended another way.
// Threads are checked from a wrapped call's saved registers (poll), through
// the dump signal (read, and a running loop), and not at all when a signal
// would be seen (write): then only --force cancels.
#include <gtest/gtest.h>
#include <json-c/json.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "tests/e2e/abort_util.h"
#include "tests/e2e/harness.h"

namespace {

using ks::Has;
using ks::abort_test::Prog;
using ks::abort_test::TidFrom;
using ks::abort_test::WaitSettled;


// A test program of tests/progs that speaks "spawn KIND" / "started I KIND
// tid=T" (end_cxx, end_victims), under the shim.
struct Victims {
  ks::Target t;
  int n = 0;
  explicit Victims(const std::string& prog) : t(ks::ProgPath(prog)) {
    EXPECT_EQ(t.WaitFor("ready"), "ready");
    EXPECT_TRUE(t.WaitSocket());
  }
  // Asked to quit, the program exits 0 with nothing on stderr (LeakSanitizer
  // and late sanitizer reports count); not after a fatal failure.
  ~Victims() {
    if (!::testing::Test::HasFatalFailure()) t.ExpectCleanExit();
  }
  // Starts a thread of KIND and waits until it sleeps in the system call
  // glibc makes for CALL (SyscallNr).
  pid_t Spawn(const std::string& kind, const std::string& call) {
    std::string nr = ks::abort_test::SyscallNr(call);
    t.Send("spawn " + kind);
    pid_t tid = TidFrom(t.WaitFor("started " + std::to_string(n++) + " " + kind));
    EXPECT_NE(tid, 0) << kind;
    EXPECT_TRUE(WaitSettled(t.pid(), tid, nr)) << kind << " never blocked in " << nr;
    return tid;
  }
  ks::Result End(pid_t tid, std::vector<std::string> args) {
    args.push_back(std::to_string(t.pid()));
    args.push_back(std::to_string(tid));
    return ks::Inject(args);
  }
  // end_cxx: the victim reads a byte and says so; it runs.
  void ExpectServes(int i) {
    t.Send("poke " + std::to_string(i));
    EXPECT_EQ(t.WaitFor("got " + std::to_string(i)), "got " + std::to_string(i)) << t.Stderr();
  }
  void ExpectHealthy() {
    t.Send("check");
    std::string c = t.WaitFor("check ", 20000);
    EXPECT_EQ(c.rfind("check ok", 0), 0u) << c << "\n" << t.Stderr();
    EXPECT_TRUE(t.Alive());
  }
  std::string Status(pid_t tid) {
    ks::RawClient c(t.pid());
    c.ReadLine();
    auto r = c.Request("status tid=" + std::to_string(tid));
    return r.empty() ? "" : r.back();
  }
};

// Refused, nothing done, the thread serves on; then the flag ends it (at its
// next byte: it retries the wake's EINTR) and its destructor runs.
void ExpectRefusedThenFlagEndsIt(const std::string& kind, const std::string& call,
                                 const std::string& frame, const std::string& why) {
  Victims v("end_cxx");
  pid_t tid = v.Spawn(kind, call);
  ks::Result r = v.End(tid, {"--json", "-m", "cancel", "-t", "10"});
  EXPECT_EQ(r.code, 9) << r.out << r.err;
  auto rep = ks::FlatJson(r.out);
  EXPECT_EQ(rep["result"], "refused") << r.out;
  EXPECT_EQ(rep["steps.0.accepted"], "false") << r.out;
  EXPECT_TRUE(Has(rep["steps.0.message"], frame + why)) << r.out;
  // The text report, and --force, which never overrides a certain death.
  r = v.End(tid, {"-m", "cancel", "--force", "-t", "10"});
  EXPECT_EQ(r.code, 9) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, "cancel refused: " + frame + why)) << r.out;
  EXPECT_TRUE(Has(v.Status(tid), "requested=none")) << v.Status(tid);
  v.ExpectServes(0);
  v.ExpectHealthy();
  r = v.End(tid, {"-m", "flag", "-t", "0.3"});
  EXPECT_EQ(r.code, 3) << r.out << r.err;  // blocked; it looks at the flag after a byte
  v.ExpectServes(0);
  EXPECT_EQ(v.t.WaitFor("dtor 0"), "dtor 0");
  v.t.Send("join 0");
  EXPECT_EQ(v.t.WaitFor("joined 0"), "joined 0");
  EXPECT_TRUE(Has(v.Status(tid), "how=returned")) << v.Status(tid);
  v.ExpectHealthy();
}

const char kTerminate[] = " is noexcept: unwinding through it would call std::terminate";
const char kServeNoexcept[] = "(anonymous namespace)::ServeNoexcept(int, int, bool)";

// Signalled: it unwinds itself in the dump handler and goes back to read.
TEST(CancelCheck, NoexceptAboveABlockedReadIsRefused) {
  ExpectRefusedThenFlagEndsIt("noexcept-read", "read", kServeNoexcept, kTerminate);
}

// Not signalled: read from the registers poll's wrapper saved, held meanwhile.
TEST(CancelCheck, NoexceptAboveAWrappedPollIsRefused) {
  ExpectRefusedThenFlagEndsIt("noexcept-poll", "poll", kServeNoexcept, kTerminate);
}

// noexcept around a try block: its handler entry reads as a cleanup, and the
// landing pad calls std::terminate (the cancel killed the program before the
// check read the pad's code).
TEST(CancelCheck, NoexceptWithATryBlockAboveABlockedReadIsRefused) {
  ExpectRefusedThenFlagEndsIt("noexcepttry-read", "read",
                              "(anonymous namespace)::ServeNoexceptTry(int, int)",
                              " is noexcept: its handler for this call would call std::terminate");
}

TEST(CancelCheck, CatchAllAboveABlockedReadIsRefused) {
  ExpectRefusedThenFlagEndsIt("catchall-read", "read",
                              "(anonymous namespace)::ServeCatchAll(int, int)",
                              " has a catch (...) that would catch the unwind");
}

// The ladder: the flag is set (the thread ignores the wake), cancel is
// refused at once, abort refuses with its own reason; the flag stays pending
// and ends the thread at its next byte.
TEST(CancelCheck, AutoMovesOnToAbortWhichRefusesToo) {
  Victims v("end_cxx");
  pid_t tid = v.Spawn("noexcept-read", "read");
  ks::Result r = v.End(tid, {"--json", "--grace", "0.2", "-t", "20"});
  EXPECT_EQ(r.code, 3) << r.out << r.err;  // pending: the flag request stays
  auto rep = ks::FlatJson(r.out);
  EXPECT_EQ(rep["steps"], "3") << r.out;
  EXPECT_EQ(rep["steps.0.mode"], "flag");
  EXPECT_EQ(rep["steps.0.accepted"], "true");
  EXPECT_EQ(rep["steps.1.mode"], "cancel");
  EXPECT_EQ(rep["steps.1.accepted"], "false");
  EXPECT_TRUE(Has(rep["steps.1.message"], std::string(kServeNoexcept) + kTerminate)) << r.out;
  EXPECT_EQ(rep["steps.2.mode"], "abort");
  EXPECT_EQ(rep["steps.2.accepted"], "false");
  EXPECT_TRUE(Has(rep["steps.2.message"], "std::terminate")) << r.out;
  EXPECT_TRUE(Has(v.Status(tid), "requested=flag")) << v.Status(tid);
  v.ExpectHealthy();
  v.ExpectServes(0);
  EXPECT_EQ(v.t.WaitFor("dtor 0"), "dtor 0");
  v.t.Send("join 0");
  EXPECT_EQ(v.t.WaitFor("joined 0"), "joined 0");
  v.ExpectHealthy();
}

// A running thread (no cancellation point in its loop) under a noexcept
// frame: the frames it runs under now are checked.
TEST(CancelCheck, RunningThreadUnderANoexceptFrameIsRefused) {
  Prog p("abort_cxx");
  pid_t tid = p.Start("noexcept");
  ASSERT_TRUE(WaitSettled(p.t().pid(), tid, ""));
  ks::Result r = ks::Inject({"-m", "cancel", "-t", "10", std::to_string(p.t().pid()),
                             std::to_string(tid)});
  EXPECT_EQ(r.code, 9) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, std::string("cancel refused: (anonymous namespace)::NoexceptFrame("
                                         "(anonymous namespace)::Victim*)") +
                             kTerminate))
      << r.out;
  p.t().Send("progress 0");
  std::string a = p.WaitFor("progress 0 ");
  p.t().Send("progress 0");
  std::string b = p.WaitFor("progress 0 ");
  for (int i = 0; i < 500 && a == b; i++) {
    usleep(10000);
    p.t().Send("progress 0");
    b = p.WaitFor("progress 0 ");
  }
  EXPECT_NE(a, b) << "the thread stopped making progress";
  p.ExpectHealthy();
  p.t().Send("stop");
  EXPECT_EQ(p.WaitFor("returned"), "returned 0");
  EXPECT_EQ(p.Join(0), "joined 0");
  p.ExpectHealthy();
}

// A running thread inside memcpy, called from a frame with a destructor:
// the caller's exception table has no entry for that call (GCC knows memcpy
// cannot throw), yet the cancellation, which acts only at a later
// cancellation point, never unwinds from there: the cancel waits ("it is
// running"), it is not refused as noexcept. Each try samples the thread
// afresh (it is inside its 4 MiB copies nearly all the time); a waiting
// cancel lapses once the injector stops asking, so nothing is left behind.
TEST(CancelCheck, RunningThreadInsideMemcpyWaitsAndIsNotRefusedAsNoexcept) {
  Prog p("abort_cxx");
  pid_t tid = p.Start("bigcopy");
  ASSERT_TRUE(WaitSettled(p.t().pid(), tid, ""));
  for (int i = 0; i < 8; i++) {
    ks::Result r = ks::Inject({"-m", "cancel", "-t", "0.1", std::to_string(p.t().pid()),
                               std::to_string(tid)});
    EXPECT_EQ(r.code, 3) << "try " << i << ": " << r.out << r.err;
    EXPECT_FALSE(Has(r.out, "noexcept")) << r.out;
    EXPECT_TRUE(Has(r.out, "it is running")) << r.out;
  }
  p.t().Send("stop");
  EXPECT_EQ(p.WaitFor("returned"), "returned 0");
  EXPECT_EQ(p.Join(0), "joined 0");
  EXPECT_TRUE(Has(p.History(), "dtor bigcopy 0")) << p.History();
  p.ExpectHealthy();
}

// Blocked in write, which a signal would cut short: the stack is not taken,
// so cancel is refused ("cannot check") unless --force, which cancels.
TEST(CancelCheck, UncheckableStackIsRefusedUnlessForced) {
  Victims v("end_victims");
  pid_t tid = v.Spawn("write", "write");
  ks::Result r = v.End(tid, {"-m", "cancel", "-t", "10"});
  EXPECT_EQ(r.code, 9) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, "cannot check the stack of thread " + std::to_string(tid))) << r.out;
  EXPECT_TRUE(Has(r.out, "--force cancels without the check")) << r.out;
  v.ExpectHealthy();
  r = v.End(tid, {"--json", "-m", "cancel", "--force", "-t", "30"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(ks::FlatJson(r.out)["how"], "cancelled") << r.out;
  v.t.Send("join 0");
  EXPECT_EQ(v.t.WaitFor("joined 0"), "joined 0 canceled");
  v.ExpectHealthy();
}

}  // namespace

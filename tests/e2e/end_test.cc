// killshim-inject PID TID: ending threads with the flag and cancel modes and
// the auto ladder, end to end. Every test that ends a thread then checks that
// the program's other threads run, its heap is sound and its locks are free
// (end_victims' "check").
#include <gtest/gtest.h>

#include <fstream>
#include <json-c/json.h>
#include <unistd.h>

#include <map>
#include <string>

#include "tests/e2e/harness.h"

namespace {

using ks::TidFrom;
using ks::Inject;
using ks::RawClient;
using ks::Target;

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}


// end_victims under the shim, with helpers for its commands.
struct Victims {
  Target t;
  int spawned = 0;
  explicit Victims(bool preload = true, const std::string& prog = "end_victims")
      : t(ks::ProgPath(prog), {}, {"KS_DYNTLS_LIB=" + ks::ProgPath("libdyntls.so")}, preload) {
    EXPECT_TRUE(StartsWith(t.WaitFor("main "), "main tid="));
    EXPECT_EQ(t.WaitFor("ready"), "ready");
    if (preload) {
      EXPECT_TRUE(t.WaitSocket());
    }
  }
  // Asked to quit, the program exits 0 with nothing on stderr (LeakSanitizer
  // and late sanitizer reports count); not after a fatal failure.
  ~Victims() {
    if (!::testing::Test::HasFatalFailure()) t.ExpectCleanExit();
  }
  std::string pid() const { return std::to_string(t.pid()); }
  // Starts a thread of KIND; returns its "started" line.
  std::string SpawnLine(const std::string& kind, bool detached = false) {
    int i = spawned++;
    t.Send("spawn " + kind + (detached ? " detached" : ""));
    return t.WaitFor("started " + std::to_string(i) + " " + kind);
  }
  pid_t Spawn(const std::string& kind, bool detached = false) {
    return TidFrom(SpawnLine(kind, detached));
  }
  std::string Join(int i) {
    t.Send("join " + std::to_string(i));
    return t.WaitFor("joined " + std::to_string(i));
  }
  // The program's other threads, heap and locks.
  void ExpectHealthy() {
    t.Send("check");
    std::string c = t.WaitFor("check ", 20000);
    EXPECT_TRUE(StartsWith(c, "check ok")) << c << "\n" << t.Stderr();
    EXPECT_TRUE(t.Alive());
  }
  ks::Result End(pid_t tid, std::vector<std::string> args) {
    args.push_back(pid());
    args.push_back(std::to_string(tid));
    return Inject(args);
  }
};

// "status tid=TID" over the raw protocol.
std::map<std::string, std::string> Status(pid_t pid, pid_t tid) {
  RawClient c(pid);
  c.ReadLine();
  auto r = c.Request("status tid=" + std::to_string(tid));
  return r.empty() ? std::map<std::string, std::string>{} : ks::ParseLine(r.back());
}

// ---- Flag mode ------------------------------------------------------------

TEST(Flag, HeaderApiLoopStopsAndReturnsItsValue) {
  Victims v;
  std::string line = v.SpawnLine("api");
  EXPECT_NE(line.find("requested=0"), std::string::npos) << line;
  EXPECT_EQ(line.find("fd=-1"), std::string::npos) << line;  // the shim made an eventfd
  pid_t tid = TidFrom(line);
  ks::Result r = v.End(tid, {"--json", "--mode", "flag", "--timeout", "30"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto rep = ks::FlatJson(r.out);
  EXPECT_EQ(rep["result"], "gone");
  EXPECT_EQ(rep["mode"], "flag");
  EXPECT_EQ(rep["how"], "returned");
  EXPECT_EQ(rep["left_from.symbol"], "victim_main");
  EXPECT_EQ(rep["locks_left"], "0");
  EXPECT_EQ(rep["join_value"], "what its start routine returned");
  EXPECT_FALSE(ks::TaskExists(v.t.pid(), tid));
  EXPECT_EQ(v.Join(0), "joined 0 value=0x1234");
  v.ExpectHealthy();
}

TEST(Flag, EventfdWakesAPollLoop) {
  Victims v;
  pid_t tid = v.Spawn("fd");
  ks::Result r = v.End(tid, {"--json", "-m", "flag", "-t", "30"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto rep = ks::FlatJson(r.out);
  EXPECT_EQ(rep["how"], "exited");
  EXPECT_EQ(rep["mode"], "flag");
  // The site of pthread_exit is the caller's: the program's own function.
  EXPECT_EQ(rep["left_from.symbol"], "run_fd") << r.out;
  EXPECT_EQ(rep["left_from.module"], "end_victims");
  EXPECT_EQ(v.Join(0), "joined 0 value=0x5678");
  v.ExpectHealthy();
}

TEST(Flag, WithoutTheShimTheHeaderSaysNeverRequested) {
  Victims v(/*preload=*/false);
  std::string line = v.SpawnLine("api");
  EXPECT_NE(line.find("fd=-1 requested=0"), std::string::npos) << line;
  v.ExpectHealthy();
}

TEST(Flag, SymbolNonExportedStaticGlobal) {
  Victims v;
  pid_t tid = v.Spawn("global");
  ks::Result r = v.End(tid, {"--json", "-m", "flag", "--flag-symbol", "stop_global", "-t", "30"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(ks::FlatJson(r.out)["how"], "returned");
  EXPECT_EQ(v.Join(0), "joined 0 value=0x77");
  v.ExpectHealthy();
}

TEST(Flag, SymbolThreadLocalWritesOnlyTheTargetsCopy) {
  Victims v;
  pid_t first = v.Spawn("tls");
  pid_t second = v.Spawn("tls");
  ks::Result r = v.End(first, {"-m", "flag", "--flag-symbol", "stop_tls", "-t", "30"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(v.Join(0), "joined 0 value=0x78");
  v.ExpectHealthy();  // takes a while: the second thread had time to notice
  EXPECT_TRUE(ks::TaskExists(v.t.pid(), second)) << "the other thread's copy was written";
  EXPECT_EQ(Status(v.t.pid(), second)["state"], "alive");
  r = v.End(second, {"-m", "flag", "--flag-symbol", "stop_tls", "-t", "30"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(v.Join(1), "joined 1 value=0x78");
  v.ExpectHealthy();
}

TEST(Flag, SymbolWithValueAndOneByteSize) {
  Victims v;
  pid_t tid = v.Spawn("running");
  ks::Result r = v.End(tid, {"-m", "flag", "--flag-symbol", "keep_running=0", "-t", "30"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("gone: returned (mode flag)"), std::string::npos) << r.out;
  EXPECT_EQ(v.Join(0), "joined 0 value=0x79");
  v.ExpectHealthy();
}

// A thread-local variable of a library loaded with dlopen lives in dynamic
// TLS: refused with the reason, and nothing is done to the thread.
TEST(Flag, SymbolInDynamicTlsIsRefused) {
  Victims v;
  pid_t tid = v.Spawn("dyntls");
  ks::Result r = v.End(tid, {"-m", "flag", "--flag-symbol", "dyn_stop", "-t", "5"});
  EXPECT_EQ(r.code, 9) << r.out << r.err;
  EXPECT_NE(r.out.find("dynamic TLS"), std::string::npos) << r.out;
  auto st = Status(v.t.pid(), tid);
  EXPECT_EQ(st["state"], "alive");
  EXPECT_EQ(st["requested"], "none");
  v.ExpectHealthy();
}

TEST(Flag, UnknownSymbolChangesNothing) {
  Victims v;
  pid_t tid = v.Spawn("api");
  ks::Result r = v.End(tid, {"-m", "flag", "--flag-symbol", "no_such_variable"});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("no variable 'no_such_variable'"), std::string::npos) << r.err;
  auto st = Status(v.t.pid(), tid);
  EXPECT_EQ(st["state"], "alive");
  EXPECT_EQ(st["requested"], "none");
  v.ExpectHealthy();
}

// The injector writes the stop variable itself, through the kernel: a
// read-only one is refused with the reason, nothing is asked of the thread,
// and the program never faults. The shim takes no address to write at.
TEST(Flag, ReadOnlyVariableIsRefusedNotACrash) {
  Victims v;
  pid_t tid = v.Spawn("api");
  ks::Result r = v.End(tid, {"-m", "flag", "--flag-symbol", "stop_readonly", "-t", "1"});
  EXPECT_EQ(r.code, 9) << r.out << r.err;
  EXPECT_NE(r.err.find("cannot write stop_readonly"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("read-only"), std::string::npos) << r.err;
  RawClient c(v.t.pid());
  c.ReadLine();
  auto m = ks::ParseLine(
      c.Request("end tid=" + std::to_string(tid) + " mode=flag flag_addr=0x10 flag_size=4").back());
  EXPECT_EQ(m["code"], "bad-request") << m["msg"];
  EXPECT_NE(m["msg"].find("gone since protocol 2"), std::string::npos) << m["msg"];
  auto st = Status(v.t.pid(), tid);
  EXPECT_EQ(st["state"], "alive");
  EXPECT_EQ(st["requested"], "none");  // refused before anything was done
  v.ExpectHealthy();
}

TEST(Flag, UncooperativeThreadIsPendingAtTimeoutWithTheReason) {
  Victims v;
  pid_t tid = v.Spawn("read");
  ks::Result r = v.End(tid, {"-m", "flag", "-t", "0.5"});
  EXPECT_EQ(r.code, 3) << r.out << r.err;
  EXPECT_NE(r.out.find("still alive"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("stop flag set; waiting for the thread to notice"), std::string::npos);
  EXPECT_NE(r.err.find("waiting for the thread to notice"), std::string::npos) << r.err;
  EXPECT_TRUE(ks::TaskExists(v.t.pid(), tid));
  v.ExpectHealthy();
}

// ---- Cancel mode ----------------------------------------------------------

TEST(Cancel, ThreadsBlockedInCancellationPoints) {
  Victims v;
  const char* kinds[] = {"read", "accept", "poll", "cond", "sleep"};
  for (int i = 0; i < 5; i++) {
    SCOPED_TRACE(kinds[i]);
    pid_t tid = v.Spawn(kinds[i]);
    ks::Result r = v.End(tid, {"--json", "-m", "cancel", "-t", "30"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    auto rep = ks::FlatJson(r.out);
    EXPECT_EQ(rep["result"], "gone");
    EXPECT_EQ(rep["mode"], "cancel");
    EXPECT_EQ(rep["how"], "cancelled");
    EXPECT_EQ(rep["locks_left"], "0");  // cond's cleanup handler unlocked its mutex
    EXPECT_EQ(rep["join_value"], "PTHREAD_CANCELED");
    EXPECT_EQ(rep["left_from.module"], "libc.so.6") << r.out;
    EXPECT_FALSE(ks::TaskExists(v.t.pid(), tid));
    EXPECT_EQ(v.Join(i), "joined " + std::to_string(i) + " canceled");
    v.ExpectHealthy();  // also locks cond's mutex
  }
}

// Disabled cancellation: a cancel issued now would act at the thread's first
// cancellation point after it re-enables, holding whatever it holds then.
// It waits instead (never issued: it lapses when the injector stops asking),
// and acts once the thread has re-enabled and blocks in one.
TEST(Cancel, DisabledCancellationWaitsAndActsOnceReenabled) {
  Victims v;
  pid_t tid = v.Spawn("nocancel");
  ks::Result r = v.End(tid, {"-m", "cancel", "-t", "0.5"});
  EXPECT_EQ(r.code, 3) << r.out << r.err;
  EXPECT_NE(r.out.find("cancel waits: cancellation disabled by the thread;"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("the cancel was never issued"), std::string::npos) << r.out;
  auto st = Status(v.t.pid(), tid);
  EXPECT_EQ(st["cancel"], "disabled");
  EXPECT_EQ(st["state"], "alive");
  v.ExpectHealthy();
  v.t.Send("reenable 0");
  EXPECT_EQ(v.t.WaitFor("reenabling 0"), "reenabling 0");
  // Another client's look never sets off the cancel asked before: only the
  // injector that waits for it tries it again.
  for (int i = 0; i < 5; i++) {
    EXPECT_EQ(Status(v.t.pid(), tid)["state"], "alive");
    usleep(120 * 1000);  // past the retry interval
  }
  EXPECT_TRUE(ks::TaskExists(v.t.pid(), tid));
  r = v.End(tid, {"--json", "-m", "cancel", "-t", "30"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(ks::FlatJson(r.out)["how"], "cancelled");
  EXPECT_EQ(v.Join(0), "joined 0 canceled");
  st = Status(v.t.pid(), tid);
  EXPECT_EQ(st["state"], "ended");
  EXPECT_EQ(st["how"], "cancelled");
  v.ExpectHealthy();
}

// Where a thread with cancellation disabled sits does not matter: the cancel
// waits until it re-enables. So a thread that never stays in one system call
// long enough for its stack check to be current (20 us naps) is answered
// "cancellation disabled", never "kept moving". Seen in CI with the 2 ms
// reporter on a loaded machine.
TEST(Cancel, DisabledCancellationWaitsHoweverTheThreadMoves) {
  Victims v;
  for (int i = 0; i < 5; i++) {
    SCOPED_TRACE(i);
    pid_t tid = v.Spawn("fidget");
    ks::Result r = v.End(tid, {"-m", "cancel", "-t", "0.2"});
    EXPECT_EQ(r.code, 3) << r.out << r.err;
    EXPECT_NE(r.out.find("cancellation disabled by the thread"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("kept moving"), std::string::npos) << r.out;
    r = v.End(tid, {"-m", "flag", "--flag-symbol", "stop_reporting", "-t", "30"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(v.Join(i), "joined " + std::to_string(i) + " value=0x7e");
    v.t.Send("reset-reporting");
  }
  v.ExpectHealthy();
}

// A thread that never stays in one system call long enough for its stack
// check to be current (20 us naps, cancellation enabled) is not refused: the
// cancel waits, like a running thread's, is checked again as the injector
// polls, and acts once a check holds.
TEST(Cancel, AThreadThatKeepsMovingIsCheckedAgainUntilTheCheckHolds) {
  Victims v;
  pid_t tid = v.Spawn("fidget-on");
  ks::Result r = v.End(tid, {"--json", "-m", "cancel", "-t", "30"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(ks::FlatJson(r.out)["how"], "cancelled") << r.out;
  EXPECT_EQ(v.Join(0), "joined 0 canceled");
  v.ExpectHealthy();
}

// Blocked in read holding held_mu, no cleanup handler: a cancel would leave
// held_mu locked, so it waits; --force cancels, and the report (exit 10)
// says what was left.
TEST(Cancel, ALockHeldAtCancellationWaitsUnlessForced) {
  Victims v;
  pid_t tid = v.Spawn("holder");
  ks::Result r = v.End(tid, {"--json", "-m", "cancel", "-t", "0.5"});
  EXPECT_EQ(r.code, 3) << r.out << r.err;
  EXPECT_NE(ks::FlatJson(r.out)["pending"].find("cancel waits: it holds lock held_mu ("),
            std::string::npos)
      << r.out;
  EXPECT_TRUE(ks::TaskExists(v.t.pid(), tid));
  r = v.End(tid, {"--json", "-m", "cancel", "--force", "-t", "30"});
  EXPECT_EQ(r.code, 10) << r.out << r.err;
  EXPECT_EQ(ks::FlatJson(r.out)["locks_left"], "1");
  v.ExpectHealthy();
}

TEST(Cancel, DetachedVictimIsGone) {
  Victims v;
  size_t before = ks::ProgramTasks(v.t.pid());
  pid_t tid = v.Spawn("read", /*detached=*/true);
  EXPECT_EQ(ks::ProgramTasks(v.t.pid()), before + 1);
  ks::Result r = v.End(tid, {"-m", "cancel", "-t", "30"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_FALSE(ks::TaskExists(v.t.pid(), tid));
  EXPECT_EQ(ks::ProgramTasks(v.t.pid()), before);
  v.ExpectHealthy();
}

// ---- C++ -------------------------------------------------------------------

TEST(Cxx, CancelRunsTheDestructorsOfAStdThread) {
  Victims v(true, "end_cxx");
  const char* kinds[] = {"read", "sleep"};
  for (int i = 0; i < 2; i++) {
    SCOPED_TRACE(kinds[i]);
    pid_t tid = v.Spawn(kinds[i]);
    ks::Result r = v.End(tid, {"-m", "cancel", "-t", "30"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("gone: cancelled (mode cancel)"), std::string::npos) << r.out;
    EXPECT_EQ(v.t.WaitFor("dtor " + std::to_string(i)), "dtor " + std::to_string(i));
    EXPECT_EQ(v.Join(i), "joined " + std::to_string(i));
    v.ExpectHealthy();
  }
}

TEST(Cxx, FlagThroughTheHeaderAndANamespacedAtomic) {
  Victims v(true, "end_cxx");
  pid_t tid = v.Spawn("api");
  ks::Result r = v.End(tid, {"-m", "flag", "-t", "30"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_EQ(v.t.WaitFor("dtor 0"), "dtor 0");
  tid = v.Spawn("atomic");
  r = v.End(tid, {"-m", "flag", "--flag-symbol", "app::keep_going=0", "-t", "30"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("gone: returned (mode flag)"), std::string::npos) << r.out;
  EXPECT_EQ(v.t.WaitFor("dtor 1"), "dtor 1");
  EXPECT_EQ(v.Join(0), "joined 0");
  EXPECT_EQ(v.Join(1), "joined 1");
  v.ExpectHealthy();
}

// ---- The ladder -----------------------------------------------------------

TEST(Auto, CooperativeThreadStopsAtFlag) {
  Victims v;
  pid_t tid = v.Spawn("api");
  ks::Result r = v.End(tid, {"--json", "--grace", "30", "-t", "60"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto rep = ks::FlatJson(r.out);
  EXPECT_EQ(rep["mode"], "flag");
  EXPECT_EQ(rep["steps"], "1");
  EXPECT_EQ(v.Join(0), "joined 0 value=0x1234");
  v.ExpectHealthy();
}

TEST(Auto, BlockedUncooperativeThreadStopsAtCancel) {
  Victims v;
  pid_t tid = v.Spawn("read");
  ks::Result r = v.End(tid, {"--json", "--grace", "0.3", "-t", "30"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto rep = ks::FlatJson(r.out);
  EXPECT_EQ(rep["mode"], "cancel");
  EXPECT_EQ(rep["steps"], "2");
  EXPECT_EQ(rep["steps.0.mode"], "flag");
  EXPECT_EQ(rep["steps.1.mode"], "cancel");
  EXPECT_EQ(v.Join(0), "joined 0 canceled");
  v.ExpectHealthy();
}

// mode=abort reaches the shim as asked (with force=1) and ends the thread.
TEST(Auto, AbortIsPassedThrough) {
  Victims v;
  pid_t tid = v.Spawn("read");
  ks::Result r = v.End(tid, {"--json", "-m", "abort", "--force", "-t", "30"});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto rep = ks::FlatJson(r.out);
  EXPECT_EQ(rep["how"], "aborted");
  EXPECT_EQ(rep["mode"], "abort");
  EXPECT_EQ(v.Join(0), "joined 0 canceled");
  v.ExpectHealthy();
}

// The demo's reporter: a cancel stays pending (cancellation is off for
// good), then the program's own variable, written by flag mode, ends it.
// The thread returned, so the report credits the flag, never the pending
// cancel, and never "ended by itself", however the flag request and the
// thread's exit interleave (the shim records the request before it writes
// the variable). Twenty times over, to meet every interleaving it can.
TEST(Auto, APendingCancelThenAFlagIsCreditedToTheFlag) {
  Victims v;
  for (int i = 0; i < 20; i++) {
    SCOPED_TRACE(i);
    pid_t tid = v.Spawn("reporter");
    ks::Result r = v.End(tid, {"-m", "cancel", "-t", "0.2"});
    EXPECT_EQ(r.code, 3) << r.out << r.err;
    EXPECT_NE(r.out.find("cancellation disabled by the thread"), std::string::npos) << r.out;
    r = v.End(tid, {"--json", "-m", "flag", "--flag-symbol", "stop_reporting", "-t", "30"});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    auto rep = ks::FlatJson(r.out);
    EXPECT_EQ(rep["how"], "returned") << r.out;
    EXPECT_EQ(rep["mode"], "flag") << r.out;
    EXPECT_EQ(v.Join(i), "joined " + std::to_string(i) + " value=0x7e");
    // The next reporter starts with the variable clear again.
    v.t.Send("reset-reporting");
  }
  v.ExpectHealthy();
}

// ---- Targets that are refused or absent -----------------------------------

TEST(Refused, ShimThreadMainThreadAndUnknownThread) {
  Victims v;
  pid_t shim = 0;
  RawClient c(v.t.pid());
  c.ReadLine();
  for (const auto& l : c.Request("list"))
    if (ks::ParseLine(l)["role"] == "shim" && ks::ParseLine(l)["name"] == "killshim-ctl")
      shim = atoi(ks::ParseLine(l)["tid"].c_str());
  ASSERT_NE(shim, 0);
  for (const char* mode : {"auto", "flag", "cancel"}) {
    ks::Result r = v.End(shim, {"-m", mode, "-t", "5"});
    EXPECT_EQ(r.code, 9) << mode << r.out << r.err;
    EXPECT_NE(r.out.find("killshim's own threads"), std::string::npos) << r.out;
  }
  ks::Result r = v.End(v.t.pid(), {"-m", "cancel"});
  EXPECT_EQ(r.code, 9) << r.out << r.err;
  EXPECT_NE(r.out.find("main thread"), std::string::npos) << r.out;
  r = v.End(getpid(), {});  // a thread of another process
  EXPECT_EQ(r.code, 8) << r.out << r.err;
  EXPECT_NE(r.err.find("no thread"), std::string::npos) << r.err;
  v.ExpectHealthy();
}

// The victim returns by itself while the request is on its way: every
// outcome is a clean answer (gone, or no such thread), never an error.
TEST(Race, ThreadExitingAtTheSameMomentIsAnsweredCleanly) {
  Victims v;
  int gone = 0, absent = 0;
  for (int i = 0; i < 20; i++) {
    pid_t tid = v.Spawn("racer");
    v.t.Send("release " + std::to_string(i));
    ks::Result r = v.End(tid, {"--json", "-m", "cancel", "-t", "30"});
    if (r.code == 0) {
      gone++;
      std::string how = ks::FlatJson(r.out)["how"];
      EXPECT_TRUE(how == "returned" || how == "cancelled") << r.out;
    } else {
      absent++;
      EXPECT_EQ(r.code, 8) << r.out << r.err;
      EXPECT_NE(r.err.find("no such thread"), std::string::npos) << r.err;
    }
    std::string j = v.Join(i);
    EXPECT_TRUE(j == "joined " + std::to_string(i) + " value=(nil)" ||
                j == "joined " + std::to_string(i) + " canceled")
        << j;
  }
  EXPECT_EQ(gone + absent, 20);
  v.ExpectHealthy();
}

TEST(Protocol, StatusOfAnEndedThreadComesFromTheGraveyard) {
  Victims v;
  pid_t tid = v.Spawn("holder");
  RawClient c(v.t.pid());
  c.ReadLine();
  auto alive = ks::ParseLine(c.Request("status tid=" + std::to_string(tid)).back());
  ASSERT_EQ(alive["state"], "alive");
  EXPECT_EQ(alive["locks"], "1");
  std::string id = alive["id"];
  // The site of a cancel is where the thread is blocked: wait until it is.
  std::string sc = "/proc/" + std::to_string(v.t.pid()) + "/task/" + std::to_string(tid) + "/syscall";
  for (int i = 0; i < 5000; i++) {
    std::ifstream f(sc);
    std::string first;
    f >> first;
    if (!first.empty() && isdigit((unsigned char)first[0])) break;
    usleep(1000);
  }
  auto end = ks::ParseLine(
      c.Request("end tid=" + std::to_string(tid) + " id=" + id + " mode=cancel force=1").back());
  EXPECT_EQ(end["verb"], "ok");
  EXPECT_EQ(v.Join(0), "joined 0 canceled");
  auto st = ks::ParseLine(c.Request("status tid=" + std::to_string(tid) + " id=" + id).back());
  EXPECT_EQ(st["state"], "ended");
  EXPECT_EQ(st["how"], "cancelled");
  EXPECT_EQ(st["requested"], "cancel");
  EXPECT_EQ(st["locks_left"], "1");
  EXPECT_FALSE(st["site"].empty());
  // A request with the old id is answered from the graveyard too.
  auto again = ks::ParseLine(
      c.Request("end tid=" + std::to_string(tid) + " id=" + id + " mode=flag").back());
  EXPECT_EQ(again["state"], "ended");
  for (const char* bad : {"end", "end tid=1", "end tid=x mode=flag", "end tid=1 mode=kill",
                          "status", "end tid=1 mode=flag flag_addr=0x10"}) {
    auto m = ks::ParseLine(c.Request(bad).back());
    EXPECT_EQ(m["code"], "bad-request") << bad;
  }
  v.ExpectHealthy();
}

}  // namespace

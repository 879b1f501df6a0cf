// The abort mode on C++ programs, end to end: destructors run in every frame
// the thread leaves, and where leaving would call std::terminate (noexcept
// code, a noexcept function holding a try block, catch (...)) the abort is
// refused or waits, and the program is unharmed. The C programs' cases are in
// abort_test.cc.
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

long Progress(Prog& p, int idx) {
  p.t().Send("progress " + std::to_string(idx));
  std::string l = p.WaitFor("progress " + std::to_string(idx) + " ");
  return atol(l.c_str() + l.rfind(' ') + 1);
}

// Victim 0, asked to end and not ended, runs on (its progress grows within
// 5 s) and no handler of the unwind ran in it.
void ExpectRunsOnUntouched(Prog& p) {
  long n0 = Progress(p, 0);
  for (int i = 0; i < 1000 && Progress(p, 0) == n0; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_GT(Progress(p, 0), n0) << "the thread stopped making progress";
  EXPECT_EQ(p.History().find("forced-unwind"), std::string::npos);   // no handler ran
}

// Starts KIND and waits until it is inside its loop (before, an abort rightly
// fires elsewhere: in its first output line, say).
pid_t StartInside(Prog& p, const std::string& kind) {
  pid_t tid = p.Start(kind);
  for (int i = 0; i < 2000 && Progress(p, p.last()) == 0; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return tid;
}

TEST(AbortCxx, DestructorsRunInEveryFrame) {
  Prog p("abort_cxx");
  pid_t tid = StartInside(p, "raii");
  Report r = InjectAbort(p.t().pid(), tid);
  ASSERT_EQ(r.code, 0) << r.raw;
  EXPECT_EQ(r.top["how"], "aborted");
  EXPECT_EQ(r.top["mode"], "abort");
  // It left at a call boundary (or from a frame without cleanups), and the
  // report names the frames whose cleanups ran.
  EXPECT_TRUE(r.abort["how"] == "call" || r.abort["how"] == "frame" || r.abort["how"] == "return")
      << r.raw;
  std::string cl;
  for (auto& c : r.cleanups) cl += c + "\n";
  EXPECT_NE(cl.find("Inner"), std::string::npos) << cl;
  EXPECT_NE(cl.find("RunRaii"), std::string::npos) << cl;
  EXPECT_EQ(p.WaitFor("dtor"), "dtor inner 0");
  EXPECT_EQ(p.WaitFor("dtor"), "dtor outer 0");
  EXPECT_EQ(p.Join(0), "joined 0");
  p.ExpectHealthy();
}

// The thread is nearly always inside a call with no handler entry in its
// caller's exception table (a function the compiler knew cannot throw, as
// memcpy), in a frame with a destructor. Leaving from there would call
// std::terminate, but only there: the abort waits for the call to return and
// leaves at the caller's next call site, never refuses. Three victims in a row
// (the bug this guards, a refusal, came for nearly every one).
TEST(AbortCxx, InsideACallThatCannotThrowWaitsForItsReturn) {
  Prog p("abort_cxx");
  for (int i = 0; i < 3; i++) {
    pid_t tid = StartInside(p, "nothrow");
    Report r = InjectAbort(p.t().pid(), tid);
    ASSERT_EQ(r.code, 0) << r.raw;
    EXPECT_EQ(r.top["how"], "aborted") << r.raw;
    EXPECT_TRUE(r.abort["how"] == "call" || r.abort["how"] == "frame") << r.raw;
    std::string cl;
    for (auto& c : r.cleanups) cl += c + "\n";
    EXPECT_NE(cl.find("RunNothrow"), std::string::npos) << cl;
    EXPECT_EQ(p.WaitFor("dtor"), "dtor nothrow " + std::to_string(i));
    EXPECT_EQ(p.Join(i), "joined " + std::to_string(i));
  }
  p.ExpectHealthy();
}

// A call that cannot throw and outlasts every stepping run: the abort waits
// (pending, retried every 2 s, with the reason) and never refuses. It used
// to be refused at once: "would call std::terminate: ... is noexcept".
TEST(AbortCxx, InsideALongCallThatCannotThrowIsPendingNotRefused) {
  Prog p("abort_cxx");
  pid_t tid = StartInside(p, "nothrowlong");
  Fields f = p.AbortUntil(tid, [](Fields& f) {
    return f["abort"] == "refused" || f["state"] == "ended" ||
           f["pending"].find("in a call that cannot throw") != std::string::npos;
  });
  EXPECT_EQ(f["abort"], "pending") << f["pending"] << "\n" << p.History();
  EXPECT_NE(f["pending"].find("in a call that cannot throw, from abort_cxx+0x"), std::string::npos)
      << f["pending"];
  EXPECT_NE(f["pending"].find("waits for it to return"), std::string::npos) << f["pending"];
  // Unharmed: it runs on, and the program with it.
  ExpectRunsOnUntouched(p);
  p.ExpectHealthy();
}

// The same inside memcpy (libc): the thread steps out of it and, once it
// returned, on to the next call site with a handler entry, in one stepping
// run. It used to wait there for the whole frame to return, which this one
// never does: pending past the stepping budget ("no call boundary", "still
// inside libc") until a retry caught it outside memcpy, seconds later.
TEST(AbortCxx, InsideANothrowLibraryCallLeavesAtTheNextCallSite) {
  Prog p("abort_cxx");
  for (int i = 0; i < 3; i++) {
    pid_t tid = StartInside(p, "memcpy");
    std::set<std::string> seen;
    auto gone = [](Fields& f) {
      return f["state"] == "ended" || (f["verb"] == "err" && f["code"] == "no-thread");
    };
    Fields f = p.AbortUntil(tid, [&seen, &gone](Fields& f) {
      seen.insert(f["abort_how"] + ": " + f["pending"]);
      return gone(f) || f["abort"] == "refused" || f["abort_how"] == "no-call-boundary" ||
             f["pending"].find("after the stepping budget") != std::string::npos;
    });
    std::string all;
    for (auto& s : seen) all += s + "\n";
    ASSERT_TRUE(gone(f)) << all << p.History();
    EXPECT_EQ(p.WaitFor("dtor"), "dtor memcpy " + std::to_string(i));
    EXPECT_EQ(p.Join(i), "joined " + std::to_string(i));
  }
  p.ExpectHealthy();
}

// SIGTRAP is the program's until its first abort, which installs the shim's
// handler (at load it cost every process four system calls): the program
// finds it at its default at start and sets its own; the abort, which
// single-steps the thread out of memcpy, keeps its trace traps to itself
// (none reaches the program's handler) and hands the program its own
// breakpoint afterwards.
TEST(AbortCxx, SigtrapIsTheProgramsUntilAnAbortThenShared) {
  Prog p("abort_cxx");
  p.t().Send("trap-install");
  EXPECT_EQ(p.WaitFor("trap-installed"), "trap-installed start=dfl");
  pid_t tid = StartInside(p, "memcpy");
  auto gone = [](Fields& f) {
    return f["state"] == "ended" || (f["verb"] == "err" && f["code"] == "no-thread");
  };
  Fields f = p.AbortUntil(tid, [&gone](Fields& f) {
    return gone(f) || f["abort"] == "refused" || f["abort_how"] == "no-call-boundary";
  });
  ASSERT_TRUE(gone(f)) << f["pending"] << "\n" << p.History();
  EXPECT_EQ(p.WaitFor("dtor"), "dtor memcpy 0");
  EXPECT_EQ(p.Join(0), "joined 0");
  p.t().Send("trap-raise");
  EXPECT_EQ(p.WaitFor("trapped"), "trapped 1 trace=0");
  p.ExpectHealthy();
}

TEST(AbortCxx, ForcedUnwindCanBeCaughtAndRethrown) {
  Prog p("abort_cxx");
  pid_t tid = StartInside(p, "rethrow");
  ASSERT_TRUE(p.AbortUntilGone(tid, false, nullptr));
  EXPECT_EQ(p.WaitFor("forced-unwind"), "forced-unwind 0") << p.History();
  EXPECT_EQ(p.WaitFor("dtor"), "dtor rethrow 0");
  EXPECT_EQ(p.Join(0), "joined 0");
  p.ExpectHealthy();
}

// The abort's walk runs in a signal handler on the thread's own stack, here
// the smallest one (16 KiB, PTHREAD_STACK_MIN), with 20 frames with
// destructors and a rethrowing catch (abi::__forced_unwind&) on it: the
// landing pad check works off that stack (the branch that added it first
// put some 8 KB a pad scan there, and the thread died of SIGSEGV with the
// whole process).
TEST(AbortCxx, AThreadWithTheSmallestStackIsAborted) {
  Prog p("abort_cxx");
  pid_t tid = StartInside(p, "smallstack");
  Report r = InjectAbort(p.t().pid(), tid);
  ASSERT_EQ(r.code, 0) << r.raw << p.History();
  EXPECT_EQ(r.top["how"], "aborted") << r.raw;
  EXPECT_EQ(p.WaitFor("forced-unwind"), "forced-unwind 0") << p.History();
  EXPECT_EQ(p.WaitFor("small-ended"), "small-ended 0 canceled") << p.History();
  // Every destructor ran before the handler (the lines read so far).
  std::string h = p.History();
  auto count = [&h](const std::string& line) {
    int n = 0;
    for (size_t at = h.find(line); at != std::string::npos; at = h.find(line, at + 1)) n++;
    return n;
  };
  EXPECT_EQ(count("< dtor inner 0\n"), 1) << h;
  EXPECT_EQ(count("< dtor nest 0\n"), 20) << h;
  EXPECT_EQ(p.Join(0), "joined 0");
  p.ExpectHealthy();
}

TEST(AbortCxx, ConditionVariableWaitLeavesAndUnlocks) {
  Prog p("abort_cxx");
  pid_t tid = p.Start("cv");
  ASSERT_TRUE(p.AbortUntilGone(tid, false, nullptr));
  EXPECT_EQ(p.WaitFor("dtor"), "dtor cv 0");
  EXPECT_EQ(p.Join(0), "joined 0");
  p.ExpectHealthy();  // includes the cv's mutex
}

// Inside qsort the return into the program is patched; an exception thrown
// by the comparator must still unwind through that frame (and a backtrace
// see through it), and the abort still fire afterwards.
TEST(AbortCxx, ExceptionsAndBacktracesPassAPatchedReturn) {
  Prog p("abort_cxx");
  pid_t tid = StartInside(p, "qsort");  // parked in its comparator
  Fields f = p.AbortUntil(tid, [](Fields& f) { return f["abort_how"] == "armed"; });
  ASSERT_EQ(f["abort_how"], "armed") << f["pending"] << "\n" << p.History();
  EXPECT_NE(f["pending"].find("inside abort_cxx+0x"), std::string::npos) << f["pending"];
  EXPECT_NE(f["pending"].find("leaves when it returns to abort_cxx+0x"), std::string::npos);
  p.t().Send("throw");
  EXPECT_EQ(p.WaitFor("backtrace"), "backtrace-ok");
  EXPECT_EQ(p.WaitFor("caught"), "caught 0");
  ASSERT_TRUE(p.AbortUntilGone(tid, false, nullptr));
  EXPECT_EQ(p.WaitFor("dtor"), "dtor qsort 0");
  EXPECT_EQ(p.Join(0), "joined 0");
  p.ExpectHealthy();
}

// Refused before anything was done: the thread runs on, unharmed.
// FN: the function the reason names, if not "".
void ExpectRefusedAndUnharmed(const std::string& kind, const std::string& why,
                              const std::string& fn = "", const std::string& prog = "abort_cxx") {
  Prog p(prog);
  pid_t tid = StartInside(p, kind);
  Report r = InjectAbort(p.t().pid(), tid);
  EXPECT_EQ(r.code, 9) << r.raw;   // refused
  EXPECT_EQ(r.top["result"], "refused") << r.raw;
  EXPECT_NE(r.raw.find(why), std::string::npos) << r.raw;
  EXPECT_NE(r.raw.find(prog + "+0x"), std::string::npos) << r.raw;
  EXPECT_NE(r.raw.find(fn), std::string::npos) << r.raw;
  ExpectRunsOnUntouched(p);
  p.ExpectHealthy();
  p.t().Send("stop");
  EXPECT_EQ(p.WaitFor("returned"), "returned 0");
  EXPECT_EQ(p.Join(0), "joined 0");
  p.ExpectHealthy();
}

TEST(AbortCxx, NoexceptFrameIsRefused) { ExpectRefusedAndUnharmed("noexcept", "std::terminate"); }

TEST(AbortCxx, CatchAllIsRefused) { ExpectRefusedAndUnharmed("catchall", "catch (...)"); }

// void F() noexcept { try { Loop(); } catch (const std::runtime_error&) {} }
// with the thread in Loop: the call's handler entry is "catch runtime_error,
// else cleanup", and that cleanup's code calls std::terminate (the process
// died of "terminate called without an active exception" before the walk
// read the landing pad's code). GCC at -O2 (the dispatch in F's .cold part)
// and at -O0 (cmp $1,%rdx in F itself).
TEST(AbortCxx, NoexceptFunctionHoldingATryBlockIsRefused) {
  ExpectRefusedAndUnharmed("trycatch", "would call std::terminate: abort_cxx+0x", "NoexceptTry(");
}

TEST(AbortCxx, NoexceptFunctionHoldingATryBlockAtO0IsRefused) {
  ExpectRefusedAndUnharmed("trycatch0", "is noexcept (its handler for this call calls it)",
                           "NoexceptTryO0(");
}

// With a catch (...) after the typed catch, the forced unwind is caught
// there (and glibc would abort the process at the handler's end).
TEST(AbortCxx, NoexceptFunctionWithCatchAllIsRefused) {
  ExpectRefusedAndUnharmed("trycatchall", "catch (...)", "NoexceptTryAll(");
}

// catch (abi::__forced_unwind&) { ...; throw; } in a noexcept function: the
// handler runs, and its rethrow calls std::terminate (the walk follows the
// rethrow into the LSDA of its call). Refused before the handler runs.
TEST(AbortCxx, RethrowInsideANoexceptFunctionIsRefused) {
  ExpectRefusedAndUnharmed("rethrownoexcept", "is noexcept (its handler for this call calls it)",
                           "NoexceptRethrow(");
}

// Clang writes the noexcept region as a catch (...) clause whose handler
// calls __clang_call_terminate: refused as std::terminate, not catch (...).
TEST(AbortCxx, NoexceptFunctionHoldingATryBlockBuiltByClangIsRefused) {
  ExpectRefusedAndUnharmed("trycatch", "is noexcept (its handler for this call calls it)",
                           "NoexceptTry(", "abort_cxx_clang");
}

TEST(AbortCxx, NoCallBoundaryIsPendingThenForceSkipsThatFrame) {
  Prog p("abort_cxx");
  pid_t tid = StartInside(p, "nocall");
  Fields f = p.AbortUntil(tid, [](Fields& f) { return f["abort_how"] == "no-call-boundary"; });
  EXPECT_EQ(f["abort"], "pending") << p.History();
  EXPECT_NE(f["pending"].find("no call boundary reached in abort_cxx+0x"), std::string::npos)
      << f["pending"];
  EXPECT_NE(f["pending"].find("--force exits without its destructors"), std::string::npos);
  ASSERT_TRUE(p.AbortUntilGone(tid, true, nullptr)) << p.History();
  EXPECT_EQ(p.Join(0), "joined 0");
  EXPECT_EQ(Progress(p, 0), 1);  // a line after the join: no "dtor nocall" came first
  EXPECT_EQ(p.History().find("dtor nocall"), std::string::npos);
  p.ExpectHealthy();
}

}  // namespace

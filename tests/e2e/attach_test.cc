// killshim-inject --attach PID: the shim loaded into programs started
// WITHOUT it (tests/progs/attach_target.c), end to end.
#include <gtest/gtest.h>
#include <json-c/json.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <limits.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "tests/e2e/attach_util.h"
#include "tests/e2e/harness.h"

namespace {

using ks::Has;
using ks::Inject;
using ks::Target;
using namespace ks_attach;

// The program's own target, started without the shim.
Target Start(const std::string& scenario, const std::vector<std::string>& env = {}) {
  return Target(ks::ProgPath("attach_target"), {scenario}, env, /*preload=*/false);
}

int MapsShim(pid_t pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  int n = 0;
  while (std::getline(maps, line)) n += Has(line, "/libkillshim.so") && Has(line, "r-xp");
  return n;
}

// The fd numbers PID has open.
std::set<int> Fds(pid_t pid) {
  std::set<int> fds;
  DIR* d = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  while (d) {
    struct dirent* e = readdir(d);
    if (!e) break;
    if (e->d_name[0] != '.') fds.insert(atoi(e->d_name));
  }
  if (d) closedir(d);
  return fds;
}

// The borrowed thread and its call, from the injector's report line.
bool Borrowed(const ks::Result& r, pid_t tid, const std::string& call) {
  return Has(r.err, "borrowed thread " + std::to_string(tid) + ", in " + call + ",");
}

TEST(Attach, PreAttachThreadsAreListedAndRunOn) {
  KS_NEED_PTRACE();
  Target t = Start("workers");
  ASSERT_EQ(t.WaitFor("ready"), "ready 5") << t.Stderr();
  ASSERT_EQ(MapsShim(t.pid()), 0);
  long before = Beats(t);
  ks::Result r = Attach(t.pid(), {"--json"});
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_TRUE(Has(r.err, "loaded the shim into " + std::to_string(t.pid()))) << r.err;
  EXPECT_EQ(MapsShim(t.pid()), 1);
  auto j = ks::FlatJson(r.out);
  int n = atoi(j["threads"].c_str()), pre = 0;
  for (int i = 0; i < n; i++) {
    std::string k = "threads." + std::to_string(i) + ".";
    if (j[k + "role"] != "pre-attach") continue;
    pre++;
    EXPECT_EQ(j.count(k + "locks_held"), 0u) << "a pre-attach thread's lock count is unknown, "
                                                 "never 0";
    EXPECT_EQ(j[k + "registered"], "false");
  }
  EXPECT_GE(pre, 5) << r.out;   // main, spinner, reader, waiter, heartbeat
  // Every kind of thread still does its work.
  EXPECT_TRUE(BeatsPass(t, before));
  t.Send("wake");
  EXPECT_EQ(t.WaitFor("reader got"), "reader got 1");
  t.Send("signal");
  EXPECT_EQ(t.WaitFor("waiter woke"), "waiter woke 1");
  t.ExpectCleanExit("quit");
}

TEST(Attach, StacksOfPreAttachThreads) {
  KS_NEED_PTRACE();
  Target t = Start("workers", TsanPreAttachDumpEnv());
  ASSERT_EQ(t.WaitFor("ready"), "ready 5") << t.Stderr();
  std::set<int> before = Fds(t.pid());
  ks::Result r = Attach(t.pid(), {"--stack"});
  ASSERT_EQ(r.code, 0) << r.err;
  // The shim's fds stay out of the program's way (256 and up), as when it
  // is preloaded: libunwind's init opens no pipe (its pipe2 slot leads to
  // the shim's hook, patched before that init ran).
  for (int fd : Fds(t.pid()))
    if (!before.count(fd)) EXPECT_GE(fd, 256) << "new fd " << fd;
  for (const char* fn : {"spinner", "reader", "waiter", "main"})
    EXPECT_TRUE(Has(r.out, std::string(" ") + fn + "+")) << fn << "\n" << r.out;
  EXPECT_TRUE(Has(r.out, "(pre-attach, R)")) << r.out;
  EXPECT_TRUE(BeatsPass(t, Beats(t)));
  t.ExpectCleanExit("quit");
}

// Threads that were there are refused with the reason; threads the program
// starts after the attach go through the shim's pthread_create (its GOT
// slot now leads there) and end like any other.
TEST(Attach, ThreadsStartedAfterTheAttachCanBeEnded) {
  KS_NEED_PTRACE();
  Target t = Start("workers");
  ASSERT_EQ(t.WaitFor("ready"), "ready 5") << t.Stderr();
  ASSERT_EQ(Attach(t.pid()).code, 0);
  auto rows = ks::ListRows(t.pid());
  pid_t spinner = 0;
  for (auto& [tid, row] : rows)
    if (row["state"] == "R" && row["role"] == "pre-attach") spinner = tid;
  ASSERT_NE(spinner, 0);
  ks::Result no = Inject({"-m", "abort", "-t", "2", std::to_string(t.pid()),
                          std::to_string(spinner)});
  EXPECT_EQ(no.code, 9) << no.err;
  EXPECT_TRUE(Has(no.err, "started before the shim was attached")) << no.err;
  EXPECT_TRUE(ks::TaskExists(t.pid(), spinner));

  t.Send("spawn");
  pid_t late = ks::TidFrom(t.WaitFor("spawned"));
  ASSERT_NE(late, 0);
  rows = ks::ListRows(t.pid());
  EXPECT_EQ(rows[late]["role"], "app");
  ks::Result end = Inject({"-m", "abort", "-t", "10", std::to_string(t.pid()),
                           std::to_string(late)});
  EXPECT_EQ(end.code, 0) << end.err << end.out;
  EXPECT_TRUE(Has(end.out, "gone")) << end.out;
  EXPECT_FALSE(ks::TaskExists(t.pid(), late));
  EXPECT_TRUE(BeatsPass(t, Beats(t)));
  t.ExpectCleanExit("quit");
}

// The borrowed thread sat in nanosleep(5 s): it still sleeps its 5 s, no
// less (an early return) and not much more.
TEST(Attach, ASleepKeepsItsTime) {
  KS_NEED_PTRACE();
  Target t = Start("sleep");
  ASSERT_EQ(t.WaitFor("ready"), "ready 1") << t.Stderr();
  long t0 = ks::NowMs();
  // Wait until it is really in the call (the attach borrows only a thread
  // in a plain blocking call).
  std::string sc;
  while (ks::NowMs() - t0 < 2000) {
    std::ifstream f("/proc/" + std::to_string(t.pid()) + "/syscall");
    std::getline(f, sc);
    if (sc.rfind("230 ", 0) == 0) break;
    usleep(1000);
  }
  ks::Result r = Attach(t.pid());
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_LT(ks::NowMs() - t0, 4000) << "the attach must land inside the sleep";
  EXPECT_TRUE(Borrowed(r, t.pid(), "clock_nanosleep")) << r.err;
  std::string l = t.WaitFor("slept", 10000);
  ASSERT_FALSE(l.empty()) << t.Stderr();
  double slept = atof(l.c_str() + 6);
  EXPECT_GE(slept, 4.99) << l;
  EXPECT_LT(slept, 6.0) << l;
  EXPECT_TRUE(Has(l, "r=0")) << l;
  t.Send("bye");
  EXPECT_EQ(t.WaitFor("got"), "got bye");
  EXPECT_EQ(t.Wait(), 0);
}

// The borrowed thread sat in read(stdin): the read restarts and gets the data.
TEST(Attach, ABlockedReadGetsItsData) {
  KS_NEED_PTRACE();
  Target t = Start("pipe");
  ASSERT_EQ(t.WaitFor("ready"), "ready 1") << t.Stderr();
  ks::Result r = Attach(t.pid());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(Borrowed(r, t.pid(), "read")) << r.err;
  t.Send("hello");
  EXPECT_EQ(t.WaitFor("got"), "got hello");
  EXPECT_EQ(t.Wait(), 0);
}

// Every vector register (ymm0-15, or xmm0-15 without AVX) and the
// callee-saved ones the program keeps across its raw read are as they were:
// the borrowed thread ran pthread_create (which uses them) in between.
TEST(Attach, RegistersAreUnchanged) {
  KS_NEED_PTRACE();
  Target t = Start("vector");
  ASSERT_FALSE(t.WaitFor("ready").empty()) << t.Stderr();
  ks::Result r = Attach(t.pid());
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_TRUE(Borrowed(r, t.pid(), "read")) << r.err;
  t.Send("x");
  std::string l = t.WaitFor("regs");
  EXPECT_TRUE(Has(l, "regs ok")) << l;
  EXPECT_EQ(t.Wait(), 0);
}

// A second attach finds the shim there and only connects; many cycles of
// attach-then-list leave the program as it was (one shim, its heartbeat
// running after each).
TEST(Attach, RepeatedAttachOnlyConnects) {
  KS_NEED_PTRACE();
  Target t = Start("workers");
  ASSERT_EQ(t.WaitFor("ready"), "ready 5") << t.Stderr();
  long beats = Beats(t);
  for (int i = 0; i < 200; i++) {
    ks::Result r = Attach(t.pid());
    ASSERT_EQ(r.code, 0) << "cycle " << i << ": " << r.err;
    ASSERT_TRUE(Has(r.out, "pre-attach")) << r.out;
    if (i > 0) ASSERT_TRUE(Has(r.err, "already runs the shim")) << "cycle " << i << ": " << r.err;
    ASSERT_TRUE(BeatsPass(t, beats)) << "cycle " << i;
    beats = Beats(t);
  }
  EXPECT_EQ(MapsShim(t.pid()), 1);
  t.ExpectCleanExit("quit");
}

// Another thread holds the loader's lock (a library constructor that takes
// 3 s): the attach stops waiting at --timeout and says why; the program is
// not stuck (the borrowed thread came back long before), and the shim loads
// once the loader is free, after which an attach only connects.
TEST(Attach, ABusyLoaderEndsInATimeoutAndAHealthyProgram) {
  KS_NEED_PTRACE();
  Target t(ks::ProgPath("attach_target"), {"slowload", ks::ProgPath("libslowinit.so")}, {},
           /*preload=*/false);
  ASSERT_EQ(t.WaitFor("ctor in"), "ctor in") << t.Stderr();
  long t0 = ks::NowMs();
  ks::Result r = Attach(t.pid(), {"-t", "1"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_TRUE(Has(r.err, "did not finish within 1000 ms")) << r.err;
  EXPECT_LT(ks::NowMs() - t0, 2900) << "the attach must have ended before the constructor";
  t.Send("meanwhile");
  EXPECT_EQ(t.WaitFor("got"), "got meanwhile");
  ASSERT_EQ(t.WaitFor("ctor out"), "ctor out");
  long end = ks::NowMs() + 5000;
  ks::Result again;
  do {
    again = Attach(t.pid());
  } while (!Has(again.err, "already runs the shim") && ks::NowMs() < end && usleep(50000) == 0);
  EXPECT_EQ(again.code, 0) << again.err;
  EXPECT_TRUE(Has(again.err, "already runs the shim")) << again.err;
  EXPECT_TRUE(Has(again.out, "pre-attach")) << again.out;
  t.Send("bye");
  EXPECT_EQ(t.WaitFor("got"), "got bye");
  EXPECT_EQ(t.Wait(), 0);
}

// A program in another mount namespace, where the injector's library path
// does not exist (a tmpfs over its directory): the library goes in through
// a memfd of the program's, and the memfd is closed once it is loaded.
TEST(Attach, AnotherMountNamespaceLoadsFromAMemfd) {
  KS_NEED_PTRACE();
  if (std::string why = ks::NamespaceUnavailable("mount"); !why.empty())
    GTEST_SKIP() << "no mount namespace to hide the library in: " << why;
  char real[PATH_MAX];
  ASSERT_NE(realpath(ks::ShimPath().c_str(), real), nullptr);
  std::string dir = std::string(real).substr(0, std::string(real).rfind('/'));
  Target t("/usr/bin/unshare", {"-m", "--propagation", "private", "/bin/sh", "-c",
                                "mount -t tmpfs none '" + dir + "' && exec '" +
                                    ks::ProgPath("attach_target") + "' pipe"},
           {}, /*preload=*/false);
  ASSERT_EQ(t.WaitFor("ready"), "ready 1") << t.Stderr();
  std::set<int> before = Fds(t.pid());
  ks::Result r = Attach(t.pid());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(Has(r.out, "pre-attach")) << r.out;
  EXPECT_EQ(MapsShim(t.pid()), 1);
  for (int fd : Fds(t.pid()))
    if (!before.count(fd)) EXPECT_GE(fd, 256) << "new fd " << fd << " (the memfd not closed?)";
  t.Send("contained");
  EXPECT_EQ(t.WaitFor("got"), "got contained");
  EXPECT_EQ(t.Wait(), 0);
}

TEST(Attach, ATracedProgramIsRefusedWithItsTracer) {
  KS_NEED_PTRACE();
  Target t = Start("pipe");
  ASSERT_EQ(t.WaitFor("ready"), "ready 1") << t.Stderr();
  ASSERT_EQ(ptrace(PTRACE_SEIZE, t.pid(), 0, 0), 0) << strerror(errno);
  ks::Result r = Attach(t.pid());
  EXPECT_EQ(r.code, 9) << r.err;
  EXPECT_TRUE(Has(r.err, "already traced by process " + std::to_string(getpid()))) << r.err;
  EXPECT_EQ(MapsShim(t.pid()), 0);
  // Let go (a seized tracee is detached from a stop), then it attaches.
  ASSERT_EQ(ptrace(PTRACE_INTERRUPT, t.pid(), 0, 0), 0);
  int st;
  ASSERT_EQ(waitpid(t.pid(), &st, __WALL), t.pid());
  ASSERT_EQ(ptrace(PTRACE_DETACH, t.pid(), 0, 0), 0) << strerror(errno);
  r = Attach(t.pid());
  EXPECT_EQ(r.code, 0) << r.err;
  t.Send("still here");
  EXPECT_EQ(t.WaitFor("got"), "got still here");
}

TEST(Attach, ASeccompFilteredProgramIsRefused) {
  Target t = Start("seccomp");
  ASSERT_EQ(t.WaitFor("ready"), "ready 1") << t.Stderr();
  ks::Result r = Attach(t.pid());
  EXPECT_EQ(r.code, 9) << r.err;
  EXPECT_TRUE(Has(r.err, "seccomp (filter mode 2)")) << r.err;
  EXPECT_EQ(MapsShim(t.pid()), 0);
  t.Send("fine");
  EXPECT_EQ(t.WaitFor("got"), "got fine");
}

TEST(Attach, AStaticProgramIsRefused) {
  Target t(ks::ProgPath("attach_static"), {}, {}, /*preload=*/false);
  ASSERT_EQ(t.WaitFor("ready"), "ready") << t.Stderr();
  ks::Result r = Attach(t.pid());
  EXPECT_EQ(r.code, 9) << r.err;
  EXPECT_TRUE(Has(r.err, "statically linked")) << r.err;
  t.Send("x");
  EXPECT_EQ(t.Wait(), 0);
}

}  // namespace

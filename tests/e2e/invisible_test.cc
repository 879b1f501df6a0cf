// The shim is a guest the program never notices (issue: do no harm): the
// process ends when its last thread does, its signals reach its own threads,
// calls that need a lone thread work, its ids and registers are its own, and
// a process that starts serving only when asked (shim/control/control.h) is the
// same as without the shim until then (doorbell_test checks that it answers).
// Each test drives tests/progs/guest.c, which knows nothing of killshim, and
// most compare with a run without the shim. Not run under ThreadSanitizer
// (tests/e2e/BUILD): its runtime is in the process too, and it is no such
// guest (a thread of its own, signals deferred to its next interceptor).
#include <errno.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"

namespace {

using ks::NowMs;
using ks::RawClient;
using ks::Target;

int Status(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

struct Guest {
  Target t;
  explicit Guest(bool preload = true, const std::vector<std::string>& env = {})
      : t(ks::ProgPath("guest"), {}, env, preload) {
    EXPECT_EQ(t.WaitFor("ready").rfind("ready pid=", 0), 0u) << t.Stderr();
  }
  std::string Do(const std::string& cmd, const std::string& expect, int timeout_ms = 10000) {
    t.Send(cmd);
    return t.WaitFor(expect, timeout_ms);
  }
  // Rings the doorbell and waits until the shim serves: its threads exist.
  void Serve() { ASSERT_TRUE(t.WaitSocket()) << t.Stderr(); }
};

// ---- the last thread's exit -------------------------------------------------

// main calls pthread_exit; the worker that took over returns: glibc ends the
// process with exit(0), atexit handlers included, with or without the shim's
// threads (which the shim takes out of glibc's thread count).
TEST(LastThread, MainExitedThenTheLastWorkerReturnsEndsTheProcess) {
  for (bool preload : {false, true}) {
    Guest g(preload);
    if (preload) g.Serve();
    ASSERT_EQ(g.Do("mainexit", "mainexit"), "mainexit");
    if (preload) {
      // A request after main's exit: a connection thread of the shim runs too.
      ks::Result r = ks::Inject({std::to_string(g.t.pid())});
      EXPECT_EQ(r.code, 0) << r.err;
    }
    g.t.Send("return");
    EXPECT_EQ(g.t.WaitFor("atexit"), "atexit ran") << "preload=" << preload;
    EXPECT_EQ(g.t.Wait(5000), 0) << "preload=" << preload << ": the process outlived its last thread";
  }
}

// CPython's test_threading hung on this: a thread forks, and in the child
// that thread, its only one, returns from its start routine.
TEST(LastThread, ForkChildWhoseOnlyThreadReturnsExits) {
  for (bool preload : {false, true}) {
    Guest g(preload);
    EXPECT_EQ(g.Do("forkret", "forkret", 15000), "forkret status=0") << "preload=" << preload;
    g.t.Send("quit");
    EXPECT_EQ(g.t.Wait(), 0);
  }
}

// The fork above races the parent's first serving: a thread of the guest
// made the shim start serving, and its accept thread dlopens libunwind
// while the worker forks. A fork in the middle of that dlopen left the
// child the loader's half-done state (SIGSEGV in an unrelocated libunwind,
// or ld.so's RT_CONSISTENT assertion, exit 127): 3 children in 200 fresh
// guests. Many fresh guests, each child's status 0.
TEST(LastThread, ForkDuringTheShimsFirstLoadLeavesAWholeChild) {
  std::map<std::string, int> seen;
  for (int i = 0; i < 60; i++) {
    Guest g(true);
    seen[g.Do("forkret", "forkret", 15000)]++;
    g.t.Send("quit");
    EXPECT_EQ(g.t.Wait(), 0);
  }
  std::string all;
  for (auto& [what, n] : seen) all += what + " x" + std::to_string(n) + "; ";
#ifdef __SANITIZE_ADDRESS__
  // This fork races the parent's shim thread on purpose, and that thread
  // allocates: GCC 12's ASan allocator keeps at fork a lock another thread
  // held (docs/robust.md, the fork tests under ASan), and a child can hang
  // in it: the likely cause of 2 hung children in 60 in a CI rehearsal
  // under ASan (not looked at with gdb). What the shim answers for, a whole
  // loader in the child, still holds: no child crashed or died of the
  // loader's assertion.
  EXPECT_EQ(seen["forkret status=0"] + seen["forkret status=hung"], 60) << all;
#else
  EXPECT_EQ(seen["forkret status=0"], 60) << all;
#endif
}

// With main gone and the worker waiting, SIGTERM takes its default action.
TEST(LastThread, SigtermEndsAProcessWhoseMainExited) {
  for (bool preload : {false, true}) {
    Guest g(preload);
    if (preload) g.Serve();
    ASSERT_EQ(g.Do("mainexit", "mainexit"), "mainexit");
    kill(g.t.pid(), SIGTERM);
    EXPECT_EQ(Status(g.t.Wait(5000)), 128 + SIGTERM) << "preload=" << preload;
  }
}

// ---- signals reach the program --------------------------------------------

// While the shim serves, with a client connected (a connection thread waits
// in the process), every way a program takes its signals still gets them.
TEST(Signals, ReachTheProgramWhileTheShimServes) {
  Guest g;
  g.Serve();
  RawClient idle(g.t.pid());
  ASSERT_TRUE(idle.ok());
  ASSERT_EQ(idle.ReadLine().rfind("killshim", 0), 0u);
  EXPECT_EQ(g.Do("alarm", "alarm"), "alarm 3");
  EXPECT_EQ(g.Do("sigchld", "sigchld"), "sigchld 7");
  ASSERT_EQ(g.Do("sigwait", "waiting"), "waiting");
  kill(g.t.pid(), SIGUSR2);
  EXPECT_EQ(g.t.WaitFor("sigwait"), "sigwait " + std::to_string(SIGUSR2));
  ASSERT_EQ(g.Do("signalfd", "waiting"), "waiting");
  kill(g.t.pid(), SIGWINCH);
  EXPECT_EQ(g.t.WaitFor("signalfd"), "signalfd " + std::to_string(SIGWINCH));
  g.t.Send("quit");
  EXPECT_EQ(g.t.Wait(), 0);
}

// umask, cwd, the fd limit and the next free fd: as without the shim.
TEST(Ids, SameWithAndWithoutTheShim) {
  std::string want;
  {
    Guest plain(false);
    want = plain.Do("ids", "ids");
    plain.t.Send("quit");
  }
  Guest g;
  EXPECT_EQ(g.Do("ids", "ids"), want) << "before serving";
  g.Serve();
  EXPECT_EQ(g.Do("ids", "ids"), want) << "while serving";
  g.t.Send("quit");
  EXPECT_EQ(g.t.Wait(), 0);
}

// ---- namespaces that need a lone thread ------------------------------------

// Each compares with the same call without the shim: where the machine
// refuses the namespace to everyone (a chroot), the answer must be the same
// refusal; everywhere else (CI) that answer is success.
TEST(Namespaces, UnshareUserWhileTheShimServes) {
  std::string want;
  {
    Guest plain(false);
    want = plain.Do("unshare", "unshare");
    plain.t.Send("quit");
  }
  if (ks::NamespaceUnavailable("user").empty()) EXPECT_EQ(want, "unshare ok");
  Guest g;
  g.Serve();
  EXPECT_EQ(g.Do("unshare", "unshare"), want);
  // The shim stepped aside for the call and serves again.
  ks::Result r = ks::Inject({std::to_string(g.t.pid())});
  EXPECT_EQ(r.code, 0) << r.err;
  g.t.Send("quit");
  EXPECT_EQ(g.t.Wait(), 0);
}

// A process that holds a namespace of the given kind for the test to enter.
struct NsHolder {
  Target t;
  explicit NsHolder(const std::vector<std::string>& unshare_args)
      : t("/usr/bin/unshare", Args(unshare_args), {}, /*preload=*/false) {}
  static std::vector<std::string> Args(std::vector<std::string> a) {
    a.insert(a.end(), {"sleep", "60"});
    return a;
  }
  // /proc/PID/ns/KIND once the holder's differs from this process's.
  std::string Ns(const std::string& kind) {
    std::string mine = Link("/proc/self/ns/" + kind);
    std::string path = "/proc/" + std::to_string(t.pid()) + "/ns/" + kind;
    for (long end = NowMs() + 5000; NowMs() < end; usleep(5000))
      if (Link(path) != mine && !Link(path).empty()) return path;
    return "";
  }
  static std::string Link(const std::string& p) {
    char buf[128];
    ssize_t n = readlink(p.c_str(), buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, (size_t)n) : "";
  }
  ~NsHolder() { kill(t.pid(), SIGKILL); }
};

TEST(Namespaces, SetnsIntoUserAndMountNamespacesWhileTheShimServes) {
  for (const char* kind : {"user", "mount"})
    if (std::string why = ks::NamespaceUnavailable(kind); !why.empty())
      GTEST_SKIP() << "no namespace to enter: " << why;
  NsHolder user({"--user", "--map-root-user"});
  NsHolder mnt({"--mount"});
  std::string user_ns = user.Ns("user"), mnt_ns = mnt.Ns("mnt");
  ASSERT_FALSE(user_ns.empty());
  ASSERT_FALSE(mnt_ns.empty());
  for (bool preload : {false, true}) {
    Guest g(preload);
    if (preload) g.Serve();
    EXPECT_EQ(g.Do("setns " + mnt_ns, "setns"), "setns ok") << "preload=" << preload;
    EXPECT_EQ(g.Do("setns " + user_ns, "setns"), "setns ok") << "preload=" << preload;
    if (preload) EXPECT_EQ(ks::Inject({std::to_string(g.t.pid())}).code, 0);
    g.t.Send("quit");
    EXPECT_EQ(g.t.Wait(), 0);
  }
}

// The real tools under the shim: they stay single-threaded (the shim starts
// no thread until asked), so they work as without it.
TEST(Namespaces, UnshareAndNsenterToolsUnderTheShim) {
  std::vector<std::string> env = {"LD_PRELOAD=" + ks::Preload()};
  std::vector<std::string> argv = {"/usr/bin/unshare", "--user", "--map-root-user", "/usr/bin/id", "-u"};
  ks::Result u = ks::Run(argv, 60000, env);
  ks::Result plain = ks::Run(argv, 60000);
  EXPECT_EQ(u.code, plain.code) << u.err;
  EXPECT_EQ(u.out, plain.out);
  EXPECT_EQ(u.err, plain.err);
  if (ks::NamespaceUnavailable("user").empty()) EXPECT_EQ(u.out, "0\n");
  if (std::string why = ks::NamespaceUnavailable("mount"); !why.empty())
    GTEST_SKIP() << "nsenter: no mount namespace to enter: " << why;
  NsHolder mnt({"--mount"});
  std::string mnt_ns = mnt.Ns("mnt");
  ASSERT_FALSE(mnt_ns.empty());
  ks::Result n = ks::Run({"/usr/bin/nsenter", "-t", std::to_string(mnt.t.pid()), "-m", "/bin/true"},
                         60000, env);
  EXPECT_EQ(n.code, 0) << n.err;
}

}  // namespace

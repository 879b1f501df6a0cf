// killshim-inject --attach, what follows the load: ending threads that were
// there before it (pre-attach), objects the program loads after it, a
// target in another pid namespace. Targets started WITHOUT the shim
// (tests/progs/attach_ends.c).
#include <gtest/gtest.h>
#include <json-c/json.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
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

// Every unforced cancel of a pre-attach thread takes its stack first (the
// language-runtime check): the targets get TsanPreAttachDumpEnv (attach_util.h).

// Threads that were there before the attach (tests/progs/attach_ends.c):
// cancelled through their pthread_t where their cancellation is enabled
// (the cleanup handler runs), refused with the reason where it is disabled,
// aborted only with --force, stopped by the program's own variable (flag);
// the rest of the program healthy after each.
TEST(Attach, PreAttachThreadsEndByCancelOrForcedAbort) {
  KS_NEED_PTRACE();
  Target t(ks::ProgPath("attach_ends"), {}, TsanPreAttachDumpEnv(), /*preload=*/false);
  std::string ready = t.WaitFor("ready");
  pid_t creader = TidAfter(ready, "creader"), nocancel = TidAfter(ready, "nocancel"),
        spinner = TidAfter(ready, "spinner");
  ASSERT_TRUE(creader && nocancel && spinner) << ready << t.Stderr();
  ASSERT_EQ(Attach(t.pid()).code, 0);
  ASSERT_EQ(ks::ListRows(t.pid())[creader]["role"], "pre-attach");

  ks::Result c = Inject(EndArgs(t.pid(), creader, {"-m", "cancel", "-t", "5"}));
  EXPECT_EQ(c.code, 0) << c.err << c.out;
  EXPECT_TRUE(Has(c.out, "gone: ended (mode cancel, as far as can be seen)")) << c.out;
  EXPECT_TRUE(Has(c.out, "left behind: not known")) << c.out;
  EXPECT_EQ(t.WaitFor("cleanup"), "cleanup creader");
  EXPECT_TRUE(TaskEnds(t.pid(), creader));

  ks::Result d = Inject(EndArgs(t.pid(), nocancel, {"-m", "cancel", "-t", "2"}));
  EXPECT_EQ(d.code, 9) << d.err << d.out;
  EXPECT_TRUE(Has(d.err, "has disabled its cancellation")) << d.err;
  ks::Result da = Inject(EndArgs(t.pid(), nocancel, {"-m", "abort", "--force", "-t", "2"}));
  EXPECT_EQ(da.code, 9) << da.err << da.out;
  EXPECT_TRUE(ks::TaskExists(t.pid(), nocancel));

  ks::Result a = Inject(EndArgs(t.pid(), spinner, {"-m", "abort", "-t", "2"}));
  EXPECT_EQ(a.code, 9) << a.err << a.out;
  EXPECT_TRUE(Has(a.err, "the locks it took before the attach cannot be seen")) << a.err;
  EXPECT_TRUE(Has(a.err, "--force")) << a.err;
  EXPECT_TRUE(ks::TaskExists(t.pid(), spinner));
  // A deferred cancel never reaches a CPU loop: accepted, and it runs on.
  ks::Result sc = Inject(EndArgs(t.pid(), spinner, {"-m", "cancel", "-t", "1"}));
  EXPECT_EQ(sc.code, 3) << sc.err << sc.out;
  EXPECT_TRUE(Has(sc.out, "still alive")) << sc.out;
  EXPECT_TRUE(ks::TaskExists(t.pid(), spinner));
  ks::Result f = Inject(EndArgs(t.pid(), spinner, {"-m", "abort", "--force", "-t", "5"}));
  EXPECT_EQ(f.code, 0) << f.err << f.out;
  EXPECT_TRUE(Has(f.out, "gone: ended (mode abort, as far as can be seen)")) << f.out;
  EXPECT_TRUE(Has(f.err, "the locks it took before the attach cannot be seen")) << f.err;
  EXPECT_EQ(t.WaitFor("cleanup"), "cleanup spinner");
  EXPECT_TRUE(TaskEnds(t.pid(), spinner));

  // The program's own stop variable, written by the injector.
  pid_t polite = TidAfter(ready, "polite");
  ks::Result p = Inject(EndArgs(t.pid(), polite,
                                {"-m", "flag", "--flag-symbol", "stop_polite", "-t", "5"}));
  EXPECT_EQ(p.code, 0) << p.err << p.out;
  EXPECT_TRUE(Has(p.out, "gone: ended (mode flag, as far as can be seen)")) << p.out;
  EXPECT_EQ(t.WaitFor("polite"), "polite stopped 1");

  // The main thread: never cancelled, as when it is registered.
  ks::Result m = Inject(EndArgs(t.pid(), t.pid(), {"-m", "cancel", "-t", "1"}));
  EXPECT_EQ(m.code, 9) << m.err;
  EXPECT_TRUE(Has(m.err, "is the main thread")) << m.err;

  t.Send("heap");
  EXPECT_EQ(t.WaitFor("heap ok"), "heap ok 1");
  EXPECT_TRUE(BeatsPass(t, Beats(t)));
  t.ExpectCleanExit("quit");
}

// auto on pre-attach threads: its cancel step ends one whose cancellation is
// enabled; on one whose cancellation is disabled both later steps are
// refused and the report says only the program's own stop variable can end
// it; with --force its abort step ends a CPU loop.
TEST(Attach, AutoOnPreAttachThreads) {
  KS_NEED_PTRACE();
  Target t(ks::ProgPath("attach_ends"), {}, TsanPreAttachDumpEnv(), /*preload=*/false);
  std::string ready = t.WaitFor("ready");
  pid_t creader = TidAfter(ready, "creader"), nocancel = TidAfter(ready, "nocancel"),
        spinner = TidAfter(ready, "spinner");
  ASSERT_TRUE(creader && nocancel && spinner) << ready << t.Stderr();
  ASSERT_EQ(Attach(t.pid()).code, 0);

  ks::Result c = Inject(EndArgs(t.pid(), creader, {"-m", "auto", "-g", "0.2", "-t", "5"}));
  EXPECT_EQ(c.code, 0) << c.err << c.out;
  EXPECT_TRUE(Has(c.out, "steps:       flag at 0.00 s, cancel at")) << c.out;
  EXPECT_EQ(t.WaitFor("cleanup"), "cleanup creader");

  ks::Result n = Inject(EndArgs(t.pid(), nocancel, {"-m", "auto", "-g", "0.2", "-t", "1"}));
  EXPECT_EQ(n.code, 3) << n.err << n.out;
  EXPECT_TRUE(Has(n.out, "only the program's own stop variable (--flag-symbol) can end it"))
      << n.out;
  EXPECT_TRUE(ks::TaskExists(t.pid(), nocancel));

  ks::Result s = Inject(EndArgs(t.pid(), spinner,
                                {"-m", "auto", "--force", "-g", "0.2", "-t", "5"}));
  EXPECT_EQ(s.code, 0) << s.err << s.out;
  EXPECT_TRUE(Has(s.out, "mode abort")) << s.out;
  EXPECT_EQ(t.WaitFor("cleanup"), "cleanup spinner");
  EXPECT_TRUE(TaskEnds(t.pid(), spinner));
  EXPECT_TRUE(BeatsPass(t, Beats(t)));
  t.ExpectCleanExit("quit");
}

// An object the program dlopens after the attach binds to the shim's hooks
// while it is loaded (defs_patch.c), with no request of a client in
// between: the thread its constructor starts inside the dlopen, and the one
// a function of it starts right after, are both app with their mutex
// counted, and cancel mode ends each through its cleanup handler, which
// releases the mutex. Without the definitions patched both are foreign.
TEST(Attach, AnObjectLoadedAfterTheAttachBindsToTheHooks) {
  KS_NEED_PTRACE();
  Target t(ks::ProgPath("attach_ends"), {}, TsanPreAttachDumpEnv(), /*preload=*/false);
  ASSERT_FALSE(t.WaitFor("ready").empty()) << t.Stderr();
  ASSERT_EQ(Attach(t.pid()).code, 0);
  t.Send("load " + ks::ProgPath("liblatelib.so"));
  ASSERT_EQ(t.WaitFor("load"), "loaded 1") << t.Stderr();
  pid_t ctor = ks::TidFrom(t.WaitFor("ctor tid="));
  ASSERT_NE(ctor, 0) << t.Stderr();
  t.Send("start");
  pid_t late = ks::TidFrom(t.WaitFor("late tid="));
  ASSERT_NE(late, 0) << t.Stderr();
  auto rows = ks::ListRows(t.pid());
  for (pid_t tid : {ctor, late}) {
    EXPECT_EQ(rows[tid]["role"], "app") << tid;
    EXPECT_EQ(rows[tid]["locks"], "1") << tid;
    ks::Result c = Inject(EndArgs(t.pid(), tid, {"-m", "cancel", "-t", "5"}));
    EXPECT_EQ(c.code, 0) << c.err << c.out;
    EXPECT_TRUE(Has(c.out, "gone: cancelled (mode cancel)")) << c.out;
    EXPECT_TRUE(TaskEnds(t.pid(), tid));
  }
  t.Send("try");
  EXPECT_EQ(t.WaitFor("late free"), "late free 1");
  t.Send("heap");
  EXPECT_EQ(t.WaitFor("heap ok"), "heap ok 1");
  EXPECT_TRUE(BeatsPass(t, Beats(t)));
  t.ExpectCleanExit("quit");
}

// A thread a language runtime started before the attach (CPython's, found
// by the start routine glibc keeps in its struct pthread, or by the frames
// of its stack) is not cancelled or aborted unforced, as a registered one
// is not.
TEST(Attach, APreAttachRuntimeThreadIsRefused) {
  KS_NEED_PTRACE();
  static const char kProgram[] =
      "import os, sys, threading\n"
      "r, w = os.pipe()\n"
      "def rd():\n"
      "    print('reader tid=%d' % threading.get_native_id(), flush=True)\n"
      "    os.read(r, 1)\n"
      "    print('reader done', flush=True)\n"
      "threading.Thread(target=rd).start()\n"
      "for line in sys.stdin:\n"
      "    if line.startswith('wake'):\n"
      "        os.write(w, b'x')\n"
      "    elif line.startswith('quit'):\n"
      "        break\n";
  // A TSan-built shim needs TSan's runtime in the process (the harness's
  // SanitizerPreload; empty in other builds): preloaded, not the shim. The
  // refusal takes the thread's stack: TsanPreAttachDumpEnv says why.
  std::vector<std::string> env = TsanPreAttachDumpEnv();
  if (!ks::SanitizerPreload().empty()) env.push_back("LD_PRELOAD=" + ks::SanitizerPreload());
  Target t("/usr/bin/python3", {"-c", kProgram}, env, /*preload=*/false);
  pid_t reader = ks::TidFrom(t.WaitFor("reader tid="));
  ASSERT_NE(reader, 0) << t.Stderr();
  ASSERT_EQ(Attach(t.pid()).code, 0);
  ks::Result c = Inject(EndArgs(t.pid(), reader, {"-m", "cancel", "-t", "2"}));
  EXPECT_EQ(c.code, 9) << c.err << c.out;
  // By its start routine, or (under TSan, whose interceptor is the start
  // routine glibc keeps) by the CPython frames on its stack.
  EXPECT_TRUE(Has(c.err, "was started by CPython (python3") ||
              Has(c.err, "runs in CPython (python3")) << c.err;
  EXPECT_TRUE(ks::TaskExists(t.pid(), reader));
  t.Send("wake");
  EXPECT_EQ(t.WaitFor("reader done"), "reader done");
  t.ExpectCleanExit("quit");
}

// The process unshare --fork started (the target, pid 1 in its namespace).
pid_t ChildOf(pid_t pid) {
  for (long end = ks::NowMs() + 5000; ks::NowMs() < end; usleep(10 * 1000)) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) +
                    "/children");
    pid_t c = 0;
    if (f >> c && c > 0) return c;
  }
  return 0;
}

// A program in its own pid namespace (same network namespace), attached
// from the host with its host pid: its socket is named with the pid it sees
// itself as (which the client reads from NSpid); the listing shows the tids
// of its own namespace, a second attach only connects, and the report of an
// end names the thread. Its own pid is
// made to differ from run to run (a shell starts a few processes first):
// two targets with the same own pid in one network namespace would want the
// same name (docs/attach.md), as parallel runs of this test would.
TEST(Attach, AnotherPidNamespaceIsAttachedFromTheHost) {
  KS_NEED_PTRACE();
  if (std::string why = ks::NamespaceUnavailable("pid"); !why.empty())
    GTEST_SKIP() << "no pid namespace here: " << why;
  // --mount-proc needs a root that is a mount point: not in a chroot (a
  // fresh-machine run), where unshare fails the same without the shim.
  if (ks::Result m = ks::Run({"/usr/bin/unshare", "--pid", "--fork", "--mount-proc", "/bin/true"}, 30000);
      m.code != 0)
    GTEST_SKIP() << "unshare --pid --mount-proc fails here without the shim too: " << m.err;
  std::string script = "i=0; while [ $i -lt " + std::to_string(3 + getpid() % 90) +
                       " ]; do /bin/true; i=$((i+1)); done; " + ks::ProgPath("attach_ends") +
                       "; exit $?";
  Target u("/usr/bin/unshare",
           {"--pid", "--fork", "--kill-child", "--mount-proc", "/bin/sh", "-c", script},
           TsanPreAttachDumpEnv(),
           /*preload=*/false);
  std::string ready = u.WaitFor("ready");
  pid_t creader = TidAfter(ready, "creader"), spinner = TidAfter(ready, "spinner");
  ASSERT_TRUE(creader && spinner) << ready << u.Stderr();
  pid_t host = ChildOf(ChildOf(u.pid()));   // unshare, its shell (pid 1), the program
  ASSERT_NE(host, 0);
  std::ifstream st("/proc/" + std::to_string(host) + "/status");
  std::string line;
  while (std::getline(st, line) && line.rfind("NSpid:", 0) != 0) {}
  size_t tab = line.rfind('\t');
  pid_t own = tab == std::string::npos ? 0 : atoi(line.c_str() + tab + 1);
  ASSERT_GT(own, 1) << line;
  ASSERT_NE(own, host) << line;
  ks::Result r = Attach(host, {"--json"});
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  auto j = ks::FlatJson(r.out);
  std::set<std::string> tids;
  for (int i = 0, n = atoi(j["threads"].c_str()); i < n; i++)
    if (j["threads." + std::to_string(i) + ".role"] == "pre-attach")
      tids.insert(j["threads." + std::to_string(i) + ".tid"]);
  // The tids it printed itself (its own namespace's), not the host's.
  EXPECT_TRUE(tids.count(std::to_string(own)) && tids.count(std::to_string(creader)) &&
              tids.count(std::to_string(spinner))) << r.out;
  std::ifstream unix_socks("/proc/" + std::to_string(host) + "/net/unix");
  std::string all((std::istreambuf_iterator<char>(unix_socks)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(Has(all, "@killshim-" + std::to_string(own) + "\n"))
      << "no socket named with its own pid";
  EXPECT_FALSE(Has(all, "@killshim-" + std::to_string(host) + "\n"));
  ks::Result again = Attach(host);
  EXPECT_EQ(again.code, 0) << again.err;
  EXPECT_TRUE(Has(again.err, "already runs the shim")) << again.err;
  // The report names the thread: its name read from the host's /proc under
  // its host tid (nspid.c), not under its own ("?" then).
  ks::Result c = Inject(EndArgs(host, creader, {"-m", "cancel", "-t", "5"}));
  EXPECT_EQ(c.code, 0) << c.err << c.out;
  EXPECT_TRUE(Has(c.out, "thread " + std::to_string(creader) + " (attach_ends) of process " +
                             std::to_string(host))) << c.out;
  EXPECT_EQ(u.WaitFor("cleanup"), "cleanup creader");
  u.Send("heap");
  EXPECT_EQ(u.WaitFor("heap ok"), "heap ok 1");
  u.ExpectCleanExit("quit");
}

}  // namespace

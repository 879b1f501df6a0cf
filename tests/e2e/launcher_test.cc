// tools/killshim, the launcher: run, inject, lib, and the programs it refuses.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <link.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

#include "tests/e2e/front.h"
#include "tests/e2e/harness.h"

namespace {

using ks::Contains;
using ks::CopyFile;
using ks::LauncherPath;
using ks::Result;
using ks::Run;

Result Launcher(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv = {LauncherPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(argv, 60000, env);
}

std::string Real(const std::string& p) {
  char buf[PATH_MAX];
  return realpath(p.c_str(), buf) ? std::string(buf) : p;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

TEST(Launcher, LibPrintsTheAbsolutePathOfThisBuildsShim) {
  Result r = Launcher({"lib"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string lib = Trim(r.out);
  EXPECT_EQ(lib[0], '/') << lib;
  EXPECT_EQ(Real(lib), ks::ShimPath());
}

TEST(Launcher, RunPutsTheShimFirstAndKeepsTheUsersPreloads) {
  // The shell prints what the program got; libm stands for a user's preload
  // and must still load (it is real), and a stale copy of the shim is dropped.
  // Its path is this machine's (the multiarch directory is Debian's): the one
  // this test itself loaded.
  std::string libm;
  void* h = dlopen("libm.so.6", RTLD_NOW | RTLD_NOLOAD);
  struct link_map* lm = nullptr;
  if (h && dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name) libm = lm->l_name;
  if (h) dlclose(h);
  ASSERT_EQ(libm.rfind('/', 0), 0u) << "libm.so.6 is not loaded from an absolute path: " << libm;
  Result r = Launcher({"run", "--", "/bin/sh", "-c", "echo \"$LD_PRELOAD\""},
                      {"LD_PRELOAD=" + libm + " /old/place/libkillshim.so"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string got = Trim(r.out);
  size_t colon = got.find(':');
  ASSERT_NE(colon, std::string::npos) << got;
  EXPECT_EQ(Real(got.substr(0, colon)), ks::ShimPath());
  // A TSan build of the shim brings its runtime, right after it.
  std::string rt = ks::SanitizerPreload();
  EXPECT_EQ(got.substr(colon + 1), rt.empty() ? libm : rt + ":" + libm);
}

TEST(Launcher, RunWithoutDashDashAndThroughPath) {
  Result r = Launcher({"run", "sh", "-c", "echo \"$LD_PRELOAD\""});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string got = Trim(r.out), rt = ks::SanitizerPreload();
  if (!rt.empty()) {
    ASSERT_GT(got.size(), rt.size() + 1) << got;
    EXPECT_EQ(got.substr(got.size() - rt.size() - 1), ":" + rt);
    got.resize(got.size() - rt.size() - 1);
  }
  EXPECT_EQ(Real(got), ks::ShimPath());
}

TEST(Launcher, RunExecsTheProgramAndTheInjectorReachesIt) {
  // No harness preload: only the launcher puts the shim in. The pid the
  // launcher had is the program's (it execs), so the injector finds it.
  ks::Target t(LauncherPath(), {"run", "--", ks::ProgPath("threads_basic"), "2"}, {}, false);
  EXPECT_EQ(t.WaitFor("ready"), "ready");
  ASSERT_TRUE(t.WaitSocket()) << t.Stderr();
  Result r = Launcher({"inject", "--json", std::to_string(t.pid())});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "\"name\":\"worker-0\"") || Contains(r.out, "\"name\": \"worker-0\""))
      << r.out;
  EXPECT_TRUE(Contains(r.out, "worker_main")) << r.out;
  t.Send("quit");
  int st = t.Wait(10000);
  ASSERT_NE(st, -1);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
}

TEST(Launcher, RunReturnsTheProgramsExitStatus) {
  EXPECT_EQ(Launcher({"run", "--", "/bin/sh", "-c", "exit 7"}).code, 7);
  EXPECT_EQ(Launcher({"run", "/bin/true"}).code, 0);
}

TEST(Launcher, RefusesAStaticBinary) {
  Result r = Launcher({"run", "--", ks::ProgPath("static_prog")});
  EXPECT_EQ(r.code, 126);
  EXPECT_TRUE(Contains(r.err, "statically linked")) << r.err;
  EXPECT_TRUE(Contains(r.err, "cannot load")) << r.err;
  EXPECT_EQ(r.out, "") << "the static program must not have run";
}

TEST(Launcher, RefusesAScriptWhoseInterpreterIsStatic) {
  std::string dir = ks::TempDir("script");
  std::string script = dir + "/s";
  std::ofstream(script) << "#!" << ks::ProgPath("static_prog") << "\n";
  ASSERT_EQ(chmod(script.c_str(), 0755), 0);
  Result r = Launcher({"run", script});
  EXPECT_EQ(r.code, 126);
  EXPECT_TRUE(Contains(r.err, "interpreter")) << r.err;
}

TEST(Launcher, RefusesAProgramForAnotherArchitecture) {
  // A real program with e_machine patched to i386 (3).
  std::string dir = ks::TempDir("arch");
  std::string p = dir + "/prog";
  CopyFile(ks::ProgPath("threads_basic"), p, 0755);
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(18);
  f.put(3);
  f.close();
  Result r = Launcher({"run", p});
  EXPECT_EQ(r.code, 126);
  EXPECT_TRUE(Contains(r.err, "not an x86-64 program")) << r.err;
}

// setuid to another user, and setgid to another group: secure mode, where
// the loader would ignore the shim. (The suite runs as root, who may chown.)
TEST(Launcher, RefusesSetuidAndSetgidPrograms) {
  ASSERT_EQ(geteuid(), 0u) << "this test needs root, as the suite does";
  std::string dir = ks::TempDir("suid");
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  std::string p = dir + "/prog";
  CopyFile(ks::ProgPath("threads_basic"), p, 0755);
  ASSERT_EQ(chown(p.c_str(), 65534, 65534), 0);
  ASSERT_EQ(chmod(p.c_str(), 04755), 0);
  Result r = Launcher({"run", p});
  EXPECT_EQ(r.code, 126);
  EXPECT_TRUE(Contains(r.err, "setuid")) << r.err;
  EXPECT_TRUE(Contains(r.err, "secure mode")) << r.err;

  ASSERT_EQ(chmod(p.c_str(), 02755), 0);
  r = Launcher({"run", p});
  EXPECT_EQ(r.code, 126);
  EXPECT_TRUE(Contains(r.err, "setgid")) << r.err;

  // Setuid and setgid to the caller itself is no secure mode: the launcher
  // runs it and the shim loads (its debug log says it serves a socket).
  ASSERT_EQ(chown(p.c_str(), 0, 0), 0);
  ASSERT_EQ(chmod(p.c_str(), 06755), 0);
  r = Launcher({"run", p, "1"}, {"KILLSHIM_DEBUG=1"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(Contains(r.out, "ready")) << r.out;
  EXPECT_TRUE(Contains(r.err, "serving @killshim-")) << r.err;
}

TEST(Launcher, CommandNotFoundAndUsageErrors) {
  Result r = Launcher({"run", "--", "no-such-command-here"});
  EXPECT_EQ(r.code, 127);
  EXPECT_TRUE(Contains(r.err, "command not found")) << r.err;
  EXPECT_EQ(Launcher({"run"}).code, 2);
  EXPECT_EQ(Launcher({"run", "--"}).code, 2);
  EXPECT_EQ(Launcher({"frobnicate"}).code, 2);
  EXPECT_EQ(Launcher({}).code, 2);
}

TEST(Launcher, InjectForwardsArgumentsAndExitCodes) {
  Result via = Launcher({"inject", "--version"});
  Result direct = ks::Inject({"--version"});
  ASSERT_EQ(via.code, 0);
  EXPECT_EQ(via.out, direct.out);
  // The injector's own codes come through: 2 for a bad pid, 4 for none.
  EXPECT_EQ(Launcher({"inject", "notapid"}).code, 2);
  Result none = Launcher({"inject", std::to_string(1 << 29)});
  EXPECT_EQ(none.code, 4) << none.err;
}

TEST(Launcher, HelpAndVersion) {
  Result h = Launcher({"--help"});
  ASSERT_EQ(h.code, 0);
  for (const char* w : {"run", "inject", "demo", "lib", "Exit codes", "126", "127"})
    EXPECT_TRUE(Contains(h.out, w)) << w;
  Result v = Launcher({"--version"});
  ASSERT_EQ(v.code, 0) << v.err;
  std::string want = Trim(ks::Inject({"--version"}).out);   // "killshim-inject 0.1.0 (protocol 1)"
  EXPECT_TRUE(Contains(v.out, "killshim " + want.substr(want.find(' ') + 1))) << v.out;
}

// killshim attach PID: the launcher's own library, loaded into a program
// started without it (attach_test covers the attach itself); the second
// only connects. Skipped, with the reason, where ptrace is not allowed.
TEST(Launcher, AttachLoadsItsLibraryThenConnects) {
  Result probe = ks::Run({"/bin/sh", "-c", "cat /proc/sys/kernel/yama/ptrace_scope"});
  if (Trim(probe.out) == "3") GTEST_SKIP() << "kernel.yama.ptrace_scope is 3: no ptrace at all";
  ks::Target t(ks::ProgPath("attach_target"), {"pipe"}, {}, /*preload=*/false);
  ASSERT_EQ(t.ReadLine(), "ready 1") << t.Stderr();
  Result a = Launcher({"attach", std::to_string(t.pid())});
  if (a.code == 6) GTEST_SKIP() << "ptrace is not permitted here: " << a.err;
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_TRUE(Contains(a.err, "loaded the shim into " + std::to_string(t.pid()))) << a.err;
  EXPECT_TRUE(Contains(a.out, "pre-attach")) << a.out;
  Result again = Launcher({"attach", "--json", std::to_string(t.pid())});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_TRUE(Contains(again.err, "already runs the shim")) << again.err;
  EXPECT_TRUE(Contains(again.out, "\"role\":\"pre-attach\"")) << again.out;
  t.Send("done");
  EXPECT_EQ(t.ReadLine(), "got done");
}

TEST(Launcher, SaysSoWhenItsFilesAreMissing) {
  std::string dir = ks::TempDir("alone");
  CopyFile(LauncherPath(), dir + "/killshim", 0755);
  Result r = ks::Run({dir + "/killshim", "run", "/bin/true"});
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(Contains(r.err, "cannot find libkillshim.so")) << r.err;
}

}  // namespace

// The installer (what `bazel run //:install` runs): into a temporary prefix,
// then the installed launcher and injector against an installed program.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fstream>

#include "tests/e2e/front.h"
#include "tests/e2e/harness.h"

namespace {

using ks::Contains;
using ks::Exists;
using ks::Result;

const char* const kFiles[] = {
    "bin/killshim",
    "bin/killshim-inject",
    "lib/killshim/libkillshim.so",
    "lib/killshim/hung_service",
    "lib/killshim/demo.sh",
    "share/man/man1/killshim.1",
    "share/man/man1/killshim-inject.1",
    "share/man/man7/libkillshim.7",
    "share/doc/killshim/examples/hung_service.c",
    "include/killshim.h",
};

Result Install(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  std::vector<std::string> argv = {ks::RunfilesPath("tools/install.sh")};
  argv.insert(argv.end(), args.begin(), args.end());
  return ks::Run(argv, 60000, env);
}

mode_t Mode(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
}

TEST(Install, PutsEveryFileInPlaceWithItsMode) {
  std::string prefix = ks::TempDir("prefix") + "/usr";
  Result r = Install({"--prefix=" + prefix});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  for (const char* f : kFiles) {
    EXPECT_TRUE(Exists(prefix + "/" + f)) << f;
    EXPECT_TRUE(Contains(r.out, "installed " + prefix + "/" + f)) << f;
  }
  EXPECT_EQ(Mode(prefix + "/bin/killshim"), 0755u);
  EXPECT_EQ(Mode(prefix + "/bin/killshim-inject"), 0755u);
  EXPECT_EQ(Mode(prefix + "/lib/killshim/libkillshim.so"), 0644u);
  EXPECT_EQ(Mode(prefix + "/share/man/man7/libkillshim.7"), 0644u);
  EXPECT_EQ(Mode(prefix + "/include/killshim.h"), 0644u);
  EXPECT_TRUE(Contains(r.out, "Environment=LD_PRELOAD=" + prefix + "/lib/killshim/libkillshim.so"))
      << r.out;
}

TEST(Install, TheInstalledLauncherRunsAndListsAnInstalledProgram) {
  std::string prefix = ks::TempDir("prefix") + "/opt";
  ASSERT_EQ(Install({"--prefix=" + prefix}).code, 0);
  std::string ks_bin = prefix + "/bin/killshim";

  Result v = ks::Run({ks_bin, "--version"});
  ASSERT_EQ(v.code, 0) << v.err;
  EXPECT_TRUE(Contains(v.out, "libkillshim.so: " + prefix + "/lib/killshim/libkillshim.so")) << v.out;
  EXPECT_TRUE(Contains(v.out, "killshim-inject: " + prefix + "/bin/killshim-inject")) << v.out;

  // The installed service, started by the installed launcher (no harness
  // preload), listed by the installed injector through the launcher.
  ks::Target t(ks_bin, {"run", "--", prefix + "/lib/killshim/hung_service"}, {}, false);
  ASSERT_NE(t.WaitFor("hung_service: pid "), "") << t.Stderr();
  ASSERT_TRUE(t.WaitSocket()) << t.Stderr();
  Result list = ks::Run({ks_bin, "inject", std::to_string(t.pid())});
  ASSERT_EQ(list.code, 0) << list.err;
  for (const char* name : {" http ", " cruncher ", " fetcher ", " ledger-a ", " ledger-b ", " reporter "})
    EXPECT_TRUE(Contains(list.out, name)) << name << "\n" << list.out;
  // The process maps the installed library, not the build's.
  std::string maps = ks::Run({"/bin/cat", "/proc/" + std::to_string(t.pid()) + "/maps"}).out;
  EXPECT_TRUE(Contains(maps, prefix + "/lib/killshim/libkillshim.so")) << maps;
}

// A program built against the installed header runs with and without the
// installed shim, and sees its stop flag when flag mode asks.
TEST(Install, TheInstalledHeaderBuildsAProgramThatSeesItsStopFlag) {
  std::string prefix = ks::TempDir("prefix");
  ASSERT_EQ(Install({"--prefix=" + prefix}).code, 0);
  std::string src = prefix + "/stopper.c", bin = prefix + "/stopper";
  std::ofstream(src) << "#include <killshim.h>\n#include <stdio.h>\n#include <unistd.h>\n"
                        "int main(void) {\n"
                        "  printf(\"ready %d\\n\", killshim_stop_requested()); fflush(stdout);\n"
                        "  while (!killshim_stop_requested()) usleep(1000);\n"
                        "  puts(\"stopped\"); return 0;\n}\n";
  Result cc = ks::Run({"/usr/bin/cc", "-std=gnu11", "-Wall", "-Werror", "-I", prefix + "/include",
                       "-o", bin, src});
  ASSERT_EQ(cc.code, 0) << cc.err;

  // Without the shim: never requested.
  ks::Target alone(bin, {}, {}, false);
  EXPECT_EQ(alone.WaitFor("ready"), "ready 0");
  // Under the installed launcher, flag mode on its main thread stops it.
  ks::Target t(prefix + "/bin/killshim", {"run", "--", bin}, {}, false);
  ASSERT_EQ(t.WaitFor("ready"), "ready 0");
  ASSERT_TRUE(t.WaitSocket()) << t.Stderr();
  std::string pid = std::to_string(t.pid());
  Result r = ks::Run({prefix + "/bin/killshim", "inject", "--mode", "flag", pid, pid});
  EXPECT_EQ(t.WaitFor("stopped"), "stopped") << r.out << r.err;
  int st = t.Wait(10000);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
}

TEST(Install, TheInstalledDemoRuns) {
  std::string prefix = ks::TempDir("prefix");
  ASSERT_EQ(Install({"--prefix=" + prefix}).code, 0);
  Result r = ks::Run({prefix + "/bin/killshim", "demo"}, 120000);
  EXPECT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_TRUE(Contains(r.out, "$ killshim run -- hung_service &")) << r.out;
  EXPECT_TRUE(Contains(r.out, "# Done.")) << r.out;
}

TEST(Install, DestdirStagesAndTheTreeStillWorksOnceMoved) {
  std::string stage = ks::TempDir("stage");
  Result r = Install({"--prefix=/usr/local", "--destdir=" + stage});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* f : kFiles) EXPECT_TRUE(Exists(stage + "/usr/local/" + f)) << f;
  // Relocatable: nothing refers to /usr/local.
  Result lib = ks::Run({stage + "/usr/local/bin/killshim", "lib"});
  ASSERT_EQ(lib.code, 0) << lib.err;
  EXPECT_EQ(lib.out, stage + "/usr/local/lib/killshim/libkillshim.so\n");
}

TEST(Install, RelativePrefixMeansWhereTheUserTypedIt) {
  std::string cwd = ks::TempDir("cwd");
  Result r = Install({"--prefix=rel"}, {"BUILD_WORKING_DIRECTORY=" + cwd});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(Exists(cwd + "/rel/bin/killshim"));
}

TEST(Install, UninstallRemovesWhatItInstalled) {
  std::string prefix = ks::TempDir("prefix");
  ASSERT_EQ(Install({"--prefix=" + prefix}).code, 0);
  Result r = Install({"--prefix=" + prefix, "--uninstall"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* f : kFiles) EXPECT_FALSE(Exists(prefix + "/" + f)) << f;
  EXPECT_FALSE(Exists(prefix + "/lib/killshim"));
}

TEST(Install, BadArgumentsAreAUsageError) {
  Result r = Install({"--prefx=/tmp/x"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(Contains(r.err, "unknown argument")) << r.err;
}

}  // namespace

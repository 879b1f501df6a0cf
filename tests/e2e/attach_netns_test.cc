// Targets in a network namespace of their own (unshare --net: a container
// with its own network), reached from the host: the abstract socket
// @killshim-PID exists only in the target's namespace, so the injector
// enters it for the connection (injector/netns.c). A program started under
// the shim there and one attached there; without CAP_SYS_ADMIN the
// injector says what works instead.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "tests/e2e/attach_util.h"
#include "tests/e2e/harness.h"

namespace {

using ks::Has;
using ks::Inject;
using ks::Target;
using namespace ks_attach;

#define KS_NEED_NETNS()                                                   \
  do {                                                                    \
    if (std::string why = ks::NamespaceUnavailable("net"); !why.empty())  \
      GTEST_SKIP() << "no network namespace here: " << why;               \
  } while (0)

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// tid -> role as the injector lists them (the test's own client,
// ks::ListRows, connects from the host's namespace and finds nothing).
std::map<std::string, std::string> Roles(pid_t pid) {
  std::map<std::string, std::string> roles;
  ks::Result r = Inject({"--json", std::to_string(pid)});
  auto j = ks::FlatJson(r.out);
  for (int i = 0, n = atoi(j["threads"].c_str()); i < n; i++)
    roles[j["threads." + std::to_string(i) + ".tid"]] = j["threads." + std::to_string(i) + ".role"];
  return roles;
}

// 1 if PID's network namespace is not this process's.
bool OwnNetns(pid_t pid) {
  struct stat me, it;
  return stat("/proc/self/ns/net", &me) == 0 &&
         stat(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), &it) == 0 &&
         me.st_ino != it.st_ino;
}

// The name is not in the host's namespace: what the injector reaches is the
// target's own.
bool SocketOnlyInside(pid_t pid) {
  std::string name = "@killshim-" + std::to_string(pid) + "\n";
  return Has(Slurp("/proc/" + std::to_string(pid) + "/net/unix"), name) &&
         !Has(Slurp("/proc/self/net/unix"), name);
}

// Under the shim from the start (unshare --net execs the program in place:
// the pid stays). The listing and an end work from the host, and the
// injector is back in its own namespace afterwards (a second command works
// the same).
TEST(AttachNetns, AProgramUnderTheShimIsReachedFromTheHost) {
  KS_NEED_NETNS();
  Target t("/usr/bin/unshare", {"--net", "/usr/bin/env", "LD_PRELOAD=" + ks::Preload(),
                                ks::ProgPath("attach_ends")},
           {}, /*preload=*/false);
  std::string ready = t.WaitFor("ready");
  pid_t creader = TidAfter(ready, "creader");
  ASSERT_NE(creader, 0) << ready << t.Stderr();
  ASSERT_TRUE(OwnNetns(t.pid()));
  ASSERT_EQ(Roles(t.pid())[std::to_string(creader)], "app") << t.Stderr();
  EXPECT_TRUE(SocketOnlyInside(t.pid()));
  ks::Result c = Inject(EndArgs(t.pid(), creader, {"-m", "cancel", "-t", "5"}));
  EXPECT_EQ(c.code, 0) << c.err << c.out;
  EXPECT_EQ(t.WaitFor("cleanup"), "cleanup creader");
  EXPECT_TRUE(TaskEnds(t.pid(), creader));
  EXPECT_TRUE(Roles(t.pid()).size() >= 4);
  EXPECT_TRUE(BeatsPass(t, Beats(t)));
  t.ExpectCleanExit("quit");
}

// Started without the shim, attached from the host: the attach itself needs
// no network; the listing after it and every later command connect inside.
TEST(AttachNetns, AProgramIsAttachedFromTheHost) {
  KS_NEED_PTRACE();
  KS_NEED_NETNS();
  Target t("/usr/bin/unshare", {"--net", ks::ProgPath("attach_ends")}, TsanPreAttachDumpEnv(),
           /*preload=*/false);
  std::string ready = t.WaitFor("ready");
  pid_t creader = TidAfter(ready, "creader");
  ASSERT_NE(creader, 0) << ready << t.Stderr();
  ASSERT_TRUE(OwnNetns(t.pid()));
  ks::Result r = Attach(t.pid());
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  EXPECT_TRUE(Has(r.out, "pre-attach")) << r.out;
  EXPECT_TRUE(SocketOnlyInside(t.pid()));
  ks::Result again = Attach(t.pid());
  EXPECT_EQ(again.code, 0) << again.err;
  EXPECT_TRUE(Has(again.err, "already runs the shim")) << again.err;
  ks::Result c = Inject(EndArgs(t.pid(), creader, {"-m", "cancel", "-t", "5"}));
  EXPECT_EQ(c.code, 0) << c.err << c.out;
  EXPECT_EQ(t.WaitFor("cleanup"), "cleanup creader");
  EXPECT_TRUE(BeatsPass(t, Beats(t)));
  t.ExpectCleanExit("quit");
}

// Without CAP_SYS_ADMIN (setpriv takes it out of the bounding set, so root
// runs the injector without it) the namespace cannot be entered: a clear
// refusal naming what works (exit 6, permission), the program untouched, and
// the same command with the capability works.
TEST(AttachNetns, WithoutCapSysAdminTheRefusalSaysWhatWorks) {
  KS_NEED_NETNS();
  Target t("/usr/bin/unshare", {"--net", "/usr/bin/env", "LD_PRELOAD=" + ks::Preload(),
                                ks::ProgPath("attach_ends")},
           {}, /*preload=*/false);
  ASSERT_FALSE(t.WaitFor("ready").empty()) << t.Stderr();
  ks::Result r = ks::Run({"/usr/bin/setpriv", "--bounding-set", "-sys_admin", "--inh-caps",
                          "-sys_admin", ks::InjectorPath(), std::to_string(t.pid())});
  EXPECT_EQ(r.code, 6) << r.err << r.out;
  EXPECT_TRUE(Has(r.err, "another network namespace")) << r.err;
  EXPECT_TRUE(Has(r.err, "CAP_SYS_ADMIN")) << r.err;
  EXPECT_TRUE(Has(r.err, "nsenter --net --target " + std::to_string(t.pid()))) << r.err;
  EXPECT_TRUE(Has(r.err, "KILLSHIM_SOCKET_DIR")) << r.err;
  EXPECT_TRUE(Roles(t.pid()).size() >= 4);
  EXPECT_TRUE(BeatsPass(t, Beats(t)));
  t.ExpectCleanExit("quit");
}

}  // namespace

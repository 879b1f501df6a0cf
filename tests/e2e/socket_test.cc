// The control socket: who may connect, and what bad input gets.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "tests/e2e/harness.h"

namespace {

using ks::RawClient;
using ks::Target;

struct Started {
  Target t;
  explicit Started(const std::vector<std::string>& env = {})
      : t(ks::ProgPath("threads_basic"), {"2"}, env) {
    EXPECT_EQ(t.WaitFor("ready"), "ready");
    EXPECT_TRUE(t.WaitSocket());
  }
};

void ExpectServesNormally(pid_t pid) {
  RawClient c(pid);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.ReadLine().rfind("killshim proto=2 pid=" + std::to_string(pid), 0), 0u);
  auto reply = c.Request("list");
  ASSERT_FALSE(reply.empty());
  EXPECT_EQ(reply.back().rfind("ok count=", 0), 0u) << reply.back();
  EXPECT_GE(reply.size(), 4u);
}

TEST(Socket, GarbageGetsAnErrorAndTheConnectionGoesOn) {
  Started s;
  RawClient c(s.t.pid());
  c.ReadLine();
  for (const char* bad : {"LIST", "list a", "\x01\x02\x03", "list x=\"open", "nosuchverb"}) {
    auto r = c.Request(bad);
    ASSERT_EQ(r.size(), 1u) << bad;
    auto m = ks::ParseLine(r[0]);
    EXPECT_EQ(m["verb"], "err") << r[0];
    EXPECT_FALSE(m["msg"].empty());
  }
  auto r = c.Request("nosuchverb");
  EXPECT_EQ(ks::ParseLine(r[0])["code"], "unknown-verb");
  r = c.Request("list");
  EXPECT_EQ(r.back().rfind("ok", 0), 0u);
  ExpectServesNormally(s.t.pid());
  EXPECT_TRUE(s.t.Alive());
}

TEST(Socket, OversizedRequestIsRefused) {
  Started s;
  RawClient c(s.t.pid());
  c.ReadLine();
  c.SendRaw(std::string(5000, 'a'));
  auto m = ks::ParseLine(c.ReadLine());
  EXPECT_EQ(m["code"], "too-long");
  EXPECT_EQ(c.ReadLine(2000), "");  // and the connection is closed
  ExpectServesNormally(s.t.pid());
}

TEST(Socket, TruncatedRequestIsReported) {
  Started s;
  RawClient c(s.t.pid());
  c.ReadLine();
  c.SendRaw("lis");
  c.ShutdownWrite();
  EXPECT_EQ(ks::ParseLine(c.ReadLine())["code"], "truncated");
  ExpectServesNormally(s.t.pid());
}

TEST(Socket, SilentClientIsTimedOutWithoutBlockingOthers) {
  Started s({"KILLSHIM_IDLE_TIMEOUT_MS=500"});
  RawClient silent(s.t.pid());
  silent.ReadLine();
  silent.SendRaw("li");
  ExpectServesNormally(s.t.pid());  // served while the other one sits there
  EXPECT_EQ(ks::ParseLine(silent.ReadLine(3000))["code"], "timeout");
}

TEST(Socket, ManyClientsAtOnce) {
  Started s;
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int i = 0; i < 16; i++)
    ts.emplace_back([&] {
      RawClient c(s.t.pid());
      c.ReadLine();
      for (int k = 0; k < 20; k++) {
        auto r = c.Request("list");
        if (!r.empty() && r.back().rfind("ok", 0) == 0) ok++;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 16 * 20);
}

TEST(Socket, OtherUserIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run the injector as nobody";
  Started s;
  // nobody cannot read the runfiles tree under root's home: copy the injector.
  char dir[] = "/tmp/ks-nobody-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  chmod(dir, 0755);
  std::string inj = std::string(dir) + "/killshim-inject";
  {
    std::ifstream src(ks::InjectorPath(), std::ios::binary);
    std::ofstream dst(inj, std::ios::binary);
    dst << src.rdbuf();
  }
  chmod(inj.c_str(), 0755);
  ks::Result r = ks::Run({"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup",
                          "--clear-groups", inj, std::to_string(s.t.pid())});
  unlink(inj.c_str());
  rmdir(dir);
  EXPECT_EQ(r.code, 6) << r.out << r.err;
  EXPECT_NE(r.err.find("permission denied"), std::string::npos) << r.err;
  ExpectServesNormally(s.t.pid());
}

TEST(Socket, SocketDirModeMakesPrivateFileAndRemovesIt) {
  char dir[] = "/tmp/ks-sockdir-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string env = std::string("KILLSHIM_SOCKET_DIR=") + dir;
  setenv("KILLSHIM_SOCKET_DIR", dir, 1);  // for this test's own client too
  std::string path;
  {
    Started s({env});
    path = std::string(dir) + "/killshim-" + std::to_string(s.t.pid()) + ".sock";
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ks::Result r = ks::Inject({std::to_string(s.t.pid())}, 10000, {env});
    EXPECT_EQ(r.code, 0) << r.err;
    s.t.Send("quit");
    EXPECT_EQ(s.t.Wait(), 0);
  }
  unsetenv("KILLSHIM_SOCKET_DIR");
  struct stat st;
  EXPECT_NE(stat(path.c_str(), &st), 0) << "socket file left behind";
  rmdir(dir);
}

// A stale socket file left by a dead process under the same pid never blocks
// the new process: it is replaced, and the new process serves.
TEST(Socket, StaleSocketFileIsReplaced) {
  char dir[] = "/tmp/ks-stale-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string env = std::string("KILLSHIM_SOCKET_DIR=") + dir;
  Target t(ks::ProgPath("threads_basic"), {"1"}, {env}, true, /*hold=*/true);
  std::string path = std::string(dir) + "/killshim-" + std::to_string(t.pid()) + ".sock";
  {
    // A socket bound and closed leaves exactly what a killed process leaves.
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {};
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    ASSERT_EQ(bind(fd, (struct sockaddr*)&a, sizeof a), 0);
    close(fd);
  }
  t.Release();
  ASSERT_EQ(t.WaitFor("ready"), "ready");
  ks::Result r = ks::Inject({std::to_string(t.pid())}, 10000, {env});
  EXPECT_EQ(r.code, 0) << r.err << t.Stderr();
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0);
  struct stat st;
  EXPECT_NE(stat(path.c_str(), &st), 0) << "socket file left behind";
  rmdir(dir);
}

}  // namespace

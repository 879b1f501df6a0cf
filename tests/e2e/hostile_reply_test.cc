// The target writes the replies the injector parses and prints: a process
// that speaks the protocol itself (here a child of the test, standing in for
// a hostile program that replaced the shim) can send a reply without end, or
// names made of escape sequences. The injector keeps a bounded part, says
// so, prints no control character, and its deadline ends a reply that never
// ends.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "tests/e2e/harness.h"

namespace {

using ks::Has;

void WriteAll(int fd, const std::string& s) {
  for (size_t off = 0; off < s.size();) {
    ssize_t w = write(fd, s.data() + off, s.size() - off);
    if (w <= 0) _exit(0);   // the injector hung up: done
    off += static_cast<size_t>(w);
  }
}

// A child that serves one client on @killshim-<its pid> as the shim would
// (the banner, a challenge answered with generation 1, whose proof page it
// maps: docs/PROTOCOL.md), then answers the first other request with RECORDS
// copies of RECORD and FINAL (no FINAL: RECORD for ever). Returns its pid
// once it listens.
pid_t FakeShim(const std::string& record, long records, const std::string& final) {
  int ready[2];
  if (pipe(ready) != 0) return -1;
  pid_t pid = fork();
  if (pid != 0) {
    close(ready[1]);
    char c;
    ssize_t n = read(ready[0], &c, 1);
    close(ready[0]);
    return n == 1 ? pid : -1;
  }
  close(ready[0]);
  int page = memfd_create("killshim-proof-1-00112233445566778899aabbccddeeff", MFD_CLOEXEC);
  if (page < 0 || ftruncate(page, 4096) != 0 ||
      mmap(nullptr, 4096, PROT_READ, MAP_SHARED, page, 0) == MAP_FAILED)
    _exit(1);
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = {};
  a.sun_family = AF_UNIX;
  std::string name = "killshim-" + std::to_string(getpid());
  memcpy(a.sun_path + 1, name.data(), name.size());
  socklen_t len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + 1 + name.size());
  if (bind(l, reinterpret_cast<struct sockaddr*>(&a), len) != 0 || listen(l, 4) != 0) _exit(1);
  if (write(ready[1], "r", 1) != 1) _exit(1);
  signal(SIGPIPE, SIG_IGN);
  int c = accept(l, nullptr, nullptr);
  WriteAll(c, "killshim proto=2 pid=" + std::to_string(getpid()) + "\n");
  std::string in;
  char buf[4096];
  for (;;) {
    size_t nl;
    while ((nl = in.find('\n')) == std::string::npos) {
      ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) _exit(0);
      in.append(buf, static_cast<size_t>(n));
    }
    std::string line = in.substr(0, nl);
    in.erase(0, nl + 1);
    if (line.rfind("challenge", 0) == 0) {
      WriteAll(c, "ok gen=1 valid_ms=100000\n");
      continue;
    }
    break;
  }
  std::string batch;
  for (int i = 0; i < 1000; i++) batch += record;
  for (long i = 0; final.empty() || i < records; i += 1000) WriteAll(c, batch);
  WriteAll(c, final);
  _exit(0);
}

void Reap(pid_t pid) {
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

TEST(HostileReply, AThreadListWithoutEndIsCutAndSaidSo) {
  pid_t pid = FakeShim("thread tid=7 name=x role=app state=S\n", 70000, "ok threads=1\n");
  ASSERT_GT(pid, 0);
  ks::Result r = ks::Inject({"--json", std::to_string(pid)}, 60000);
  Reap(pid);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(Has(r.err, "sent more than 65536 threads: the rest is not shown")) << r.err;
}

TEST(HostileReply, StacksWithoutEndAreCutAndSaidSo) {
  // As many frames as a line holds (short addresses): the frame limit (1M)
  // is passed with two thousand threads.
  std::string ips = "ips=";
  for (int i = 0; ips.size() < 3900; i++) ips += (i ? "," : "") + std::to_string(100 + i % 800);
  pid_t pid = FakeShim("stack tid=7 name=x role=app state=S via=signal " + ips + "\n", 2000,
                       "ok threads=1 us=1\n");
  ASSERT_GT(pid, 0);
  ks::Result r = ks::Inject({"--stack", std::to_string(pid)}, 60000);
  Reap(pid);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(Has(r.err, "or 1048576 frames: the rest is not shown")) << r.err;
}

TEST(HostileReply, ARepliesEscapeSequencesNeverReachTheTerminal) {
  pid_t pid = FakeShim(
      "thread tid=7 name=\"\\x1b]0;owned\\x07\\x1b[2J\\xc2\\x9b1m\" role=app state=S\n", 1,
      "ok threads=1\n");
  ASSERT_GT(pid, 0);
  ks::Result r = ks::Inject({std::to_string(pid)}, 20000);
  Reap(pid);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(Has(r.out, "?]0;owned??[2J??1m")) << r.out;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos);
  EXPECT_EQ(r.out.find('\x07'), std::string::npos);
  EXPECT_EQ(r.out.find("\xc2\x9b"), std::string::npos);
}

TEST(HostileReply, AReplyThatNeverEndsMeetsTheDeadline) {
  pid_t pid = FakeShim("thread tid=7 name=x role=app state=S\n", 0, "");
  ASSERT_GT(pid, 0);
  long t0 = ks::NowMs();
  ks::Result r = ks::Inject({"--deadline", "2", std::to_string(pid)}, 30000);
  long ms = ks::NowMs() - t0;
  Reap(pid);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_LT(ms, 10000);
  EXPECT_TRUE(Has(r.err, "gave up after 2 s (--deadline) while waiting for process " +
                             std::to_string(pid) + " to answer \"list\""))
      << r.err;
}

}  // namespace

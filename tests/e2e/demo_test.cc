// `killshim demo`, run as a user would (non-interactively): the commands it
// shows, what they print, its exit status, and that it leaves nothing behind.
#include <gtest/gtest.h>
#include <signal.h>

#include <regex>
#include <sstream>

#include "tests/e2e/front.h"
#include "tests/e2e/harness.h"

namespace {

using ks::Contains;

struct Demo {
  ks::Result r;
  pid_t pid = 0;
  std::string port;
  std::vector<std::string> lines;

  Demo() {
    r = ks::Run({ks::LauncherPath(), "demo"}, 120000);
    std::istringstream in(r.out);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    std::smatch m;
    static const std::regex serving("hung_service: pid ([0-9]+), serving http://127\\.0\\.0\\.1:([0-9]+)/");
    if (std::regex_search(r.out, m, serving)) {
      pid = atoi(m[1].str().c_str());
      port = m[2].str();
    }
  }

  // Index of the first line at or after FROM that starts with PREFIX, or -1.
  int Find(const std::string& prefix, int from = 0) const {
    for (size_t i = (size_t)from; i < lines.size(); i++)
      if (lines[i].compare(0, prefix.size(), prefix) == 0) return (int)i;
    return -1;
  }
};

const Demo& TheDemo() {
  static const Demo d;
  return d;
}

TEST(Demo, RunsToTheEndAndSucceeds) {
  const Demo& d = TheDemo();
  EXPECT_EQ(d.r.code, 0) << d.r.out << d.r.err;
  EXPECT_EQ(d.r.err, "");
  ASSERT_NE(d.pid, 0) << d.r.out;
  EXPECT_TRUE(Contains(d.r.out, "# Done.")) << d.r.out;
}

TEST(Demo, StartsTheServiceUnderTheShimAsAUserWould) {
  const Demo& d = TheDemo();
  int start = d.Find("$ killshim run -- hung_service &");
  ASSERT_GE(start, 0) << d.r.out;
  int serving = d.Find("hung_service: pid " + std::to_string(d.pid) + ", serving", start);
  EXPECT_EQ(serving, start + 1) << d.r.out;
  EXPECT_GE(d.Find("[1] " + std::to_string(d.pid), start), 0) << d.r.out;
}

TEST(Demo, ListsTheStuckThreads) {
  const Demo& d = TheDemo();
  std::string cmd = "$ killshim inject " + std::to_string(d.pid);
  int list = d.Find(cmd);
  ASSERT_GE(list, 0) << d.r.out;
  ASSERT_LT((size_t)list + 8, d.lines.size());
  EXPECT_EQ(d.lines[list + 1].rfind("process " + std::to_string(d.pid) + ": 7 threads", 0), 0u)
      << d.lines[list + 1];
  EXPECT_EQ(d.lines[list + 2].rfind("TID ", 0), 0u) << d.lines[list + 2];
  // One row per thread, by name and start routine; the deadlocked pair
  // shows a held lock and the mutex each waits for.
  std::string table;
  for (int i = list + 3; i < list + 10 && (size_t)i < d.lines.size(); i++) table += d.lines[i] + "\n";
  for (const char* row : {" http +http_main +S ", " cruncher +cruncher_main +R ",
                          " fetcher +fetcher_main ", " reporter +reporter_main ",
                          " ledger-a +ledger_main .*holds 1 lock.*waits for mutex 0x",
                          " ledger-b +ledger_main .*holds 1 lock.*waits for mutex 0x"})
    EXPECT_TRUE(std::regex_search(table, std::regex(row))) << row << "\n" << table;
}

TEST(Demo, TheServiceAnswersBeforeAndAfter) {
  const Demo& d = TheDemo();
  std::string ask = "$ curl -s http://127.0.0.1:" + d.port + "/";
  int first = d.Find(ask);
  ASSERT_GE(first, 0) << d.r.out;
  EXPECT_EQ(d.lines[first + 1].rfind("ok: request 1,", 0), 0u) << d.lines[first + 1];
  int last = d.Find(ask, first + 1);
  ASSERT_GE(last, 0) << d.r.out;
  EXPECT_EQ(d.lines[last + 1].rfind("ok: request 2,", 0), 0u) << d.lines[last + 1];
}

TEST(Demo, LeavesNoServiceBehind) {
  const Demo& d = TheDemo();
  ASSERT_NE(d.pid, 0);
  // The demo killed and reaped it before exiting.
  EXPECT_FALSE(ks::Exists("/proc/" + std::to_string(d.pid))) << d.pid;
}

TEST(Demo, NoColorWhenNotATerminal) {
  EXPECT_FALSE(Contains(TheDemo().r.out, "\x1b[")) << TheDemo().r.out;
}

TEST(Demo, RejectsUnknownArguments) {
  ks::Result r = ks::Run({ks::LauncherPath(), "demo", "--bogus"});
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(Contains(r.err, "usage: killshim demo")) << r.err;
}

}  // namespace

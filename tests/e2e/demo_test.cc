// `killshim demo`, run as a user would (non-interactively): the commands it
// shows, what they print, its exit status, and that it leaves nothing behind.
#include <gtest/gtest.h>
#include <signal.h>

#include <cctype>
#include <regex>
#include <set>
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

  // Threads of a sanitizer runtime (TSan's background thread, --config=tsan):
  // in the --stack output, a foreign thread whose innermost frame is in a
  // lib*san.so. The tables list them; the counts below leave them out.
  std::set<std::string> SanitizerTids() const {
    std::set<std::string> out;
    static const std::regex head("^Thread ([0-9]+) \".*\" \\(foreign, ");
    for (size_t i = 0; i < lines.size(); i++) {
      std::smatch m;
      if (!std::regex_search(lines[i], m, head)) continue;
      for (size_t j = i + 1; j < lines.size() && !lines[j].empty(); j++)
        if (lines[j].find(" #0 ") != std::string::npos || lines[j].rfind("  #0 ", 0) == 0) {
          if (std::regex_search(lines[j], std::regex("\\(lib[a-z]*san\\.so"))) out.insert(m[1]);
          break;
        }
    }
    return out;
  }

  // The rows of the table printed after line CMD (a listing command), without
  // sanitizer threads; *COUNT gets the count of its "process P: N threads" line.
  std::vector<std::string> Table(int cmd, int* count) const {
    std::vector<std::string> rows;
    *count = -1;
    std::string head = "process " + std::to_string(pid) + ": ";
    if (cmd < 0 || (size_t)cmd + 2 >= lines.size() || lines[cmd + 1].rfind(head, 0) != 0) return rows;
    std::set<std::string> san = SanitizerTids();
    *count = atoi(lines[cmd + 1].c_str() + head.size()) - (int)san.size();
    for (size_t i = (size_t)cmd + 3; i < lines.size() && !lines[i].empty() && isdigit(lines[i][0]); i++)
      if (!san.count(lines[i].substr(0, lines[i].find(' ')))) rows.push_back(lines[i]);
    return rows;
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
  // stderr holds only the injector's progress lines while it waits: no
  // complaint of the demo's (a step that did not go as shown), no error of a
  // command it runs.
  std::istringstream err(d.r.err);
  // (Under --config=tsan the service also maps TSan's deleted
  // /tmp/tsan.rodata.* file, which the injector says it skipped.)
  for (std::string l; std::getline(err, l);) {
    bool deleted = l.rfind("killshim-inject: skipped ", 0) == 0 &&
                   l.find(" (deleted) (an object the process maps): deleted since it was mapped") !=
                       std::string::npos;
    if (!deleted) {
      EXPECT_EQ(l.rfind("killshim-inject: [", 0), 0u) << l;
    }
  }
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
  int count = 0;
  std::vector<std::string> rows = d.Table(list, &count);
  EXPECT_EQ(count, 7) << d.lines[list + 1];
  EXPECT_EQ(rows.size(), 7u) << d.r.out;
  EXPECT_EQ(d.lines[list + 2].rfind("TID ", 0), 0u) << d.lines[list + 2];
  // One row per thread, by name and start routine; the deadlocked pair
  // shows a held lock and the mutex each waits for.
  std::string table = "\n";
  for (auto& row : rows) table += row + "\n";
  for (const char* row : {" http +http_main +S ", " cruncher +cruncher_main +R ",
                          " fetcher +fetcher_main +S .*in read", " reporter +reporter_main ",
                          " ledger-a +ledger_main .*holds 1 lock.*waits for mutex 0x",
                          " ledger-b +ledger_main .*holds 1 lock.*waits for mutex 0x"})
    EXPECT_TRUE(std::regex_search(table, std::regex(row))) << row << "\n" << table;
  // The cycle, with both ledgers' tids.
  std::smatch a, b;
  ASSERT_TRUE(std::regex_search(table, a, std::regex("\n([0-9]+) +ledger-a ")));
  ASSERT_TRUE(std::regex_search(table, b, std::regex("\n([0-9]+) +ledger-b ")));
  std::string cycle = "deadlock: " + a[1].str() + " waits for " + b[1].str() + " (mutex 0x";
  std::string cycle2 = "deadlock: " + b[1].str() + " waits for " + a[1].str() + " (mutex 0x";
  EXPECT_TRUE(d.Find(cycle, list) > list || d.Find(cycle2, list) > list) << cycle << "\n" << d.r.out;
}

TEST(Demo, ShowsTheStacksAndTheDeadlock) {
  const Demo& d = TheDemo();
  int cmd = d.Find("$ killshim inject --stack " + std::to_string(d.pid));
  ASSERT_GE(cmd, 0) << d.r.out;
  int next = d.Find("$ ", cmd + 1);
  ASSERT_GT(next, cmd) << d.r.out;
  std::string out;
  for (int i = cmd + 1; i < next; i++) out += d.lines[i] + "\n";
  std::string threads = std::to_string(7 + d.SanitizerTids().size()) + " threads";
  EXPECT_EQ(out.rfind("process " + std::to_string(d.pid) + ": " + threads + ", stacks taken in ", 0), 0u)
      << out;
  // Each thread's header, then its frames: the start routines and the calls
  // they are parked in.
  for (const char* re : {"Thread [0-9]+ \"cruncher\" \\(app, R\\)\n(.*\n)*? *#0 .* cruncher_main\\+",
                         "Thread [0-9]+ \"fetcher\" .*\n *blocked in read\\(",
                         "Thread [0-9]+ \"ledger-a\" .*: waits for mutex 0x[0-9a-f]+ held by [0-9]+",
                         "Thread [0-9]+ \"ledger-b\" .*: waits for mutex 0x[0-9a-f]+ held by [0-9]+",
                         "ledger_main\\+", "\ndeadlock: [0-9]+ waits for [0-9]+ \\(mutex 0x"})
    EXPECT_TRUE(std::regex_search(out, std::regex(re))) << re << "\n" << out;
}

// The tid the demo printed for worker NAME ("# NAME (TID) ...").
std::string TidOf(const Demo& d, const std::string& name) {
  std::smatch m;
  if (std::regex_search(d.r.out, m, std::regex("# " + name + " \\(([0-9]+)\\)"))) return m[1];
  return "";
}

TEST(Demo, CancelsTheFetcherAndItsCleanupHandlerRuns) {
  const Demo& d = TheDemo();
  std::string pid = std::to_string(d.pid), tid = TidOf(d, "fetcher");
  ASSERT_NE(tid, "") << d.r.out;
  int cmd = d.Find("$ killshim inject --mode cancel " + pid + " " + tid);
  ASSERT_GE(cmd, 0) << d.r.out;
  EXPECT_EQ(d.lines[cmd + 1].rfind("thread " + tid + " (fetcher) of process " + pid +
                                       ": gone: cancelled (mode cancel)", 0), 0u)
      << d.lines[cmd + 1];
  int closed = d.Find("hung_service: fetcher: cleanup handler closed its upstream connection", cmd);
  int joined = d.Find("hung_service: joined fetcher: it ended by cancellation (PTHREAD_CANCELED)", cmd);
  EXPECT_GT(closed, cmd) << d.r.out;
  EXPECT_GT(joined, closed) << d.r.out;
}

TEST(Demo, AbortsTheCruncherAtASafePoint) {
  const Demo& d = TheDemo();
  std::string pid = std::to_string(d.pid), tid = TidOf(d, "cruncher");
  ASSERT_NE(tid, "") << d.r.out;
  int cmd = d.Find("$ killshim inject --mode abort " + pid + " " + tid);
  ASSERT_GE(cmd, 0) << d.r.out;
  EXPECT_EQ(d.lines[cmd + 1].rfind("thread " + tid + " (cruncher) of process " + pid +
                                       ": gone: aborted (mode abort)", 0), 0u)
      << d.lines[cmd + 1];
  EXPECT_GT(d.Find("  left from:   cruncher_main+", cmd), cmd) << d.r.out;
  EXPECT_GT(d.Find("hung_service: joined cruncher: it ended by cancellation (PTHREAD_CANCELED)", cmd),
            cmd)
      << d.r.out;
}

// The deadlock: a plain abort stays pending (the thread holds a lock) with
// exit 3; --force ends ledger-a, whose cleanup handler unlocks its mutex, and
// ledger-b goes on.
TEST(Demo, BreaksTheDeadlockWithForceAndTheOtherSideRunsOn) {
  const Demo& d = TheDemo();
  std::string pid = std::to_string(d.pid), tid = TidOf(d, "ledger-a");
  ASSERT_NE(tid, "") << d.r.out;
  int pending = d.Find("$ killshim inject --mode abort --timeout 2 " + pid + " " + tid);
  ASSERT_GE(pending, 0) << d.r.out;
  EXPECT_TRUE(Contains(d.lines[pending + 1], "still alive after")) << d.lines[pending + 1];
  EXPECT_TRUE(Contains(d.lines[pending + 1], "holds 1 lock")) << d.lines[pending + 1];
  int status = d.Find("(exit status 3)", pending);
  int force = d.Find("$ killshim inject --mode abort --force " + pid + " " + tid);
  EXPECT_GT(status, pending);
  ASSERT_GT(force, status) << d.r.out;
  EXPECT_EQ(d.lines[force + 1].rfind("thread " + tid + " (ledger-a) of process " + pid +
                                         ": gone: aborted (mode abort)", 0), 0u)
      << d.lines[force + 1];
  EXPECT_GT(d.Find("hung_service: joined ledger-a:", force), force) << d.r.out;
  EXPECT_GT(d.Find("hung_service: ledger-b: got both accounts; transfers resume", force), force)
      << d.r.out;
}

TEST(Demo, ReporterRefusesCancelThenStopsOnItsOwnFlag) {
  const Demo& d = TheDemo();
  std::string pid = std::to_string(d.pid), tid = TidOf(d, "reporter");
  ASSERT_NE(tid, "") << d.r.out;
  int cancel = d.Find("$ killshim inject --mode cancel --timeout 2 " + pid + " " + tid);
  ASSERT_GE(cancel, 0) << d.r.out;
  EXPECT_TRUE(Contains(d.lines[cancel + 1], "still alive after")) << d.lines[cancel + 1];
  EXPECT_TRUE(Contains(d.lines[cancel + 1], "cancellation disabled")) << d.lines[cancel + 1];
  int status = d.Find("(exit status 3)", cancel);
  int flag = d.Find("$ killshim inject --mode flag --flag-symbol stop_reporting " + pid + " " + tid);
  EXPECT_GT(status, cancel);
  ASSERT_GT(flag, status) << d.r.out;
  // The flag, not the pending cancel (end_test: Auto.APendingCancelThenAFlag...).
  EXPECT_EQ(d.lines[flag + 1].rfind("thread " + tid + " (reporter) of process " + pid +
                                        ": gone: returned (mode flag)", 0), 0u)
      << d.lines[flag + 1];
  EXPECT_GT(d.Find("hung_service: reporter: stop_reporting is set", flag), flag) << d.r.out;
  EXPECT_GT(d.Find("hung_service: joined reporter: it returned", flag), flag) << d.r.out;
}

TEST(Demo, TheFinalListingLacksTheEndedThreads) {
  const Demo& d = TheDemo();
  std::string cmd = "$ killshim inject " + std::to_string(d.pid);
  int first = d.Find(cmd);
  int last = d.Find(cmd, first + 1);
  ASSERT_GT(last, first) << d.r.out;
  int count = 0;
  std::vector<std::string> rows = d.Table(last, &count);
  EXPECT_EQ(count, 3) << d.lines[last + 1];
  ASSERT_EQ(rows.size(), 3u) << d.r.out;
  // main's state is whatever it is at that instant: it wakes every 100 ms to
  // join finished workers (a fresh machine's run once listed it awake).
  EXPECT_TRUE(std::regex_search(rows[0], std::regex(" main +[RS] "))) << rows[0];
  EXPECT_TRUE(std::regex_search(rows[1], std::regex(" http +http_main "))) << rows[1];
  // ledger-b no longer waits: the deadlock is gone with ledger-a.
  EXPECT_TRUE(std::regex_search(rows[2], std::regex(" ledger-b +ledger_main "))) << rows[2];
  EXPECT_FALSE(Contains(rows[2], "waits for")) << rows[2];
  for (size_t i = (size_t)last + 1; i < d.lines.size() && d.lines[i].rfind("$ ", 0) != 0; i++)
    EXPECT_EQ(d.lines[i].rfind("deadlock:", 0), std::string::npos) << d.lines[i];
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
  // The service itself joined the ended workers, and the ledger works again.
  EXPECT_TRUE(Contains(d.lines[last + 1], ", workers: ledger-b")) << d.lines[last + 1];
  EXPECT_FALSE(Contains(d.lines[last + 1], "transfers 0,")) << d.lines[last + 1];
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

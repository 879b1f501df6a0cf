// killshim-inject PID: the listing, end to end.
#include <gtest/gtest.h>
#include <json-c/json.h>
#include <sched.h>
#include <unistd.h>

#include <ctype.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "tests/e2e/harness.h"

namespace {

using ks::TidFrom;
using ks::Inject;
using ks::Target;

// tid -> row of the JSON listing.
std::map<pid_t, std::map<std::string, std::string>> JsonThreads(const std::string& out) {
  std::map<pid_t, std::map<std::string, std::string>> rows;
  json_object* root = json_tokener_parse(out.c_str());
  if (!root) return rows;
  json_object* arr;
  if (json_object_object_get_ex(root, "threads", &arr)) {
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
      json_object* t = json_object_array_get_idx(arr, i);
      std::map<std::string, std::string> row;
      json_object_object_foreach(t, k, v) { row[k] = v ? json_object_get_string(v) : "null"; }
      rows[atoi(row["tid"].c_str())] = row;
    }
  }
  json_object_put(root);
  return rows;
}

struct Basic {
  Target t;
  pid_t main_tid = 0;
  std::vector<pid_t> workers;
  explicit Basic(int n) : t(ks::ProgPath("threads_basic"), {std::to_string(n)}) {
    main_tid = TidFrom(t.WaitFor("main "));
    workers.resize(n);
    for (int i = 0; i < n; i++) {
      std::string l = t.WaitFor("worker ");
      int idx = atoi(l.c_str() + 7);
      if (idx >= 0 && idx < n) workers[idx] = TidFrom(l);
    }
    EXPECT_EQ(t.WaitFor("ready"), "ready");
    EXPECT_TRUE(t.WaitSocket());
  }
};

TEST(List, MainAndWorkersWithStartRoutines) {
  Basic b(4);
  ASSERT_EQ(b.main_tid, b.t.pid());
  ks::Result r = Inject({"--json", std::to_string(b.t.pid())});
  ASSERT_EQ(r.code, 0) << r.err;
  auto rows = JsonThreads(r.out);
  ASSERT_TRUE(rows.count(b.main_tid)) << r.out;
  EXPECT_EQ(rows[b.main_tid]["role"], "main");
  EXPECT_EQ(rows[b.main_tid]["start"], "main");
  EXPECT_EQ(rows[b.main_tid]["registered"], "true");
  for (size_t i = 0; i < b.workers.size(); i++) {
    pid_t w = b.workers[i];
    ASSERT_TRUE(rows.count(w)) << "worker " << w << " missing:\n" << r.out;
    EXPECT_EQ(rows[w]["start"], "worker_main");
    EXPECT_EQ(rows[w]["role"], "app");
    EXPECT_EQ(rows[w]["registered"], "true");
    EXPECT_EQ(rows[w]["name"], "worker-" + std::to_string(i));
    EXPECT_EQ(rows[w]["state"], "S");
  }
  // Exactly the program's threads, plus the shim's own, marked as such.
  int shim = 0;
  for (auto& [tid, row] : rows) {
    if (row["role"] == "shim") {
      shim++;
      EXPECT_EQ(row["registered"], "false");
    }
  }
  EXPECT_GE(shim, 1);
  // A sanitizer runtime's own thread (harness.h) is listed too, as foreign.
  size_t sanitizer = 0;
  for (auto& [tid, row] : rows)
    sanitizer += row["role"] == "foreign" && ks::SanitizerThread(b.t.pid(), tid);
  EXPECT_EQ(rows.size(), 1 + b.workers.size() + shim + sanitizer);
}

TEST(List, TableHidesShimThreadsAndNamesStartRoutines) {
  Basic b(2);
  ks::Result r = Inject({std::to_string(b.t.pid())});
  ASSERT_EQ(r.code, 0) << r.err;
  // main, two workers, and a sanitizer runtime's thread if there is one.
  size_t sanitizer = 0;
  for (auto& [tid, row] : ks::ListRows(b.t.pid()))
    sanitizer += row["role"] == "foreign" && ks::SanitizerThread(b.t.pid(), tid);
  EXPECT_NE(r.out.find("process " + std::to_string(b.t.pid()) + ": " + std::to_string(3 + sanitizer) +
                       " threads"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("killshim thread"), std::string::npos);
  EXPECT_EQ(r.out.find("killshim-ctl"), std::string::npos);
  for (pid_t w : b.workers) {
    std::string row = std::to_string(w) + " ";
    size_t p = r.out.find("\n" + row);
    ASSERT_NE(p, std::string::npos) << r.out;
    std::string line = r.out.substr(p + 1, r.out.find('\n', p + 1) - p - 1);
    EXPECT_NE(line.find("worker_main"), std::string::npos) << line;
  }
  ks::Result all = Inject({"--all", std::to_string(b.t.pid())});
  EXPECT_NE(all.out.find("killshim-ctl"), std::string::npos) << all.out;
}

TEST(List, ExitedThreadsAreGone) {
  Basic b(3);
  b.t.Send("exit 1");
  ASSERT_EQ(b.t.WaitFor("exited 1"), "exited 1");
  auto rows = JsonThreads(Inject({"--json", std::to_string(b.t.pid())}).out);
  EXPECT_TRUE(rows.count(b.workers[0]));
  EXPECT_FALSE(rows.count(b.workers[1]));
  EXPECT_TRUE(rows.count(b.workers[2]));
}

// 1,000 threads created and joined concurrently while another client lists
// in a loop: every listing succeeds, lists only live threads of the right
// kind, and the program finishes with the right count.
TEST(List, ChurnWhileListing) {
  Target t(ks::ProgPath("churn"), {"1000", "4"});
  ASSERT_EQ(t.WaitFor("ready"), "ready");
  ASSERT_TRUE(t.WaitSocket());
  t.Send("go");
  std::atomic<bool> done{false};
  int listings = 0, failures = 0;
  std::string bad;
  std::thread lister([&] {
    while (!done) {
      ks::Result r = Inject({"--json", std::to_string(t.pid())});
      listings++;
      if (r.code != 0) {
        failures++;
        bad = r.err;
        continue;
      }
      for (auto& [tid, row] : JsonThreads(r.out)) {
        if (row["role"] == "app" && row["start"] != "churn_worker" && row["start"] != "churn_creator") {
          failures++;
          bad = "unexpected start routine " + row["start"];
        }
      }
    }
  });
  std::string d = t.WaitFor("done", 120000);
  done = true;
  lister.join();
  EXPECT_EQ(d, "done 1000");
  EXPECT_GT(listings, 0);
  EXPECT_EQ(failures, 0) << bad;
  // Afterwards only the main thread (and the shim's) remain.
  auto rows = JsonThreads(Inject({"--json", std::to_string(t.pid())}).out);
  int app = 0;
  for (auto& [tid, row] : rows) app += row["role"] == "app";
  EXPECT_EQ(app, 0);
  EXPECT_TRUE(t.Alive());
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0);
}

// 640 threads, a quarter each in a call the shim wraps (usleep, epoll_wait),
// in read and in pthread_cond_wait: every one is listed (the reply, over
// 64 KiB, comes in parts), and each row's system call is the kernel's,
// though the shim reads /proc for a wrapped call's number only until three
// threads in it agreed (cmd_list.c). Each thread makes one blocking call
// over and over, so the kernel's number is the one it shows whenever it
// shows one. Under ThreadSanitizer its interceptors run inside the shim's
// wrappers and block on its own futexes there, so a thread in usleep may
// sit in futex: the learned number is then the wrapped call's (documented
// in docs/PROTOCOL.md), and only the set of numbers is compared.
TEST(List, EveryThreadAndItsSystemCallAtScale) {
  const bool exact = ks::SanitizerPreload().empty();
  const int n = 640;   // over 64 KiB of rows: the reply comes in parts
  Target t(ks::ProgPath("many"), {std::to_string(n)});
  ASSERT_EQ(t.WaitFor("ready", 60000), "ready");
  ASSERT_TRUE(t.WaitSocket());
  std::string final;
  auto rows = ks::ListRows(t.pid(), &final);
  EXPECT_EQ(final.rfind("ok ", 0), 0u) << final;
  int app = 0, with_syscall = 0;
  std::map<long, int> by_nr;
  std::set<long> kernel_nrs;
  int compared = 0;
  const long deadline = ks::NowMs() + 30000;   // for all the /proc reads below
  for (auto& [tid, row] : rows) {
    if (row["role"] != "app") continue;
    app++;
    if (!row.count("syscall")) continue;   // running when it was read
    with_syscall++;
    long nr = atol(row["syscall"].c_str());
    by_nr[nr]++;
    long kernel = -1;
    std::string path = "/proc/" + std::to_string(t.pid()) + "/task/" + std::to_string(tid) + "/syscall";
    while (kernel < 0 && ks::NowMs() < deadline) {
      std::ifstream f(path);
      std::string first;
      f >> first;
      if (!first.empty() && isdigit((unsigned char)first[0])) kernel = atol(first.c_str());
    }
    if (kernel < 0) continue;   // never seen blocked again in time (a loaded machine)
    compared++;
    if (exact) EXPECT_EQ(nr, kernel) << "thread " << tid;
    kernel_nrs.insert(kernel);
  }
  EXPECT_GT(compared, n / 4);
  for (auto& [nr, k] : by_nr) EXPECT_TRUE(kernel_nrs.count(nr)) << nr << " shown, never seen in /proc";
  EXPECT_EQ(app, n);
  EXPECT_GT(with_syscall, exact ? n / 2 : n / 8);   // ThreadSanitizer keeps many running
  EXPECT_GE(by_nr.size(), exact ? 4u : 3u);          // four kinds of wait, four numbers
  t.Send("release");
  EXPECT_EQ(t.WaitFor("released", 30000), "released " + std::to_string(n));
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0);
}

// A listing of 1,000 tasks or more is walked by two threads where the
// process may use two CPUs (list_walk.c): every task of /proc is one row,
// once, in /proc's order (the two walkers' chunks are handed on in order), the
// count says so, and the parked threads show as sleeping.
TEST(List, TwoWalkersListEveryTaskOnceInProcOrder) {
  const int n = 1200;
  Target t(ks::ProgPath("many"), {std::to_string(n)}, {"KILLSHIM_DEBUG=1"});
  ASSERT_EQ(t.WaitFor("ready", 60000), "ready");
  ASSERT_TRUE(t.WaitSocket());
  ks::RawClient c(t.pid());
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c.ReadLine().rfind("killshim", 0), 0u);
  // The tasks before and after the listing: parked, none come or go but
  // the shim's own (the connection thread and the second walker).
  std::vector<pid_t> before = ks::Tasks(t.pid());
  auto reply = c.Request("list", 60000);
  std::vector<pid_t> after_v = ks::Tasks(t.pid());
  std::set<pid_t> after(after_v.begin(), after_v.end());
  ASSERT_FALSE(reply.empty());
  ks::Row final = ks::ParseLine(reply.back());
  ASSERT_EQ(final["verb"], "ok") << reply.back();
  std::vector<pid_t> order;
  int app = 0, sleeping = 0;
  for (const auto& l : reply) {
    ks::Row r = ks::ParseLine(l);
    if (r["verb"] != "thread") continue;
    order.push_back(atoi(r["tid"].c_str()));
    if (r["role"] != "app") continue;
    app++;
    sleeping += r["state"] == "S";
  }
  EXPECT_EQ(atoi(final["count"].c_str()), (int)order.size());
  EXPECT_EQ(std::set<pid_t>(order.begin(), order.end()).size(), order.size()) << "a row twice";
  // The tasks there before and after, in /proc's order, are the rows' order.
  std::vector<pid_t> stayed, listed;
  for (pid_t tid : before)
    if (after.count(tid)) stayed.push_back(tid);
  std::set<pid_t> stayed_set(stayed.begin(), stayed.end());
  for (pid_t tid : order)
    if (stayed_set.count(tid)) listed.push_back(tid);
  EXPECT_EQ(listed, stayed) << "rows missing or out of /proc's order";
  EXPECT_EQ(app, n);
  EXPECT_GT(sleeping, n / 2);   // parked in four kinds of wait; a few may be on their way
  t.Send("release");
  EXPECT_EQ(t.WaitFor("released", 30000), "released " + std::to_string(n));
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0);
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) >= 2)
    EXPECT_NE(t.Stderr().find("list: a second walker shares"), std::string::npos)
        << "the listing was not split";
}

// Listings of 1,200 threads in a loop while they are all released: every
// listing is whole (its final line, the count of its rows, no unknown role),
// the program's threads all return, and it exits 0.
TEST(List, TwoWalkersWhileThreadsEnd) {
  const int n = 1200;
  Target t(ks::ProgPath("many"), {std::to_string(n)}, {"KILLSHIM_DEBUG=1"});
  ASSERT_EQ(t.WaitFor("ready", 60000), "ready");
  ASSERT_TRUE(t.WaitSocket());
  std::atomic<bool> done{false};
  std::atomic<int> listings{0}, big{0}, failures{0};
  std::string bad;
  std::thread lister([&] {
    while (!done) {
      std::string final;
      auto rows = ks::ListRows(t.pid(), &final);
      listings++;
      ks::Row f = ks::ParseLine(final);
      if (f["verb"] != "ok" || atoi(f["count"].c_str()) != (int)rows.size()) {
        failures++;
        bad = final;
        continue;
      }
      big += rows.size() >= 1000;
      for (auto& [tid, row] : rows)
        if (row["role"] != "app" && row["role"] != "main" && row["role"] != "shim" &&
            !(row["role"] == "foreign" && ks::SanitizerThread(t.pid(), tid))) {
          failures++;
          bad = "thread " + std::to_string(tid) + " role " + row["role"];
        }
    }
  });
  // Released while the listings run: wait for one big listing first.
  for (long dl = ks::NowMs() + 30000; big == 0 && ks::NowMs() < dl;)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  t.Send("release");
  std::string released = t.WaitFor("released", 60000);
  int after_release = listings;
  for (long dl = ks::NowMs() + 10000; listings < after_release + 2 && ks::NowMs() < dl;)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  done = true;
  lister.join();
  EXPECT_EQ(released, "released " + std::to_string(n));
  EXPECT_GT(big.load(), 0);
  EXPECT_GE(listings.load(), after_release + 2);
  EXPECT_EQ(failures.load(), 0) << bad;
  EXPECT_TRUE(t.Alive());
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0);
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) >= 2)
    EXPECT_NE(t.Stderr().find("list: a second walker shares"), std::string::npos);
}

TEST(List, ErrorsHaveDistinctExitCodes) {
  ks::Result r = Inject({"99999999999"});
  EXPECT_EQ(r.code, 2) << r.err;  // not a valid pid number range
  r = Inject({"4194300"});
  EXPECT_EQ(r.code, 4) << r.err;
  EXPECT_NE(r.err.find("no such process"), std::string::npos);
  Target plain(ks::ProgPath("threads_basic"), {"1"}, {}, /*preload=*/false);
  ASSERT_EQ(plain.WaitFor("ready"), "ready");
  r = Inject({std::to_string(plain.pid())});
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_NE(r.err.find("does not run the killshim shim"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("LD_PRELOAD"), std::string::npos) << r.err;
  r = Inject({});
  EXPECT_EQ(r.code, 2);
  r = Inject({"--bogus", "1"});
  EXPECT_EQ(r.code, 2);
  r = Inject({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("Exit codes"), std::string::npos);
  r = Inject({"--version"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("protocol 2"), std::string::npos);
}

TEST(List, ShimNeverWritesToStdout) {
  // threads_basic prints only its own lines; anything else on stdout would
  // come from the shim.
  Basic b(1);
  Inject({std::to_string(b.t.pid())});
  b.t.Send("quit");
  std::string rest;
  for (std::string l; !(l = b.t.ReadLine(2000)).empty();) rest += l + "\n";
  EXPECT_EQ(rest, "");
  EXPECT_EQ(b.t.Wait(), 0);
  EXPECT_EQ(b.t.Stderr(), "");
}

}  // namespace

// Load: 100 concurrent killshim-inject clients (half listing, half dumping
// every stack) while the program creates and destroys about 1,000 threads a
// second for a few seconds. No crash, no
// deadlock, every answer complete and consistent, and the program's own
// result unchanged. (The leak check of the same scenario, under valgrind or
// LeakSanitizer, is tools/leakcheck.sh; under --config=asan, LeakSanitizer
// also checks the program's exit here.)
#include <gtest/gtest.h>
#include <json-c/json.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/harness.h"

namespace {

using ks::Target;

// Checks one JSON listing (or, STACK, one --stack dump); returns "" if it is
// right, else what is wrong.
std::string CheckListing(const std::string& out, pid_t pid, bool stack = false) {
  json_object* root = json_tokener_parse(out.c_str());
  if (!root) return "not JSON: " + out.substr(0, 200);
  std::string bad;
  json_object* arr = nullptr;
  std::set<long> tids;
  bool main_seen = false;
  if (!json_object_object_get_ex(root, "threads", &arr) || !json_object_is_type(arr, json_type_array)) {
    bad = "no threads array";
  } else {
    for (size_t i = 0; i < json_object_array_length(arr) && bad.empty(); i++) {
      json_object* t = json_object_array_get_idx(arr, i);
      json_object *jt, *jr, *js;
      if (!json_object_object_get_ex(t, "tid", &jt) || !json_object_object_get_ex(t, "role", &jr)) {
        bad = "row without tid or role";
        break;
      }
      long tid = json_object_get_int64(jt);
      std::string role = json_object_get_string(jr);
      std::string start = json_object_object_get_ex(t, "start", &js) && js ? json_object_get_string(js) : "";
      if (!tids.insert(tid).second) bad = "tid listed twice: " + std::to_string(tid);
      if (role == "main") {
        main_seen = tid == pid;
      } else if (role == "app") {
        if (!stack && start != "load_worker" && start != "load_creator")
          bad = "app thread " + std::to_string(tid) + " with start '" + start + "'";
      } else if (role != "shim" && !(role == "foreign" && ks::SanitizerThread(pid, tid))) {
        // Every thread of this program comes from pthread_create (but a
        // sanitizer runtime's own thread).
        bad = "thread " + std::to_string(tid) + " listed as " + role + ": " +
              json_object_to_json_string(t);
      }
    }
    if (bad.empty() && !main_seen) bad = "main thread missing";
  }
  json_object_put(root);
  return bad;
}

TEST(Load, HundredClientsWhileThreadsChurn) {
  const int kClients = 100;
  Target t(ks::ProgPath("load_target"), {"1000", "4"});
  ASSERT_EQ(t.WaitFor("ready"), "ready");
  ASSERT_TRUE(t.WaitSocket());
  t.Send("go");
  std::atomic<bool> stop{false};
  std::atomic<int> answers{0}, failures{0};
  std::mutex mu;
  std::string first_bad;
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; i++) {
    // Half list, half dump every thread's stack.
    bool stack = i % 2;
    clients.emplace_back([&, stack] {
      while (!stop) {
        std::vector<std::string> args = {"--json", "--all", std::to_string(t.pid())};
        if (stack) args.insert(args.begin(), "--stack");
        ks::Result r = ks::Inject(args, 60000);
        std::string bad = r.code != 0 ? "exit " + std::to_string(r.code) + ": " + r.err
                                      : CheckListing(r.out, t.pid(), stack);
        answers++;
        if (!bad.empty()) {
          failures++;
          std::lock_guard<std::mutex> g(mu);
          if (first_bad.empty()) first_bad = bad;
        }
      }
    });
  }
  std::string done = t.WaitFor("done", 120000);
  stop = true;
  for (auto& c : clients) c.join();
  EXPECT_EQ(done, "done created=4000 joined=3000 detached=1000") << t.Stderr();
  EXPECT_GE(answers.load(), kClients);
  EXPECT_EQ(failures.load(), 0) << first_bad;
  // Still serving, the program intact: its shared counter checks out at exit.
  ks::Result r = ks::Inject({"--json", std::to_string(t.pid())});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(CheckListing(r.out, t.pid()), "");
  t.Send("quit");
  EXPECT_EQ(t.Wait(30000), 0) << t.Stderr();
  EXPECT_EQ(t.Stderr(), "");
  RecordProperty("answers", answers.load());
}

}  // namespace

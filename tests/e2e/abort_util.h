// Helpers of the abort tests (abort_test.cc, abort_storm_test.cc): a test
// program with its victims and a protocol connection, the injector's JSON
// report, and waiting for a thread to be where a test wants it.
#ifndef KS_TESTS_ABORT_UTIL_H
#define KS_TESTS_ABORT_UTIL_H

#include <fcntl.h>
#include <gtest/gtest.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/harness.h"

namespace ks {
namespace abort_test {


using Clock = std::chrono::steady_clock;
using Fields = std::map<std::string, std::string>;

inline pid_t TidFrom(const std::string& line) {
  size_t p = line.find("tid=");
  return p == std::string::npos ? 0 : atoi(line.c_str() + p + 4);
}

inline std::string Field(const std::string& line, const std::string& key) {
  size_t p = line.find(key + "=");
  if (p == std::string::npos) return "";
  size_t e = line.find(' ', p);
  return line.substr(p + key.size() + 1, e == std::string::npos ? e : e - p - key.size() - 1);
}

// /proc/PID/task/TID/syscall: "running", or the number of the system call
// the thread sleeps in.
inline std::string SyscallOf(pid_t pid, pid_t tid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/syscall");
  std::string w;
  f >> w;
  return w;
}

// CPU time of a thread, in clock ticks.
inline long CpuTicks(pid_t pid, pid_t tid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t p = all.rfind(')');
  if (p == std::string::npos) return 0;
  std::istringstream in(all.substr(p + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; i++) {
    if (i == 14) utime = atol(field.c_str());
    if (i == 15) stime = atol(field.c_str());
  }
  return utime + stime;
}

// The number of the system call glibc makes, on this machine, for CALL:
// "read" (a pipe), "write" (into a full pipe), "accept", "poll", "futex" (a
// condition wait), "sleep" (nanosleep, which the shim's sleep calls) or ""
// (none: ""). Found by making the call on a thread of this test and reading
// /proc/self/task/TID/syscall, once per call; "?" if it never blocked.
inline std::string SyscallNr(const std::string& call) {
  static std::map<std::string, std::string> known;
  if (call.empty()) return "";
  auto it = known.find(call);
  if (it != known.end()) return it->second;
  int p[2], lfd = -1;
  if (pipe(p) != 0) return "?";
  struct sockaddr_in a = {};
  socklen_t alen = sizeof a;
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (call == "accept") {
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (bind(lfd, (sockaddr*)&a, sizeof a) != 0 || listen(lfd, 1) != 0 ||
        getsockname(lfd, (sockaddr*)&a, &alen) != 0)
      return "?";
  }
  if (call == "write") {  // fill the pipe, so that the next write blocks
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    char buf[4096] = {};
    while (write(p[1], buf, sizeof buf) > 0) {
    }
    fcntl(p[1], F_SETFL, 0);
  }
  std::mutex mu;
  std::condition_variable cv;
  bool go = false;
  std::atomic<pid_t> tid{0};
  std::thread th([&] {
    tid = gettid();
    char c[4096];
    if (call == "read") {
      ssize_t r = read(p[0], c, 1);
      (void)r;
    } else if (call == "write") {
      ssize_t r = write(p[1], c, 1);
      (void)r;
    } else if (call == "accept") {
      int fd = accept(lfd, nullptr, nullptr);
      if (fd >= 0) close(fd);
    } else if (call == "poll") {
      struct pollfd pf = {p[0], POLLIN, 0};
      poll(&pf, 1, -1);
    } else if (call == "futex") {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return go; });
    } else if (call == "sleep") {
      struct timespec ts = {0, 300 * 1000000L};
      nanosleep(&ts, nullptr);
    }
  });
  std::string nr = "?";
  for (int i = 0; i < 2500; i++) {
    std::string w = tid ? SyscallOf(getpid(), tid) : "";
    if (!w.empty() && isdigit((unsigned char)w[0])) {
      nr = w;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // Let it go.
  if (call == "read" || call == "poll") {
    ssize_t w = write(p[1], "x", 1);
    (void)w;
  } else if (call == "write") {
    char buf[65536];
    ssize_t r = read(p[0], buf, sizeof buf);
    (void)r;
  } else if (call == "accept") {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(c, (sockaddr*)&a, sizeof a) == 0) close(c);
  } else if (call == "futex") {
    std::lock_guard<std::mutex> g(mu);
    go = true;
    cv.notify_all();
  }
  th.join();
  close(p[0]);
  close(p[1]);
  if (lfd >= 0) close(lfd);
  known[call] = nr;
  return nr;
}

// Waits until thread TID, which spins, has run TICKS more clock ticks (a
// tick is 10 ms): it ran that long in the state it is in now.
inline bool RunsOn(pid_t pid, pid_t tid, long ticks) {
  long t0 = CpuTicks(pid, tid);
  for (int i = 0; i < 5000; i++) {
    if (CpuTicks(pid, tid) >= t0 + ticks) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

// Waits until the thread sleeps in system call NR (e.g. SyscallNr("read")),
// or, with NR empty, until it has run a few ticks.
inline bool WaitSettled(pid_t pid, pid_t tid, const std::string& nr) {
  for (int i = 0; i < 2000; i++) {
    if (nr.empty() ? CpuTicks(pid, tid) >= 3 : SyscallOf(pid, tid) == nr) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

// A program of tests/progs with its victims and a protocol connection.
class Prog {
 public:
  // abort_victims' malloc and storm victims loop on malloc/free without a
  // cleanup handler: an abort between the two leaks that block, as a
  // pthread_cancel would. LeakSanitizer is told so and checks the rest.
  explicit Prog(const std::string& name, std::vector<std::string> env = {})
      : t_(ks::ProgPath(name), {}, WithSuppressions(name, std::move(env))) {
    ready_ = t_.WaitFor("ready");
    EXPECT_FALSE(ready_.empty());
    EXPECT_TRUE(t_.WaitSocket());
    client_ = std::make_unique<ks::RawClient>(t_.pid());
    EXPECT_TRUE(client_->ok());
    client_->ReadLine();  // greeting
  }
  // The program is asked to quit and must exit 0 with nothing on stderr:
  // LeakSanitizer's check at exit, and any report a sanitizer prints after
  // the test's own checks, count. Not after a fatal failure (the program may
  // be stuck where the test stopped; the harness kills it).
  ~Prog() {
    client_.reset();
    if (!::testing::Test::HasFatalFailure()) t_.ExpectCleanExit();
  }
  ks::Target& t() { return t_; }
  const std::string& ready() const { return ready_; }

  static std::vector<std::string> WithSuppressions(const std::string& name,
                                                   std::vector<std::string> env) {
    if (name == "abort_victims") env.push_back(ks::LeakSuppressions({"run_malloc", "run_storm"}));
    return env;
  }

  // Starts a victim of KIND; returns its tid once it runs its loop.
  pid_t Start(const std::string& kind) {
    int idx = n_++;
    t_.Send("start " + kind);
    std::string l = WaitFor("victim " + std::to_string(idx) + " ");
    EXPECT_NE(l, "") << kind;
    return TidFrom(l);
  }
  int last() const { return n_ - 1; }

  // One request; the reply's fields ("verb" is ok or err).
  Fields Request(const std::string& line) {
    auto r = client_->Request(line);
    EXPECT_FALSE(r.empty()) << line;
    Fields f = r.empty() ? Fields{} : ks::ParseLine(r.back());
    std::string d = f["verb"] + " " + f["state"] + " " + f["abort"] + " " + f["abort_how"] + " " +
                    f["pending"] + f["msg"];
    if (history_.empty() || history_.back() != d) history_.push_back(d);
    return f;
  }
  Fields End(pid_t tid, bool force = false) {
    return Request("end tid=" + std::to_string(tid) + " mode=abort" + (force ? " force=1" : ""));
  }
  // "status" also retries a pending abort, as the injector's polls do.
  Fields Status(pid_t tid) { return Request("status tid=" + std::to_string(tid)); }

  // Asks, then polls, until the thread is gone or TIMEOUT_MS passed.
  // Returns true if gone; *LAST gets the last reply.
  bool AbortUntilGone(pid_t tid, bool force, Fields* last, int timeout_ms = 10000) {
    auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
    Fields f = End(tid, force);
    while (Clock::now() < end) {
      if (last) *last = f;
      if (f["state"] == "ended" || (f["verb"] == "err" && f["code"] == "no-thread"))
        return WaitExit(tid);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      f = Status(tid);
    }
    return false;
  }

  // Asks, then polls, until the reply satisfies PRED.
  Fields AbortUntil(pid_t tid, const std::function<bool(Fields&)>& pred, int timeout_ms = 10000) {
    auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
    Fields f = End(tid);
    while (Clock::now() < end && !pred(f)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      f = Status(tid);
    }
    return f;
  }

  // Main's own try of the lock NAME: "free" or "busy".
  std::string TryLock(const std::string& name) {
    t_.Send("trylock " + name);
    std::string l = WaitFor("trylock " + name + " ");
    return l.substr(l.rfind(' ') + 1);
  }

  // Like Target::WaitFor, remembering every line read.
  std::string WaitFor(const std::string& prefix, int timeout_ms = 10000) {
    auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < end) {
      std::string l = t_.ReadLine(static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count()));
      if (l.empty()) break;
      history_.push_back("< " + l);
      if (l.rfind(prefix, 0) == 0) return l;
    }
    return "";
  }

  std::string History() const {
    std::string s;
    for (auto& h : history_) s += "  " + h + "\n";
    return s + "stderr: " + t_.Stderr();
  }

  bool WaitExit(pid_t tid) {
    for (int i = 0; i < 5000 && ks::TaskExists(t_.pid(), tid); i++)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return !ks::TaskExists(t_.pid(), tid);
  }

  std::string Join(int idx) {
    t_.Send("join " + std::to_string(idx));
    return WaitFor("joined " + std::to_string(idx));
  }

  // The program's own check: heartbeat thread alive, malloc under
  // contention, its mutexes free (but EXCEPT).
  void ExpectHealthy(const std::string& except = "") {
    t_.Send(except.empty() ? "check" : "check but " + except);
    std::string l;
    do {
      l = t_.ReadLine(20000);
    } while (!l.empty() && l.rfind("healthy", 0) != 0 && l.rfind("unhealthy", 0) != 0);
    EXPECT_EQ(l.rfind("healthy beats=", 0), 0u) << l << "\nstderr: " << t_.Stderr();
    EXPECT_TRUE(t_.Alive());
  }

 private:
  ks::Target t_;
  std::string ready_;
  std::unique_ptr<ks::RawClient> client_;
  int n_ = 0;
  std::vector<std::string> history_;
};

// ---- C: every kind of thread leaves, runs its cleanup handler, and is
// joined as cancelled; the program stays healthy. ----

// The injector's report for an abort: JSON of killshim-inject --json.
struct Report {
  int code = -1;
  std::map<std::string, std::string> top;    // scalar members
  std::map<std::string, std::string> abort;  // "how", "note"
  std::vector<std::string> cleanups, locks_left;
  std::string raw;
};

inline Report InjectAbort(pid_t pid, pid_t tid, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {"--mode", "abort", "--json"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back(std::to_string(pid));
  args.push_back(std::to_string(tid));
  ks::Result r = ks::Inject(args);
  Report rep;
  rep.code = r.code;
  rep.raw = r.out + r.err;
  json_object* root = json_tokener_parse(r.out.c_str());
  if (!root) return rep;
  json_object_object_foreach(root, k, v) {
    if (v && json_object_get_type(v) != json_type_object && json_object_get_type(v) != json_type_array)
      rep.top[k] = json_object_get_string(v);
  }
  json_object* ab;
  if (json_object_object_get_ex(root, "abort", &ab) && ab) {
    json_object_object_foreach(ab, k2, v2) {
      if (!v2) continue;
      if (json_object_get_type(v2) == json_type_array) {
        auto& list = std::string(k2) == "cleanups" ? rep.cleanups : rep.locks_left;
        for (size_t i = 0; i < json_object_array_length(v2); i++)
          list.push_back(json_object_get_string(json_object_array_get_idx(v2, i)));
      } else {
        rep.abort[k2] = json_object_get_string(v2);
      }
    }
  }
  json_object_put(root);
  return rep;
}

}  // namespace abort_test
}  // namespace ks

#endif

// killshim-inject --stack, end to end: stacks of threads parked in known
// places, blocked-on and lock owners, deadlock cycles, calls that must not be
// cut short by a dump, threads that cannot or do not answer, and dumps racing
// with threads that come and go.
#include <errno.h>
#include <gtest/gtest.h>
#include <json-c/json.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"

namespace {

using ks::Inject;
using ks::Target;

struct Frame {
  std::string symbol, module;
  bool exact = false;
};

struct Thr {
  pid_t tid = 0;
  std::string name, role, state, captured, reason, in_call, syscall, wait_kind, wait_obj;
  long owner = -1;
  std::vector<Frame> frames;
};

struct Cycle {
  std::vector<pid_t> tids;
  std::vector<std::pair<pid_t, pid_t>> waits;  // tid, waits_for
  std::vector<std::string> objects;
  std::string text;
};

struct Dump {
  bool parsed = false;
  std::map<pid_t, Thr> threads;
  std::vector<Cycle> deadlocks;
};

std::string Str(json_object* o, const char* key) {
  json_object* v;
  if (!json_object_object_get_ex(o, key, &v) || !v) return "";
  return json_object_get_string(v);
}

Dump ParseDump(const std::string& text) {
  Dump d;
  json_object* root = json_tokener_parse(text.c_str());
  if (!root) return d;
  json_object *arr, *dl;
  if (json_object_object_get_ex(root, "threads", &arr) &&
      json_object_object_get_ex(root, "deadlocks", &dl)) {
    d.parsed = true;
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
      json_object* j = json_object_array_get_idx(arr, i);
      Thr t;
      t.tid = atoi(Str(j, "tid").c_str());
      t.name = Str(j, "name");
      t.role = Str(j, "role");
      t.state = Str(j, "state");
      t.captured = Str(j, "captured");
      t.reason = Str(j, "reason");
      t.in_call = Str(j, "in_call");
      json_object *sc, *w, *frames;
      if (json_object_object_get_ex(j, "syscall", &sc) && sc) t.syscall = Str(sc, "name");
      if (json_object_object_get_ex(j, "waits_for", &w) && w) {
        t.wait_kind = Str(w, "kind");
        t.wait_obj = Str(w, "object");
        std::string o = Str(w, "owner");
        if (!o.empty()) t.owner = atol(o.c_str());
      }
      if (json_object_object_get_ex(j, "frames", &frames)) {
        for (size_t k = 0; k < json_object_array_length(frames); k++) {
          json_object* f = json_object_array_get_idx(frames, k);
          t.frames.push_back({Str(f, "symbol"), Str(f, "module"), Str(f, "exact") == "true"});
        }
      }
      d.threads[t.tid] = t;
    }
    for (size_t i = 0; i < json_object_array_length(dl); i++) {
      json_object* j = json_object_array_get_idx(dl, i);
      Cycle c;
      c.text = Str(j, "text");
      json_object *tids, *edges;
      if (json_object_object_get_ex(j, "tids", &tids))
        for (size_t k = 0; k < json_object_array_length(tids); k++)
          c.tids.push_back(json_object_get_int(json_object_array_get_idx(tids, k)));
      if (json_object_object_get_ex(j, "edges", &edges))
        for (size_t k = 0; k < json_object_array_length(edges); k++) {
          json_object* e = json_object_array_get_idx(edges, k);
          c.waits.push_back({atoi(Str(e, "tid").c_str()), atoi(Str(e, "waits_for").c_str())});
          c.objects.push_back(Str(e, "object"));
        }
      d.deadlocks.push_back(c);
    }
  }
  json_object_put(root);
  return d;
}

bool HasFrame(const Thr& t, const std::string& symbol) {
  for (const Frame& f : t.frames)
    if (f.symbol.find(symbol) != std::string::npos) return true;
  return false;
}

std::string Frames(const Thr& t) {
  std::string s;
  for (const Frame& f : t.frames) s += "  " + f.symbol + " (" + f.module + ")\n";
  return s;
}

// The program's own lines: a word, then words and key=value pairs.
std::map<std::string, std::string> Fields(const std::string& line) {
  std::map<std::string, std::string> m;
  size_t i = 0;
  while (i < line.size()) {
    size_t j = line.find(' ', i);
    if (j == std::string::npos) j = line.size();
    std::string w = line.substr(i, j - i);
    size_t eq = w.find('=');
    if (eq != std::string::npos) m[w.substr(0, eq)] = w.substr(eq + 1);
    else if (!m.count("verb")) m["verb"] = w;
    else m["arg"] = w;
    i = j + 1;
  }
  return m;
}

// killshim-inject --stack --json PID EXTRA... (getopt takes options after
// the PID too).
Dump StackJson(pid_t pid, std::vector<std::string> extra = {}, int timeout_ms = 60000,
               ks::Result* res = nullptr) {
  std::vector<std::string> args = {"--stack", "--json", std::to_string(pid)};
  args.insert(args.end(), extra.begin(), extra.end());
  ks::Result r = Inject(args, timeout_ms);
  if (res) *res = r;
  EXPECT_EQ(r.code, 0) << r.err;
  Dump d = ParseDump(r.out);
  EXPECT_TRUE(d.parsed) << r.out;
  // The program's threads only: not a sanitizer runtime's own (harness.h).
  for (auto it = d.threads.begin(); it != d.threads.end();)
    it = it->second.role == "foreign" && ks::SanitizerThread(pid, it->first) ? d.threads.erase(it)
                                                                             : std::next(it);
  return d;
}

long NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

// Reads the target's lines into LINES until DONE(lines) or the timeout.
bool ReadUntil(Target& t, std::vector<std::string>& lines,
               const std::function<bool(const std::vector<std::string>&)>& done,
               int timeout_ms = 20000) {
  long end = NowMs() + timeout_ms;
  while (!done(lines)) {
    long left = end - NowMs();
    if (left <= 0) return false;
    std::string l = t.ReadLine((int)left);
    if (!l.empty()) lines.push_back(l);
  }
  return true;
}

bool HasLine(const std::vector<std::string>& lines, const std::string& prefix) {
  for (const auto& l : lines)
    if (l.compare(0, prefix.size(), prefix) == 0) return true;
  return false;
}

// tests/progs/parked: a thread in each known place.
struct Parked {
  Target t;
  pid_t main = 0, spin = 0, read = 0, cond = 0, mutex = 0, blocked = 0;
  std::string mutex_addr;
  Parked() : t(ks::ProgPath("parked")) {
    auto tids = Fields(t.WaitFor("tids "));
    main = atoi(tids["main"].c_str());
    spin = atoi(tids["spin"].c_str());
    read = atoi(tids["read"].c_str());
    cond = atoi(tids["cond"].c_str());
    mutex = atoi(tids["mutex"].c_str());
    blocked = atoi(tids["blocked"].c_str());
    mutex_addr = Fields(t.WaitFor("mutex="))["mutex"];
    EXPECT_EQ(t.WaitFor("ready"), "ready");
    EXPECT_TRUE(t.WaitSocket());
  }
  // Every parked thread takes its next step; the program ends cleanly with
  // its heap intact.
  void ReleaseAndQuit() {
    t.Send("release");
    std::vector<std::string> lines;
    EXPECT_TRUE(ReadUntil(t, lines, [](auto& l) { return HasLine(l, "released"); }));
    for (const char* d : {"done spin", "done read x", "done cond", "done mutex", "done blocked"})
      EXPECT_TRUE(HasLine(lines, d)) << d;
    t.Send("quit");
    EXPECT_EQ(t.WaitFor("bye"), "bye");
    EXPECT_EQ(t.Wait(), 0);
    EXPECT_EQ(t.Stderr(), "");
  }
  long Progress() {
    t.Send("progress");
    return atol(Fields(t.WaitFor("progress "))["spin"].c_str());
  }
  // The busy thread's counter moves within 10 s.
  bool KeepsCounting() {
    long a = Progress(), deadline = ks::NowMs() + 10000;
    while (ks::NowMs() < deadline && t.Alive())
      if (Progress() != a) return true;
    return false;
  }
  // "blocking NAME tid=T" for each of NAMES, or the "timed NAME tid=T" lines
  // of timed waits: NAME -> tid.
  std::map<std::string, pid_t> TidsOf(const std::string& verb, size_t n) {
    std::map<std::string, pid_t> tids;
    long deadline = ks::NowMs() + 20000;
    while (tids.size() < n && ks::NowMs() < deadline) {
      auto m = Fields(t.WaitFor(verb + " ", (int)std::max(1L, deadline - ks::NowMs())));
      if (m["verb"] == verb) tids[m["arg"]] = atoi(m["tid"].c_str());
    }
    return tids;
  }
};

TEST(Stack, ParkedThreadsShowWhereTheyAre) {
  Parked p;
  Dump d = StackJson(p.t.pid());
  ASSERT_EQ(d.threads.size(), 6u);
  const Thr &spin = d.threads[p.spin], &rd = d.threads[p.read], &cond = d.threads[p.cond],
             &mx = d.threads[p.mutex], &bl = d.threads[p.blocked], &mn = d.threads[p.main];
  EXPECT_EQ(spin.captured, "signal");
  EXPECT_TRUE(HasFrame(spin, "park_spin")) << Frames(spin);
  EXPECT_TRUE(spin.frames.at(0).exact);
  EXPECT_TRUE(HasFrame(rd, "park_read")) << Frames(rd);
  EXPECT_EQ(rd.syscall, "read");
  EXPECT_TRUE(HasFrame(cond, "park_cond")) << Frames(cond);
  EXPECT_TRUE(HasFrame(cond, "pthread_cond_wait")) << Frames(cond);
  EXPECT_EQ(cond.syscall, "futex");
  EXPECT_TRUE(HasFrame(mx, "park_mutex")) << Frames(mx);
  EXPECT_EQ(mx.wait_kind, "mutex");
  EXPECT_EQ(mx.wait_obj, p.mutex_addr);
  EXPECT_EQ(mx.owner, p.main);
  EXPECT_TRUE(HasFrame(mn, "main")) << Frames(mn);
  EXPECT_EQ(mn.role, "main");
  // Blocks every signal: reported with its system call, not waited for.
  EXPECT_EQ(bl.captured, "none");
  EXPECT_EQ(bl.reason, "signals-blocked");
  // In its raw read of a pipe, until "release".
  EXPECT_EQ(bl.syscall, "read");
  for (auto& [tid, t] : d.threads)
    for (const Frame& f : t.frames) EXPECT_NE(f.module, "libkillshim.so") << tid;
  EXPECT_TRUE(d.deadlocks.empty());

  // The text form and the plain listing say the same in short.
  ks::Result text = Inject({"--stack", std::to_string(p.t.pid())});
  ASSERT_EQ(text.code, 0) << text.err;
  std::string held = "waits for mutex " + p.mutex_addr + " held by " + std::to_string(p.main);
  EXPECT_NE(text.out.find(held), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("park_spin+0x"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("no stack: it blocks every signal"), std::string::npos) << text.out;
  ks::Result list = Inject({std::to_string(p.t.pid())});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_NE(list.out.find(held), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find("deadlock:"), std::string::npos) << list.out;

  // The busy thread was signalled and keeps counting; all threads go on.
  EXPECT_TRUE(p.KeepsCounting());
  p.ReleaseAndQuit();
}

TEST(Stack, OneThreadAndNoSuchThread) {
  Parked p;
  Dump d = StackJson(p.t.pid(), {std::to_string(p.cond)});
  ASSERT_EQ(d.threads.size(), 1u);
  EXPECT_TRUE(HasFrame(d.threads[p.cond], "park_cond"));
  ks::Result r = Inject({"--stack", std::to_string(p.t.pid()), "4194300"});
  EXPECT_EQ(r.code, 8) << r.err;
  p.ReleaseAndQuit();
}

// A thread the shim did not see start is found in /proc/self/task and
// signalled by its tid.
TEST(Stack, ForeignThreadIsDumped) {
  Parked p;
  p.t.Send("foreign");
  pid_t foreign = atoi(Fields(p.t.WaitFor("foreign "))["tid"].c_str());
  ASSERT_GT(foreign, 0);
  Dump d = StackJson(p.t.pid());
  const Thr& f = d.threads[foreign];
  EXPECT_EQ(f.role, "foreign");
  EXPECT_EQ(f.captured, "signal");
  EXPECT_TRUE(HasFrame(f, "park_foreign")) << Frames(f);
  p.ReleaseAndQuit();
}

// A thread running a handler of its own on its alternate signal stack is
// not unwound there (such stacks are small); the dump says so.
TEST(Stack, ThreadOnItsAlternateStackIsReported) {
  Parked p;
  p.t.Send("altstack");
  pid_t tid = atoi(Fields(p.t.WaitFor("onstack "))["tid"].c_str());
  ASSERT_GT(tid, 0);
  Dump d = StackJson(p.t.pid());
  EXPECT_EQ(d.threads[tid].captured, "none");
#ifdef __SANITIZE_THREAD__
  // ThreadSanitizer's wrapper runs a program's handler with every signal
  // blocked: the shim cannot signal the thread, and says so.
  EXPECT_EQ(d.threads[tid].reason, "signals-blocked");
#else
  EXPECT_EQ(d.threads[tid].reason, "altstack");
#endif
  EXPECT_TRUE(HasFrame(d.threads[p.cond], "park_cond"));
  p.ReleaseAndQuit();
}

// N dumps of smallstack's thread TID: each one taken by its signal, with
// small_spin, the function it runs on the small stack, among its frames.
void ExpectSmallSpinDumped(pid_t pid, pid_t tid, int n) {
  for (int i = 0; i < n; i++) {
    Dump d = StackJson(pid);
    const Thr& s = d.threads[tid];
    EXPECT_EQ(s.captured, "signal") << i << " " << s.reason;
    EXPECT_TRUE(HasFrame(s, "small_spin")) << i << " " << Frames(s);
  }
}

// A thread on a small stack of its own, whose program installs every
// real-time handler with SA_ONSTACK and gives each thread an alternate stack,
// as Go's runtime does for goroutines (2 KiB stacks): the dump's signal is
// taken on the alternate stack, never on the small one, and the thread is
// still unwound there. Taken on the small stack, it wrote over the memory
// below it (tests/progs/smallstack.c's canary); in a cgo program under the
// shim, 30 dumps killed it every time ("fatal error: unknown caller pc").
TEST(Stack, SmallStackOfAProgramThatAsksForSaOnstackIsNotWrittenBelow) {
  Target t(ks::ProgPath("smallstack"));
  pid_t tid = atoi(Fields(t.WaitFor("ready "))["tid"].c_str());
  ASSERT_GT(tid, 0);
  ExpectSmallSpinDumped(t.pid(), tid, 20);
  t.Send("check");
  EXPECT_EQ(t.ReadLine(), "canary intact");
  t.Send("progress");
  long before = atol(Fields(t.WaitFor("progress "))["spin"].c_str());
  usleep(20 * 1000);
  t.Send("progress");
  EXPECT_GT(atol(Fields(t.WaitFor("progress "))["spin"].c_str()), before);
  t.ExpectCleanExit();
}

// The same thread in a C program with a Go c-shared library: Go installs its
// handlers with SA_ONSTACK but none on the shim's numbers (they have one), so
// only the library's marker tells the shim (signals.h). libgort.so stands in
// for it: preloaded after the shim, its constructor runs before the shim's,
// as a Go library the program links does; with dlopen, after. Without this,
// a Go program so made died under 30 dumps 4 times in 4 ("fatal error:
// fault"), and the canary here was overwritten.
TEST(Stack, SmallStackBesideAGoLibraryIsNotWrittenBelow) {
  const std::string lib = ks::ProgPath("libgort.so");
  for (bool preloaded : {true, false}) {
    std::vector<std::string> args = {"lib"}, env;
    if (preloaded)
      env = {"LD_PRELOAD=" + ks::Preload() + ":" + lib};
    else
      args.push_back(lib);
    Target t(ks::ProgPath("smallstack"), args, env, /*preload=*/!preloaded);
    pid_t tid = atoi(Fields(t.WaitFor("ready "))["tid"].c_str());
    ASSERT_GT(tid, 0) << preloaded;
    SCOPED_TRACE(preloaded ? "preloaded" : "dlopened");
    ExpectSmallSpinDumped(t.pid(), tid, 10);
    t.Send("check");
    EXPECT_EQ(t.ReadLine(), "canary intact") << preloaded;
    t.ExpectCleanExit();
  }
}

// Only Go's SA_ONSTACK moves the shim's handlers: Rust's runtime asks for it
// on SIGSEGV with alternate stacks of 8 KiB, where a dump is refused
// (stack_capture.c), and its threads run on stacks of their own that a dump
// fits on.
TEST(Stack, SaOnstackOfAnotherRuntimeLeavesTheShimOnTheThreadsStack) {
  Target t(ks::ProgPath("smallstack"), {"rust"});
  pid_t tid = atoi(Fields(t.WaitFor("ready "))["tid"].c_str());
  ASSERT_GT(tid, 0);
  ExpectSmallSpinDumped(t.pid(), tid, 3);
  t.ExpectCleanExit();
}

// A thread that blocks every signal must not make the dump wait, whatever
// the answer timeout: with 30 s allowed, the run finishes long before the
// harness's 20 s limit.
TEST(Stack, ThreadBlockingSignalsIsNotWaitedFor) {
  Parked p;
  ks::Result r;
  Dump d = StackJson(p.t.pid(), {"--timeout", "30"}, 20000, &r);
  EXPECT_EQ(r.err.find("timed out"), std::string::npos) << r.err;
  EXPECT_EQ(d.threads[p.blocked].reason, "signals-blocked");
  EXPECT_EQ(d.threads[p.spin].captured, "signal");
  p.ReleaseAndQuit();
}

// A traced thread takes the dump signal into a ptrace stop and never
// answers: it is reported as such when the answer time is up, the others
// are dumped, and when the tracer lets the signal through late, the thread
// shrugs it off and keeps working.
TEST(Stack, ThreadThatDoesNotAnswerIsReported) {
  Parked p;
  ASSERT_EQ(ptrace(PTRACE_SEIZE, p.spin, nullptr, nullptr), 0) << strerror(errno);
  ks::Result r;
  Dump d = StackJson(p.t.pid(), {"--timeout", "0.5"}, 20000, &r);
  EXPECT_EQ(d.threads[p.spin].captured, "none");
  EXPECT_EQ(d.threads[p.spin].reason, "no-answer");
  EXPECT_TRUE(HasFrame(d.threads[p.cond], "park_cond"));
  int st = 0;
  ASSERT_EQ(waitpid(p.spin, &st, __WALL), p.spin);
  ASSERT_TRUE(WIFSTOPPED(st));
  int sig = WSTOPSIG(st);
  EXPECT_GE(sig, SIGRTMIN);
  // While it sits in the stop, a dump says so instead of signalling again.
  Dump stopped = StackJson(p.t.pid(), {std::to_string(p.spin)});
  EXPECT_EQ(stopped.threads[p.spin].captured, "none");
  EXPECT_EQ(stopped.threads[p.spin].reason, "stopped");
  ASSERT_EQ(ptrace(PTRACE_DETACH, p.spin, nullptr, (void*)(long)sig), 0) << strerror(errno);
  EXPECT_TRUE(p.KeepsCounting());
  Dump again = StackJson(p.t.pid(), {std::to_string(p.spin)});
  EXPECT_EQ(again.threads[p.spin].captured, "signal");
  EXPECT_TRUE(HasFrame(again.threads[p.spin], "park_spin"));
  p.ReleaseAndQuit();
}

// Calls that a signal handler would cut short (signal(7)) are not: threads
// in them are read from the registers their wrapper saved, dump after dump,
// and each call lasts its full time and returns as it would have. Every
// wrapped call with a timeout, the fortified __poll_chk and __ppoll_chk too.
TEST(Stack, BlockingCallsAreNotCutShort) {
  Parked p;
  struct Call {
    const char *cmd, *in_call;
    long ms;
    int rc, err;  // what the call returns when its time is up
  };
  const std::vector<Call> calls = {
      {"sleep 3", "sleep", 3000, 0, 0},
      {"usleep 2000", "usleep", 2000, 0, 0},
      {"nanosleep 2000", "nanosleep", 2000, 0, 0},
      {"clock 2000", "clock_nanosleep", 2000, 0, 0},
      {"poll 2000", "poll", 2000, 0, 0},
      {"ppoll 2000", "ppoll", 2000, 0, 0},
      {"select 2000", "select", 2000, 0, 0},
      {"pselect 2000", "pselect", 2000, 0, 0},
      {"epoll 2000", "epoll_wait", 2000, 0, 0},
      {"epoll_pwait 2000", "epoll_pwait", 2000, 0, 0},
      {"epoll_pwait2 2000", "epoll_pwait2", 2000, 0, 0},
      {"poll_chk 2000", "poll", 2000, 0, 0},
      {"ppoll_chk 2000", "ppoll", 2000, 0, 0},
      {"sigtimedwait 2000", "sigtimedwait", 2000, -1, EAGAIN},
      {"sem_timedwait 2000", "sem_timedwait", 2000, -1, ETIMEDOUT},
      {"sem_clockwait 2000", "sem_clockwait", 2000, -1, ETIMEDOUT},
      {"semtimedop 2000", "semtimedop", 2000, -1, EAGAIN},
  };
  auto name_of = [](const Call& c) {
    return std::string(c.cmd).substr(0, std::string(c.cmd).find(' '));
  };
  for (const Call& c : calls) p.t.Send(c.cmd);
  std::map<std::string, pid_t> tid_of = p.TidsOf("timed", calls.size());
  ASSERT_EQ(tid_of.size(), calls.size());
  p.t.Send("pause");
  tid_of["pause"] = atoi(Fields(p.t.WaitFor("paused "))["tid"].c_str());

  // Each thread is seen inside its call (it prints before it calls).
  ks::RawClient c(p.t.pid());
  ASSERT_TRUE(c.ok());
  c.ReadLine();
  std::map<pid_t, int> seen_in_call;
  auto count_in_calls = [&](const std::vector<std::string>& reply) {
    int n = 0;
    for (auto& l : reply) {
      auto m = ks::ParseLine(l);
      for (auto& [name, tid] : tid_of)
        if (m["tid"] == std::to_string(tid) && m["via"] == "call") {
          n++;
          seen_in_call[tid]++;
        }
    }
    return n;
  };
  std::vector<std::string> reply;
  long end = NowMs() + 5000;
  do reply = c.Request("stack");
  while (count_in_calls(reply) < (int)tid_of.size() && NowMs() < end);
  ASSERT_EQ(count_in_calls(reply), (int)tid_of.size()) << ::testing::PrintToString(reply);

  // Twenty dumps while they wait, and one through the injector. Each thread
  // is held in its call by several of them (the calls last 2 s or more).
  seen_in_call.clear();
  for (int i = 0; i < 20; i++) {
    reply = c.Request("stack");
    ASSERT_FALSE(reply.empty());
    EXPECT_EQ(reply.back().rfind("ok threads=", 0), 0u) << reply.back();
    count_in_calls(reply);
  }
  for (auto& [name, tid] : tid_of) EXPECT_GE(seen_in_call[tid], 3) << name;
  Dump d = StackJson(p.t.pid());
  for (const Call& call : calls) {
    const Thr& t = d.threads[tid_of[name_of(call)]];
    if (t.captured == "call") {   // unless the call is already over
      EXPECT_EQ(t.in_call, call.in_call) << name_of(call);
      EXPECT_TRUE(HasFrame(t, "park_timed")) << name_of(call) << "\n" << Frames(t);
    }
  }
  EXPECT_TRUE(HasFrame(d.threads[tid_of["pause"]], "park_pause"));
  EXPECT_EQ(d.threads[tid_of["pause"]].in_call, "pause");

  std::vector<std::string> lines;
  ASSERT_TRUE(ReadUntil(p.t, lines, [&](auto& l) {
    int n = 0;
    for (auto& x : l) n += x.rfind("result ", 0) == 0;
    return n == (int)calls.size();
  }));
  for (const Call& call : calls) {
    std::string name = name_of(call);
    std::map<std::string, std::string> res;
    for (auto& l : lines)
      if (l.rfind("result " + name + " ", 0) == 0) res = Fields(l);
    ASSERT_FALSE(res.empty()) << name;
    EXPECT_EQ(res["rc"], std::to_string(call.rc)) << name << ": errno=" << res["errno"];
    EXPECT_EQ(res["errno"], std::to_string(call.err)) << name << " (EINTR is 4)";
    EXPECT_GE(atol(res["ms"].c_str()), call.ms) << name << " returned early";
  }
  // pause() is still waiting; only the program's own signal ends it.
  EXPECT_FALSE(HasLine(lines, "pause returned"));
  p.t.Send("wake-pause");
  EXPECT_EQ(p.t.WaitFor("pause returned"), "pause returned rc=-1 errno=4");
  p.ReleaseAndQuit();
}

// Reads every line the program has printed within MS milliseconds.
std::vector<std::string> LinesFor(Target& t, int ms) {
  std::vector<std::string> lines;
  long end = NowMs() + ms;
  for (long left = ms; left > 0; left = end - NowMs()) {
    std::string l = t.ReadLine((int)left);
    if (!l.empty()) lines.push_back(l);
  }
  return lines;
}

// The wrapped calls without a timeout: each returns when the program's own
// event comes (a signal, a message, room in a queue, a semaphore post), and
// never before, however often it is dumped meanwhile.
TEST(Stack, CallsWithoutATimeoutReturnOnlyWhenWoken) {
  Parked p;
  struct Call {
    const char* name;
    long rc;
    int err;  // what the call returns once woken
  };
  const std::vector<Call> calls = {
      {"sigsuspend", -1, EINTR},  // what the program's SIGUSR1 handler makes of it
      {"sigwaitinfo", SIGWINCH, 0},
      {"msgrcv", 8, 0},
      {"msgsnd", 0, 0},
      {"semop", 0, 0},
  };
  for (const Call& c : calls) p.t.Send(std::string("block ") + c.name);
  std::map<std::string, pid_t> tid_of = p.TidsOf("blocking", calls.size());
  ASSERT_EQ(tid_of.size(), calls.size());
  Dump d;
  auto all_in_call = [&] {
    for (auto& [name, tid] : tid_of)
      if (d.threads[tid].captured != "call" || d.threads[tid].in_call != name) return false;
    return true;
  };
  long end = NowMs() + 10000;
  do d = StackJson(p.t.pid());
  while (!all_in_call() && NowMs() < end);
  for (auto& [name, tid] : tid_of) {
    EXPECT_EQ(d.threads[tid].captured, "call") << name;
    EXPECT_EQ(d.threads[tid].in_call, name);
    EXPECT_TRUE(HasFrame(d.threads[tid], "park_block_call")) << name << "\n"
                                                              << Frames(d.threads[tid]);
  }
  ks::RawClient c(p.t.pid());
  ASSERT_TRUE(c.ok());
  c.ReadLine();
  for (int i = 0; i < 20; i++) {
    auto reply = c.Request("stack");
    ASSERT_FALSE(reply.empty());
    EXPECT_EQ(reply.back().rfind("ok threads=", 0), 0u) << reply.back();
  }
  // None has returned: a call cut short would have printed its result.
  std::vector<std::string> lines = LinesFor(p.t, 300);
  for (const auto& l : lines) EXPECT_NE(l.rfind("result ", 0), 0u) << "returned unwoken: " << l;
  for (const Call& call : calls) {
    p.t.Send(std::string("wake ") + call.name);
    auto res = Fields(p.t.WaitFor(std::string("result ") + call.name + " "));
    EXPECT_EQ(res["rc"], std::to_string(call.rc)) << call.name;
    EXPECT_EQ(res["errno"], std::to_string(call.err)) << call.name;
  }
  p.ReleaseAndQuit();
}

// Two reads that the kernel would cut short if a handler ran (signal(7)): on
// a socket with a receive timeout (EINTR instead of a restart), and a recv
// with MSG_WAITALL that has part of its data (it would return the part).
// The shim does not signal them: each returns what it would have.
// The program's own futex wait with a timeout, through libc's syscall() (as
// GLib's g_cond_wait_until): a signal would end it early with EINTR, which
// GLib takes for a wakeup ("signalled"). Never signalled; it times out in
// full. (Its thread could also be caught just before the call, a window no
// /proc check closes; this test dumps only once it is inside.)
TEST(Stack, AProgramsTimedFutexIsNotSignalled) {
  Parked p;
  p.t.Send("futex 3000");
  pid_t tid = p.TidsOf("timed", 1)["futex"];
  ASSERT_GT(tid, 0);
  int seen = 0;
  for (long end = NowMs() + 2500; NowMs() < end;) {
    Dump d = StackJson(p.t.pid());
    const Thr& t = d.threads[tid];
    if (t.syscall != "futex") continue;
    seen++;
    EXPECT_EQ(t.captured, "none");
    EXPECT_EQ(t.reason, "syscall");
  }
  EXPECT_GE(seen, 3);
  auto res = Fields(p.t.WaitFor("result futex ", 10000));
  EXPECT_EQ(res["rc"], "-1");
  EXPECT_EQ(res["errno"], std::to_string(ETIMEDOUT)) << "EINTR is 4";
  EXPECT_GE(atol(res["ms"].c_str()), 3000);
  p.ReleaseAndQuit();
}

TEST(Stack, ReadsASignalWouldCutShortAreNotSignalled) {
  Parked p;
  p.t.Send("rcvtimeo 5000");
  pid_t rcvtimeo = p.TidsOf("timed", 1)["rcvtimeo"];
  p.t.Send("block waitall");
  pid_t waitall = p.TidsOf("blocking", 1)["waitall"];
  ASSERT_GT(rcvtimeo, 0);
  ASSERT_GT(waitall, 0);
  // Dumps while each is inside its read (a slow build may see the 5 s read
  // end before the last): each one seen there is left alone.
  int seen_rcvtimeo = 0, seen_waitall = 0;
  long end = NowMs() + 20000;
  for (int i = 0; i < 12 && NowMs() < end;) {
    Dump d = StackJson(p.t.pid());
    for (pid_t tid : {rcvtimeo, waitall}) {
      const Thr& t = d.threads[tid];
      if (t.syscall != (tid == rcvtimeo ? "read" : "recvfrom")) continue;
      (tid == rcvtimeo ? seen_rcvtimeo : seen_waitall)++;
      EXPECT_EQ(t.captured, "none") << tid;
      EXPECT_EQ(t.reason, "syscall") << tid;
    }
    i += seen_waitall > 0;
  }
  EXPECT_GE(seen_rcvtimeo, 2);
  EXPECT_GE(seen_waitall, 10);
  std::vector<std::string> lines = LinesFor(p.t, 100);
  EXPECT_FALSE(HasLine(lines, "result waitall")) << "recv returned with part of its data";
  p.t.Send("wake waitall");
  auto res = Fields(p.t.WaitFor("result waitall "));
  EXPECT_EQ(res["rc"], "4");
  res = Fields(HasLine(lines, "result rcvtimeo ") ? [&] {
    for (auto& l : lines)
      if (l.rfind("result rcvtimeo ", 0) == 0) return l;
    return std::string();
  }() : p.t.WaitFor("result rcvtimeo ", 10000));
  EXPECT_EQ(res["rc"], "-1");
  EXPECT_EQ(res["errno"], std::to_string(EAGAIN)) << "EINTR is 4";
  EXPECT_GE(atol(res["ms"].c_str()), 5000);
  p.ReleaseAndQuit();
}

// Thousands of short timed waits, entered and left while dumps come one
// after another: none returns early or fails, whichever way each dump took
// each thread (held in its call, signalled between calls, or racing the
// entry or exit of a wrapper).
TEST(Stack, ShortWaitsUnderContinuousDumps) {
  Target t(ks::ProgPath("sleepers"), {"8", "150"});
  ASSERT_EQ(t.WaitFor("ready"), "ready");
  ASSERT_TRUE(t.WaitSocket());
  ks::RawClient c(t.pid());
  ASSERT_TRUE(c.ok());
  c.ReadLine();
  int dumps = 0, in_call = 0;
  std::string result;
  long deadline = NowMs() + 120000;
  while (result.empty() && NowMs() < deadline) {
    long t0 = NowMs();
    auto reply = c.Request("stack");
    ASSERT_FALSE(reply.empty()) << "no reply to dump " << dumps + 1 << " in " << NowMs() - t0
                                << " ms (connection closed or timed out); the program "
                                << (t.Alive() ? "is alive" : "is gone");
    ASSERT_EQ(reply.back().rfind("ok threads=", 0), 0u) << reply.back();
    dumps++;
    for (auto& l : reply) in_call += l.find(" via=call ") != std::string::npos;
    result = t.WaitFor("sleepers ", 1);
  }
  auto m = Fields(result);
  EXPECT_EQ(m["early"], "0") << result;
  EXPECT_EQ(m["errors"], "0") << result;
  EXPECT_EQ(m["calls"], std::to_string(8 * 150 * 10));
  EXPECT_GT(dumps, 10);
  EXPECT_GT(in_call, 0);
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0);
}

std::vector<std::map<std::string, std::string>> Lockers(Target& t, int n) {
  std::vector<std::map<std::string, std::string>> v;
  for (int i = 0; i < n; i++) v.push_back(Fields(t.WaitFor("locker ")));
  EXPECT_EQ(t.WaitFor("ready"), "ready");
  EXPECT_TRUE(t.WaitSocket());
  return v;
}

void ExpectDeadlockNamed(int n) {
  Target t(ks::ProgPath("deadlock"), {std::to_string(n)});
  auto lockers = Lockers(t, n);
  std::map<pid_t, std::string> wants;
  std::map<std::string, pid_t> holder;
  std::vector<pid_t> tids;
  for (auto& l : lockers) {
    pid_t tid = atoi(l["tid"].c_str());
    tids.push_back(tid);
    wants[tid] = l["wants"];
    holder[l["holds"]] = tid;
  }
  std::sort(tids.begin(), tids.end());
  // The threads reach their second lock right after "ready": dump until the
  // whole cycle shows.
  Dump d;
  long end = NowMs() + 15000;
  do d = StackJson(t.pid());
  while (d.deadlocks.empty() && NowMs() < end);
  ASSERT_EQ(d.deadlocks.size(), 1u);
  const Cycle& c = d.deadlocks[0];
  std::vector<pid_t> got = c.tids;
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, tids);
  EXPECT_EQ(c.tids[0], tids[0]);   // named from its smallest tid
  ASSERT_EQ(c.waits.size(), (size_t)n);
  std::string expect_text = "deadlock:";
  for (size_t i = 0; i < c.waits.size(); i++) {
    auto [tid, owner] = c.waits[i];
    EXPECT_EQ(c.objects[i], wants[tid]);
    EXPECT_EQ(owner, holder[wants[tid]]);
    EXPECT_EQ(d.threads[tid].owner, owner);
    EXPECT_TRUE(HasFrame(d.threads[tid], "take_second")) << Frames(d.threads[tid]);
    expect_text += std::string(i ? "," : "") + " " + std::to_string(tid) + " waits for " +
                   std::to_string(owner) + " (mutex " + wants[tid] + ")";
    if (i + 1 < c.waits.size()) {
      EXPECT_EQ(owner, c.waits[i + 1].first);
    }
  }
  EXPECT_EQ(c.waits.back().second, c.waits.front().first);
  EXPECT_EQ(c.text, expect_text);
  ks::Result text = Inject({"--stack", std::to_string(t.pid())});
  EXPECT_NE(text.out.find("\n" + expect_text + "\n"), std::string::npos) << text.out;
  ks::Result list = Inject({std::to_string(t.pid())});
  EXPECT_NE(list.out.find("\n" + expect_text + "\n"), std::string::npos) << list.out;
  // One thread's dump names the cycle it is part of.
  Dump one = StackJson(t.pid(), {std::to_string(tids.back())});
  ASSERT_EQ(one.deadlocks.size(), 1u);
  EXPECT_EQ(one.deadlocks[0].text, expect_text);
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0);
}

TEST(Stack, TwoThreadDeadlockIsNamed) { ExpectDeadlockNamed(2); }
TEST(Stack, ThreeThreadDeadlockIsNamed) { ExpectDeadlockNamed(3); }
TEST(Stack, SelfDeadlockIsNamed) { ExpectDeadlockNamed(1); }

// Dumps while threads are created and exit as fast as the program can:
// every dump is answered, and the program finishes its work.
TEST(Stack, DumpsRaceWithExitingThreads) {
  Target t(ks::ProgPath("churn"), {"20000", "4"});
  ASSERT_EQ(t.WaitFor("ready"), "ready");
  ASSERT_TRUE(t.WaitSocket());
  t.Send("go");
  int dumps = 0;
  std::string done;
  std::set<std::string> seen;
  while (done.empty() && dumps < 15 && t.Alive()) {
    ks::Result r;
    Dump d = StackJson(t.pid(), {}, 30000, &r);
    if (!d.parsed) break;
    dumps++;
    for (auto& [tid, th] : d.threads) {
      seen.insert(th.captured);
      if (th.captured != "none") {
        EXPECT_FALSE(th.frames.empty()) << tid;
      }
    }
    done = t.WaitFor("done", 1);
  }
  if (done.empty()) done = t.WaitFor("done", 120000);
  EXPECT_EQ(done, "done 20000");
  EXPECT_GT(dumps, 0);
  EXPECT_TRUE(seen.count("signal"));
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0);
  EXPECT_EQ(t.Stderr(), "");
}

// Hundreds of threads: every one is dumped, from a signal or from its call,
// and all of them still work afterwards.
TEST(Stack, HundredsOfThreads) {
  const int n = 400;
  Target t(ks::ProgPath("many"), {std::to_string(n)});
  ASSERT_EQ(t.WaitFor("ready", 30000), "ready");
  ASSERT_TRUE(t.WaitSocket());
  Dump d = StackJson(t.pid());
  ASSERT_EQ(d.threads.size(), (size_t)n + 1);
  std::map<std::string, int> by;
  for (auto& [tid, th] : d.threads) {
    by[th.captured]++;
    if (th.role == "main") continue;
    bool known = HasFrame(th, "many_cond") || HasFrame(th, "many_sleep") ||
                 HasFrame(th, "many_read") || HasFrame(th, "many_epoll");
    EXPECT_TRUE(known) << tid << "\n" << Frames(th);
  }
  EXPECT_EQ(by["none"], 0);
  EXPECT_GE(by["call"], n / 4);   // sleepers and epoll waiters between two calls
  EXPECT_GE(by["signal"], n / 2);
  t.Send("release");
  EXPECT_EQ(t.WaitFor("released", 30000), "released " + std::to_string(n));
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0);
}

// libunwind.so.8, which the shim needs, also defines _Unwind_*: none of
// those may bind to it, or C++ exceptions and pthread_cancel in the program
// would run through the wrong unwinder.
TEST(Stack, UnwindFunctionsStayLibgccs) {
  ks::Result r = ks::Run({ks::ProgPath("threads_basic"), "2"}, 30000,
                         {"LD_PRELOAD=" + ks::Preload(), "LD_BIND_NOW=1", "LD_DEBUG=bindings"});
  EXPECT_EQ(r.code, 0);
  size_t to_libgcc = 0, to_libunwind = 0;
  size_t pos = 0;
  while ((pos = r.err.find('\n', pos + 1)) != std::string::npos) {
    size_t start = r.err.rfind('\n', pos - 1);
    std::string line = r.err.substr(start + 1, pos - start - 1);
    if (line.find("`_Unwind_") == std::string::npos) continue;
    if (line.find("to /") == std::string::npos) continue;
    std::string target = line.substr(line.find("to /"));
    if (target.find("libunwind.so") != std::string::npos) {
      to_libunwind++;
      ADD_FAILURE() << line;
    }
    if (target.find("libgcc_s.so") != std::string::npos) to_libgcc++;
  }
  EXPECT_GT(to_libgcc, 0u);
  EXPECT_EQ(to_libunwind, 0u);
}

}  // namespace

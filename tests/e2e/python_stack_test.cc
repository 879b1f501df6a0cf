// Python frames in --stack (docs/python.md): Debian's /usr/bin/python3
// (3.11) under the shim, and (python_stack_test_39, _313) Debian 11's 3.9
// and Debian 13's 3.13 (tests/e2e/pythons.h). The shim reads each Python
// thread's frames from CPython's memory without the GIL; the expected
// functions and lines are the script's own (LineOf finds them in kProgram).
// After each: the main thread still ticks and the interpreter exits 0.
#include <gtest/gtest.h>
#include <json-c/json.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"
#include "tests/e2e/pythons.h"

namespace {

using ks::Has;
using ks::Inject;
using ks::Target;
using ks::TidFrom;

const ks::PyCmd kPy = ks::PythonUnderTest();

// "start KIND N": N threads of KIND, each announced as "KIND tid=T" (from
// the main thread: no frame of the test's own above the thread's).
const char kProgram[] = R"py(
import re, select, sys, threading, time
def leaf():
    time.sleep(3600)  # @sleep
def middle():
    leaf()  # @middle
def top():
    middle()  # @top
def spin():
    x = 0
    while True:  # @while
        x += 1  # @add
def regex():
    while True:
        re.match(r"(a+)+$", "a" * 23 + "b")  # @regex
def c(n):
    return sum(range(n))
def b(n):
    return c(n) * 2
def a(n):
    return b(n) + 1
def churn():
    while True:
        ts = [threading.Thread(target=a, args=(1000,)) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
def fleeting():
    # New code objects every time, freed after: a frame read may find its
    # code object gone.
    i = 0
    while True:
        i += 1
        exec(compile("def f%d(n):\n    return f%d(n - 1) if n else 0\nf%d(40)" % (i, i, i),
                     "gen-%d" % i, "exec"), {})
kinds = {"sleep": top, "spin": spin, "regex": regex, "churn": churn, "fleeting": fleeting}
n = 0
while True:
    n += 1
    print("tick %d" % n, flush=True)
    if select.select([sys.stdin], [], [], 0.02)[0]:
        cmd = sys.stdin.readline().split()
        if not cmd or cmd[0] == "quit":
            break
        for i in range(int(cmd[2])):
            t = threading.Thread(target=kinds[cmd[1]], name="%s-%d" % (cmd[1], i), daemon=True)
            t.start()
            print("%s tid=%d" % (cmd[1], t.native_id), flush=True)
print("main done", flush=True)
)py";

// The line of kProgram that carries "# @MARK" (line 1 is the empty first).
int LineOf(const std::string& mark) {
  std::string p = kProgram;
  size_t at = p.find("# @" + mark + "\n");
  return at == std::string::npos ? -1 : 1 + (int)std::count(p.begin(), p.begin() + (long)at, '\n');
}

struct PyFrame {
  std::string func, file;
  int line;
};
struct PyStack {
  bool seen = false;
  std::string gil;
  bool torn = false, moved = false;
  std::vector<PyFrame> frames;
};

// One "stack" request through a raw client: tid -> its Python stack.
std::map<pid_t, PyStack> Stacks(pid_t pid, const std::string& extra = "",
                                std::string* last = nullptr) {
  ks::RawClient c(pid);
  std::map<pid_t, PyStack> m;
  if (!c.ok()) {
    if (last) *last = "(no connection: " + std::string(strerror(errno)) + ")";
    return m;
  }
  std::string hello = c.ReadLine();
  long t0 = ks::NowMs();
  std::vector<std::string> lines = c.Request("stack" + extra, 20000);
  for (const std::string& l : lines) {
    auto f = ks::ParseLine(l);
    if (f["verb"] == "pystack") {
      PyStack& s = m[std::stoi(f["tid"])];
      s.seen = true;
      s.gil = f["gil"];
      s.torn = f.count("torn") > 0;
      s.moved = f.count("moved") > 0;
    } else if (f["verb"] == "pyframe") {
      m[std::stoi(f["tid"])].frames.push_back({f["func"], f["file"], std::stoi(f["line"])});
    }
  }
  if (last)
    *last = !lines.empty() ? lines.back()
                           : "(no reply in " + std::to_string(ks::NowMs() - t0) +
                                 " ms: connection closed or timed out; hello was \"" + hello +
                                 "\")";
  return m;
}

// The Python frames of each thread of the injector's --json --stack output:
// tid -> functions, newest first (a thread without a "python" member: absent).
std::map<long, std::vector<std::string>> JsonFuncs(const std::string& out,
                                                   std::map<long, json_object*>* py = nullptr) {
  std::map<long, std::vector<std::string>> m;
  json_object *root = json_tokener_parse(out.c_str()), *threads, *t, *p, *frames, *f, *fn;
  if (!root) return m;
  if (json_object_object_get_ex(root, "threads", &threads))
    for (size_t i = 0; i < json_object_array_length(threads); i++) {
      t = json_object_array_get_idx(threads, i);
      json_object* tid;
      if (!json_object_object_get_ex(t, "tid", &tid) ||
          !json_object_object_get_ex(t, "python", &p) || !p ||
          !json_object_object_get_ex(p, "frames", &frames))
        continue;
      std::vector<std::string>& v = m[json_object_get_int64(tid)];
      for (size_t k = 0; k < json_object_array_length(frames); k++) {
        f = json_object_array_get_idx(frames, k);
        v.push_back(json_object_object_get_ex(f, "function", &fn) ? json_object_get_string(fn)
                                                                   : "?");
      }
      if (py) (*py)[json_object_get_int64(tid)] = json_object_get(p);
    }
  json_object_put(root);
  return m;
}

// FIELD of a JSON object as a string ("" if absent or null).
std::string JsonStr(json_object* o, const char* field) {
  json_object* v;
  return o && json_object_object_get_ex(o, field, &v) && v ? json_object_get_string(v) : "";
}

bool EndsWith(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// threading's frames under a thread's target: run, _bootstrap_inner, _bootstrap.
void ExpectThreadingBase(const PyStack& s, size_t from) {
  ASSERT_EQ(s.frames.size(), from + 3);
  const char* names[] = {"run", "_bootstrap_inner", "_bootstrap"};
  for (size_t i = 0; i < 3; i++) {
    EXPECT_EQ(s.frames[from + i].func, names[i]);
    // The interpreter asked for (pythons.h), not the system's.
    EXPECT_TRUE(EndsWith(s.frames[from + i].file,
                         "/python3." + std::to_string(kPy.minor) + "/threading.py"))
        << s.frames[from + i].file;
    EXPECT_GT(s.frames[from + i].line, 0);
  }
}

std::vector<std::string> Plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

struct Py {
  Target t;
  explicit Py(const std::vector<std::string>& env = {})
      : t(kPy.prog, kPy.Args({"-c", kProgram}), Plus(kPy.env, env)) {
    EXPECT_TRUE(t.WaitSocket());
  }
  std::vector<pid_t> Start(const std::string& kind, int n = 1) {
    t.Send("start " + kind + " " + std::to_string(n));
    std::vector<pid_t> v;
    for (int i = 0; i < n; i++) v.push_back(TidFrom(t.WaitFor(kind + " tid=")));
    return v;
  }
  std::string Pid() const { return std::to_string(t.pid()); }
  void ExpectTicks() {
    EXPECT_NE(t.WaitFor("tick ", 10000), "");
    EXPECT_NE(t.WaitFor("tick ", 10000), "");
    EXPECT_TRUE(t.Alive());
  }
  void Exit0() {
    t.Send("quit");
    EXPECT_EQ(t.Wait(30000), 0) << t.Stderr();
    EXPECT_EQ(ks::SanitizerReport(t.Stderr()), "");
  }
};

// Waits (10 s) until TID's Python stack satisfies OK; returns the last seen.
template <typename F>
PyStack WaitStack(Py& p, pid_t tid, F ok) {
  PyStack s;
  for (long dl = ks::NowMs() + 10000; ks::NowMs() < dl; usleep(20000)) {
    s = Stacks(p.t.pid(), " tid=" + std::to_string(tid))[tid];
    if (ok(s)) break;
  }
  return s;
}

// Nested functions, asleep: the frames newest first, each at the line of
// the call it is in, then threading's; the GIL released. The injector's
// text shows them above the native frames, and its JSON has them.
TEST(PythonStack, NestedFunctionsInOrderWithTheirLines) {
  Py p;
  pid_t tid = p.Start("sleep")[0];
  PyStack s = WaitStack(p, tid, [](const PyStack& s) {
    return s.frames.size() == 6 && s.frames[0].func == "leaf";
  });
  ASSERT_TRUE(s.seen);
  ASSERT_EQ(s.frames.size(), 6u);
  const char* funcs[] = {"leaf", "middle", "top"};
  const char* marks[] = {"sleep", "middle", "top"};
  for (int i = 0; i < 3; i++) {
    EXPECT_EQ(s.frames[i].func, funcs[i]);
    EXPECT_EQ(s.frames[i].file, "<string>");
    EXPECT_EQ(s.frames[i].line, LineOf(marks[i])) << funcs[i];
  }
  ExpectThreadingBase(s, 3);
  EXPECT_EQ(s.gil, "released");
  EXPECT_FALSE(s.torn);

  ks::Result r = Inject({"--stack", p.Pid(), std::to_string(tid)});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  std::string want = "  Python (GIL released):\n    leaf (<string>:" +
                     std::to_string(LineOf("sleep")) + ")\n    middle (<string>:" +
                     std::to_string(LineOf("middle")) + ")\n    top (<string>:" +
                     std::to_string(LineOf("top")) + ")\n    run (";
  EXPECT_TRUE(Has(r.out, want)) << r.out;
  EXPECT_LT(r.out.find(want), r.out.find("  #0 ")) << r.out;

  ks::Result j = Inject({"--json", "--stack", p.Pid(), std::to_string(tid)});
  ASSERT_EQ(j.code, 0) << j.out << j.err;
  std::map<long, json_object*> py;
  auto jf = JsonFuncs(j.out, &py);
  EXPECT_EQ(jf[tid], (std::vector<std::string>{"leaf", "middle", "top", "run",
                                                  "_bootstrap_inner", "_bootstrap"}))
      << j.out;
  EXPECT_EQ(JsonStr(py[tid], "gil"), "released") << j.out;
  EXPECT_EQ(JsonStr(py[tid], "partial"), "false") << j.out;
  json_object *frames = nullptr, *f0;
  ASSERT_TRUE(py[tid] && json_object_object_get_ex(py[tid], "frames", &frames)) << j.out;
  f0 = json_object_array_get_idx(frames, 0);
  EXPECT_EQ(JsonStr(f0, "line"), std::to_string(LineOf("sleep"))) << j.out;
  EXPECT_EQ(JsonStr(f0, "file"), "<string>") << j.out;
  for (auto& [t, o] : py) json_object_put(o);
  p.ExpectTicks();
  p.Exit0();
}

// A busy pure-Python loop: its frame is at a line of the loop, and it is
// seen holding the GIL (the main thread waits in select most of the time).
TEST(PythonStack, BusyLoopAtItsLineHoldingTheGil) {
  Py p;
  pid_t tid = p.Start("spin")[0];
  int w = LineOf("while"), a = LineOf("add");
  PyStack s = WaitStack(p, tid, [&](const PyStack& s) {
    return s.gil == "held" && s.frames.size() == 4 && s.frames[0].func == "spin";
  });
  ASSERT_EQ(s.frames.size(), 4u);
  EXPECT_EQ(s.gil, "held");
  EXPECT_EQ(s.frames[0].func, "spin");
  EXPECT_TRUE(s.frames[0].line == w || s.frames[0].line == a) << s.frames[0].line;
  ExpectThreadingBase(s, 1);
  p.ExpectTicks();
  p.Exit0();
}

// A C call that keeps the GIL for seconds (a backtracking regular
// expression; re does not release it): its Python frames are read anyway,
// without the GIL, and it is seen holding it, in --stack and the listing.
TEST(PythonStack, GilHeldInCCodeStillGetsItsFrames) {
  Py p;
  pid_t tid = p.Start("regex")[0];
  PyStack s = WaitStack(p, tid, [](const PyStack& s) {
    return s.gil == "held" && !s.frames.empty() && s.frames[0].func == "match";
  });
  ASSERT_EQ(s.frames.size(), 5u);
  EXPECT_EQ(s.gil, "held");
  EXPECT_EQ(s.frames[0].func, "match");
  // re is a package since 3.11, a module before.
  EXPECT_TRUE(EndsWith(s.frames[0].file, kPy.minor >= 11 ? "/re/__init__.py" : "/re.py"))
      << s.frames[0].file;
  EXPECT_EQ(s.frames[1].func, "regex");
  EXPECT_EQ(s.frames[1].line, LineOf("regex"));
  ExpectThreadingBase(s, 2);
  bool listed = false;
  for (long dl = ks::NowMs() + 10000; !listed && ks::NowMs() < dl; usleep(20000)) {
    ks::Result r = Inject({p.Pid()});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    size_t at = r.out.find("\n" + std::to_string(tid) + " ");
    listed = at != std::string::npos &&
             Has(r.out.substr(at, r.out.find('\n', at + 1) - at), "holds the GIL");
  }
  EXPECT_TRUE(listed);
  p.ExpectTicks();
  p.Exit0();
}

// 100 Python threads: one --stack has every thread's frames, well under a
// second (the time is printed; the assertion is only that it comes back).
TEST(PythonStack, HundredThreadsAllHaveTheirFrames) {
  Py p;
  std::vector<pid_t> tids = p.Start("sleep", 100);
  std::set<pid_t> missing;
  long took = 0;
  for (long dl = ks::NowMs() + 20000; ks::NowMs() < dl; usleep(50000)) {
    long t0 = ks::NowMs();
    ks::Result r = Inject({"--json", "--stack", p.Pid()});
    took = ks::NowMs() - t0;
    ASSERT_EQ(r.code, 0) << r.err;
    auto funcs = JsonFuncs(r.out);
    missing.clear();
    for (pid_t t : tids)
      if (funcs[t].size() != 6 || funcs[t][0] != "leaf") missing.insert(t);
    if (missing.empty()) break;
  }
  EXPECT_TRUE(missing.empty()) << missing.size() << " threads without their frames";
  std::printf("--stack of 101 Python threads (json, symbols included): %ld ms\n", took);
  p.ExpectTicks();
  p.Exit0();
}

// Threads start and end all the time, running nested functions, while
// --stack is asked again and again: every reply completes, the frames read
// are whole or marked, and the program never notices.
TEST(PythonStack, ManyStacksWhileThreadsComeAndGo) {
  Py p;
  p.Start("churn", 3);
  p.Start("spin", 2);
  p.Start("fleeting", 2);
  int torn = 0, moved = 0, stacks = 0, frames = 0;
  for (int i = 0; i < 200; i++) {
    std::string last;
    auto m = Stacks(p.t.pid(), "", &last);
    ASSERT_EQ(last.rfind("ok ", 0), 0u)
        << "dump " << i + 1 << ": " << last << "; the program "
        << (p.t.Alive() ? "is alive" : "is gone");
    for (auto& [tid, s] : m) {
      stacks++;
      torn += s.torn;
      moved += s.moved;
      for (const PyFrame& f : s.frames) {
        frames++;
        EXPECT_FALSE(f.func.empty());
        EXPECT_FALSE(f.file.empty());
      }
    }
    ASSERT_TRUE(p.t.Alive());
  }
  std::printf("%d Python stacks, %d frames; %d torn, %d moved\n", stacks, frames, torn, moved);
  EXPECT_GT(frames, 0);
  p.ExpectTicks();
  p.Exit0();
}

// How many times the shim started a worker to ask CPython (its debug log).
int Workers(const std::string& err) {
  int n = 0;
  for (size_t at = 0; (at = err.find("python: a worker asks CPython", at)) != std::string::npos;
       at++)
    n++;
  return n;
}

// Listings in a row: the names come from CPython once, then, for a second,
// from what the shim kept (the same thread states): no thread started in
// the program for each. The rows are whole each time.
TEST(PythonStack, ListingsInARowStartOneWorker) {
  Py p({"KILLSHIM_DEBUG=1"});
  pid_t tid = p.Start("sleep")[0];
  long t0 = ks::NowMs();
  for (int i = 0; i < 5; i++) {
    auto rows = ks::ListRows(p.t.pid());
    EXPECT_EQ(rows[tid]["py_name"], "sleep-0");
    EXPECT_EQ(rows[tid]["py_gil"], "released");
  }
  long took = ks::NowMs() - t0;
  p.ExpectTicks();
  p.Exit0();
  int w = Workers(p.t.Stderr());
  std::printf("5 listings in %ld ms: %d worker(s)\n", took, w);
  EXPECT_GE(w, 1);
  EXPECT_LE(w, 1 + took / 1000);
}

// While a thread keeps the GIL, a listing's worker waits for it in vain;
// later listings start no other (each would wait too): they say so, and
// still show the rows with who holds the GIL.
TEST(PythonStack, GilKeptListingsDoNotPileUpWorkers) {
  Py p({"KILLSHIM_DEBUG=1"});
  pid_t tid = p.Start("regex")[0];
  WaitStack(p, tid, [](const PyStack& s) { return s.gil == "held"; });
  long t0 = ks::NowMs();
  int held = 0;
  for (int i = 0; i < 10; i++) {
    std::string last;
    auto rows = ks::ListRows(p.t.pid(), &last);
    held += rows[tid]["py_gil"] == "held";
  }
  long took = ks::NowMs() - t0;
  int w = Workers(p.t.Stderr());
  std::printf("10 listings with the GIL kept, in %ld ms: %d worker(s), %d saw it held\n", took,
              w, held);
  EXPECT_LE(w, 3);
  EXPECT_GT(held, 0);
  p.ExpectTicks();
  p.Exit0();
}

}  // namespace

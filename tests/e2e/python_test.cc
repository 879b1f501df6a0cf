// Ending a Python thread the Python way (docs/python.md): Debian's
// /usr/bin/python3 (3.11, libpython linked statically, its C API exported)
// under the shim, and (python_test_39, _313) Debian 11's 3.9 and Debian
// 13's 3.13 (tests/e2e/pythons.h); killshim-inject raises SystemExit (or --raise NAME) in
// the thread with CPython's PyThreadState_SetAsyncExc, taken under the GIL
// from a shim thread. After each: the thread is gone, its finally: ran,
// the main thread kept ticking, and the interpreter exits 0.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"
#include "tests/e2e/pythons.h"

namespace {

using ks::Has;
using ks::TidFrom;
using ks::Inject;
using ks::Target;

// Threads started on request ("start KIND [nd]": nd for non-daemon), each
// printing "KIND tid=N" and, on its way out, "finally KIND"; "KIND returned"
// if its blocking call returned normally. The main thread ticks every 20 ms
// and reads commands; "quit" returns from the script (exit status 0 once
// every non-daemon thread is gone).
const char kProgram[] = R"(
import ctypes, queue, re, select, socket, sys, threading, time
lock = threading.Lock(); lock.acquire()
q = queue.Queue()
silent, peer = socket.socketpair()
def body(kind):
    print("%s tid=%d" % (kind, threading.get_native_id()), flush=True)
    try:
        if kind == "busy":
            x = 0
            while True:
                x += 1
        elif kind == "naps":
            while True:
                time.sleep(0.05)
        elif kind == "sleep":
            time.sleep(3600)
        elif kind == "lock":
            lock.acquire()
        elif kind == "queue":
            q.get()
        elif kind == "recv":
            silent.recv(1)
        elif kind == "regex":   # a C call that keeps the GIL, ~1.5 s a match
            while True:
                re.match(r"(a+)+$", "a" * 23 + "b")
        elif kind == "swallow":
            while True:
                try:
                    while True:
                        time.sleep(0.01)
                except BaseException as e:
                    print("swallow caught %s" % type(e).__name__, flush=True)
        print("%s returned" % kind, flush=True)
    finally:
        print("finally %s" % kind, flush=True)
def native():
    libc = ctypes.CDLL(None)
    th = ctypes.c_ulong()
    sleep = ctypes.cast(libc.sleep, ctypes.c_void_p)
    libc.pthread_create(ctypes.byref(th), None, sleep, ctypes.c_void_p(3600))
n = 0
while True:
    n += 1
    print("tick %d" % n, flush=True)
    if select.select([sys.stdin], [], [], 0.02)[0]:
        cmd = sys.stdin.readline().split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "start":
            threading.Thread(target=body, args=(cmd[1],), name="worker-" + cmd[1],
                             daemon=len(cmd) < 3).start()
        elif cmd[0] == "release":
            lock.release()
        elif cmd[0] == "put":
            q.put(1)
        elif cmd[0] == "send":
            peer.send(b"x")
        elif cmd[0] == "native":
            native()
print("main done", flush=True)
)";

const ks::PyCmd kPy = ks::PythonUnderTest();
// How a thread that took SystemExit leaves: 3.9's thread bootstrap ends with
// PyThread_exit_thread (pthread_exit), 3.11's and 3.13's return.
const std::string kGone = kPy.minor < 11 ? "exited" : "returned";
// The system call time.sleep waits in: select() before 3.11, then
// clock_nanosleep.
const std::string kSleepNr = kPy.minor < 11 ? "270" : "230";
const std::string kSleepCall = kPy.minor < 11 ? "pselect6" : "clock_nanosleep";

struct Py {
  Target t{kPy.prog, kPy.Args({"-c", kProgram}), kPy.env};
  Py() { EXPECT_TRUE(t.WaitSocket()); }
  pid_t Start(const std::string& kind, bool daemon = true) {
    t.Send("start " + kind + (daemon ? "" : " nd"));
    return TidFrom(t.WaitFor(kind + " tid="));
  }
  std::string Pid() const { return std::to_string(t.pid()); }
  // The main thread still ticks: the interpreter runs on.
  void ExpectTicks() {
    EXPECT_NE(t.WaitFor("tick ", 10000), "");
    EXPECT_NE(t.WaitFor("tick ", 10000), "");
    EXPECT_TRUE(t.Alive());
  }
  // Reads its output up to LINE; false if it never comes (10 s) or UNWANTED
  // comes first.
  bool Sees(const std::string& line, const std::string& unwanted = "\x01") {
    for (;;) {
      std::string l = t.ReadLine(10000);
      if (l.empty() || l.rfind(unwanted, 0) == 0) return false;
      if (l == line) return true;
    }
  }
  void Exit0() {
    t.Send("quit");
    EXPECT_EQ(t.Wait(30000), 0) << t.Stderr();
    EXPECT_EQ(ks::SanitizerReport(t.Stderr()), "");
  }
};

// Waits until the kernel shows TID in system call NR ("230": clock_nanosleep).
bool WaitSyscall(pid_t pid, pid_t tid, const std::string& nr) {
  for (int i = 0; i < 2000; i++) {
    ks::Result r = ks::Run({"/bin/cat", "/proc/" + std::to_string(pid) + "/task/" +
                                           std::to_string(tid) + "/syscall"});
    if (r.out.rfind(nr + " ", 0) == 0) return true;
    usleep(5000);
  }
  return false;
}

// The default mode on a Python thread is python: a busy pure-Python loop
// takes SystemExit at its next instruction, its finally runs, the thread
// returns, and threading says nothing (SystemExit ends a thread silently).
TEST(Python, AutoEndsABusyThreadWithSystemExit) {
  Py p;
  pid_t tid = p.Start("busy");
  ASSERT_NE(tid, 0);
  ks::Result r = Inject({p.Pid(), std::to_string(tid)});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, ": gone: " + kGone + " (mode python)")) << r.out;
  EXPECT_TRUE(Has(r.out, "steps:       python at 0.00 s\n")) << r.out;
  EXPECT_TRUE(Has(r.out, "python:      thread 'worker-busy' (ident ")) << r.out;
  EXPECT_TRUE(Has(r.out, "SystemExit raised at 0.00 s")) << r.out;
  EXPECT_FALSE(ks::TaskExists(p.t.pid(), tid));
  EXPECT_TRUE(p.Sees("finally busy", "busy returned"));
  p.ExpectTicks();
  p.Exit0();
  EXPECT_FALSE(Has(p.t.Stderr(), "Exception in thread")) << p.t.Stderr();
}

// --raise: another builtins exception, reported in the JSON; an unknown
// name is refused before anything is done.
TEST(Python, RaiseNamesTheException) {
  Py p;
  pid_t tid = p.Start("naps");
  ks::Result bad = Inject({"-m", "python", "--raise", "NoSuchError", p.Pid(), std::to_string(tid)});
  EXPECT_EQ(bad.code, 9) << bad.out << bad.err;
  EXPECT_TRUE(Has(bad.out, "NoSuchError is no exception of builtins")) << bad.out;
  ks::Result r = Inject({"--json", "-m", "python", "--raise", "KeyboardInterrupt", p.Pid(),
                         std::to_string(tid)});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  auto rep = ks::FlatJson(r.out);
  EXPECT_EQ(rep["mode"], "python");
  EXPECT_EQ(rep["how"], kGone);
  EXPECT_EQ(rep["python.exception"], "KeyboardInterrupt");
  EXPECT_EQ(rep["python.name"], "worker-naps");
  EXPECT_EQ(rep["python.swallowed"], "false");
  EXPECT_TRUE(p.Sees("finally naps"));
  p.ExpectTicks();
  // KeyboardInterrupt is not SystemExit: threading's excepthook prints it.
  p.Exit0();
  EXPECT_TRUE(Has(p.t.Stderr(), "KeyboardInterrupt")) << p.t.Stderr();
}

// A non-daemon thread: the interpreter waits for it at exit. Ended the
// Python way, the interpreter exits normally (status 0) afterwards.
TEST(Python, NonDaemonThreadEndsAndTheInterpreterExits) {
  Py p;
  pid_t tid = p.Start("naps", false);
  ks::Result r = Inject({"-m", "python", p.Pid(), std::to_string(tid)});
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_TRUE(p.Sees("finally naps", "naps returned"));
  p.ExpectTicks();
  p.Exit0();
}

// A blocking C call is not cut short (CPython 3.11 checks a thread's
// asynchronous exception in its eval loop only, and retries EINTR in
// time.sleep, Lock.acquire, queue.get and socket calls without looking at
// it): the report says so, and the exception fires when the call returns.
void BlockedUntil(const std::string& kind, const std::string& wake, const std::string& nr = "202",
                  const std::string& call = "futex") {
  Py p;
  pid_t tid = p.Start(kind);
  ASSERT_TRUE(WaitSyscall(p.t.pid(), tid, nr));
  ks::Result r = Inject({"-m", "python", "-t", "1", p.Pid(), std::to_string(tid)});
  EXPECT_EQ(r.code, 3) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, "SystemExit raised, not taken yet: the thread waits in a C call (the "
                         "system call " + call + ") that CPython does not interrupt for it; it is "
                         "raised when the call returns")) << r.out;
  EXPECT_TRUE(ks::TaskExists(p.t.pid(), tid));
  p.ExpectTicks();
  p.t.Send(wake);
  EXPECT_TRUE(p.Sees("finally " + kind, kind + " returned"));
  for (int i = 0; i < 500 && ks::TaskExists(p.t.pid(), tid); i++) usleep(10000);
  EXPECT_FALSE(ks::TaskExists(p.t.pid(), tid));
  p.ExpectTicks();
  p.Exit0();
}

TEST(Python, LockAcquireSeesItWhenTheLockIsReleased) { BlockedUntil("lock", "release"); }
TEST(Python, QueueGetSeesItWhenAnItemComes) { BlockedUntil("queue", "put"); }
// sock.recv on a silent peer (recvfrom, 45): pending until a byte comes.
TEST(Python, SocketRecvSeesItWhenDataComes) { BlockedUntil("recv", "send", "45", "recvfrom"); }

// time.sleep(3600): pending, in clock_nanosleep (3.9: pselect6); the raise
// stays set.
TEST(Python, LongSleepIsReportedPending) {
  Py p;
  pid_t tid = p.Start("sleep");
  ASSERT_TRUE(WaitSyscall(p.t.pid(), tid, kSleepNr));
  ks::Result r = Inject({"--json", "-m", "python", "-t", "1", p.Pid(), std::to_string(tid)});
  EXPECT_EQ(r.code, 3) << r.out << r.err;
  auto rep = ks::FlatJson(r.out);
  EXPECT_EQ(rep["result"], "pending");
  EXPECT_TRUE(Has(rep["pending"], "waits in a C call (the system call " + kSleepCall + ")"))
      << r.out;
  EXPECT_EQ(rep.count("python.taken_ms"), 0u) << r.out;
  EXPECT_TRUE(ks::TaskExists(p.t.pid(), tid));
  p.ExpectTicks();
  p.Exit0();
}

// A thread that catches BaseException and loops: it takes the exception and
// runs on. Reported as swallowing once it ran on for --grace after taking
// it, well before --timeout.
TEST(Python, SwallowingThreadIsReportedNotWaitedFor) {
  Py p;
  pid_t tid = p.Start("swallow");
  long t0 = ks::NowMs();
  ks::Result r = Inject({"--json", "-m", "python", "-g", "0.5", "-t", "20", p.Pid(),
                         std::to_string(tid)});
  long took = ks::NowMs() - t0;
  EXPECT_EQ(r.code, 3) << r.out << r.err;
  EXPECT_LT(took, 10000) << r.out;
  auto rep = ks::FlatJson(r.out);
  EXPECT_EQ(rep["python.swallowed"], "true") << r.out;
  EXPECT_NE(rep["python.taken_ms"], "") << r.out;
  EXPECT_TRUE(Has(rep["pending"], "SystemExit was raised and the thread took it by")) << r.out;
  EXPECT_TRUE(Has(rep["pending"], "swallows it")) << r.out;
  EXPECT_TRUE(p.Sees("swallow caught SystemExit"));
  EXPECT_TRUE(ks::TaskExists(p.t.pid(), tid));
  p.ExpectTicks();
  p.Exit0();
}

// Refused, nothing done: the main thread; a native thread CPython has no
// state for; a process without CPython.
TEST(Python, RefusalsSayWhy) {
  Py p;
  ks::Result r = Inject({"-m", "python", p.Pid(), p.Pid()});
  EXPECT_EQ(r.code, 9) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, "is the main thread: an exception there ends the interpreter")) << r.out;
  // The native thread (pthread_create from ctypes, start routine libc's
  // sleep): a task that was not there before, not the shim's, in
  // clock_nanosleep.
  std::vector<pid_t> before = ks::Tasks(p.t.pid());
  p.t.Send("native");
  pid_t native = 0;
  for (int i = 0; i < 500 && !native; i++) {
    for (pid_t t : ks::Tasks(p.t.pid())) {
      if (std::find(before.begin(), before.end(), t) != before.end()) continue;
      std::string task = "/proc/" + p.Pid() + "/task/" + std::to_string(t);
      ks::Result comm = ks::Run({"/bin/cat", task + "/comm"});
      ks::Result sc = ks::Run({"/bin/cat", task + "/syscall"});
      if (comm.out.rfind("killshim", 0) != 0 && sc.out.rfind("230 ", 0) == 0) native = t;
    }
    if (!native) usleep(10000);
  }
  ASSERT_NE(native, 0);
  r = Inject({"-m", "python", p.Pid(), std::to_string(native)});
  EXPECT_EQ(r.code, 9) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, "is not a Python thread (CPython has no thread state for it)")) << r.out;
  EXPECT_TRUE(ks::TaskExists(p.t.pid(), native));
  p.ExpectTicks();
  p.Exit0();

  Target s(ks::ProgPath("threads_basic"), {"1"});
  pid_t other = TidFrom(s.WaitFor("worker 0 "));
  ASSERT_TRUE(s.WaitSocket());
  r = Inject({"-m", "python", std::to_string(s.pid()), std::to_string(other)});
  EXPECT_EQ(r.code, 9) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, "no CPython in this process")) << r.out;
  // Asked about CPython where there is none (auto asks on every end): no
  // py fields at all, so no report of a native program says "python".
  ks::RawClient c(s.pid());
  c.ReadLine();
  auto st = ks::ParseLine(c.Request("status tid=" + std::to_string(other) + " python=1").back());
  EXPECT_EQ(st["state"], "alive");
  EXPECT_EQ(st.count("py") + st.count("py_ident") + st.count("py_why"), 0u);
}

// The listing names Python threads: kind python, threading's name.
TEST(Python, ListingShowsPythonThreadsByName) {
  Py p;
  pid_t tid = p.Start("naps");
  // The names come from a worker that takes the GIL (docs/python.md): a
  // listing that comes before it has answered shows the rows unnamed, and
  // the next ones named. Look again for up to 10 s.
  ks::Result r;
  std::string row;
  for (long deadline = ks::NowMs() + 10000;;) {
    r = Inject({p.Pid()});
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    row.clear();
    for (size_t at = 0, nl; at < r.out.size(); at = nl + 1) {
      nl = r.out.find('\n', at);
      if (nl == std::string::npos) nl = r.out.size();
      std::string l = r.out.substr(at, nl - at);
      if (l.rfind(std::to_string(tid) + " ", 0) == 0) row = l;
    }
    if (Has(row, "'worker-naps'") || ks::NowMs() > deadline) break;
    usleep(100000);
  }
  EXPECT_TRUE(Has(row, " python ")) << r.out;
  EXPECT_TRUE(Has(row, "'worker-naps'")) << r.out;
  ks::Result j = Inject({"--json", p.Pid()});
  ASSERT_EQ(j.code, 0) << j.out << j.err;
  auto rep = ks::FlatJson(j.out);
  bool seen = false;
  for (int i = 0; i < std::stoi(rep["threads"]); i++) {
    std::string k = "threads." + std::to_string(i) + ".";
    if (rep[k + "tid"] != std::to_string(tid)) continue;
    seen = true;
    EXPECT_EQ(rep[k + "python"], "true");
    EXPECT_EQ(rep[k + "python_name"], "worker-naps");
  }
  EXPECT_TRUE(seen) << j.out;
  p.ExpectTicks();
  p.Exit0();
}

// A thread that keeps the GIL in a C call (a regular expression that
// backtracks for seconds; re does not release the GIL): a listing never
// waits for it longer than 50 ms, says so and shows the native rows; the
// python mode is refused after 1 s, nothing done.
TEST(Python, AGilHeldInCCodeNeverHangsTheListing) {
  Py p;
  pid_t tid = p.Start("regex");
  // Until a listing that waited says who keeps the GIL: the regex thread
  // compiles its pattern in Python code first, and lets the GIL go for an
  // instant between two matches (a later listing then says that an earlier
  // request still waits).
  bool said = false, held = false;
  for (int i = 0; i < 40 && !(said && held); i++) {
    long t0 = ks::NowMs();
    ks::Result r = Inject({p.Pid()});
    long took = ks::NowMs() - t0;
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_LT(took, 1500) << r.err;
    EXPECT_TRUE(Has(r.out, std::to_string(tid) + " ")) << r.out;
    bool waited = Has(r.err, "Python threads not named: the GIL was not free within 50 ms");
    said |= waited;
    // Read without the GIL: the row still says python, and who keeps it.
    size_t at = r.out.find("\n" + std::to_string(tid) + " ");
    std::string row =
        at == std::string::npos ? "" : r.out.substr(at, r.out.find('\n', at + 1) - at);
    if (waited || Has(r.err, "the GIL has not been free since an earlier request")) {
      EXPECT_TRUE(Has(row, " python ")) << r.out;
      held |= Has(row, "holds the GIL");
    }
    usleep(50000);
  }
  EXPECT_TRUE(said);
  EXPECT_TRUE(held);
  bool refused = false;
  for (int i = 0; i < 10 && !refused; i++) {
    ks::Result r = Inject({"-m", "python", p.Pid(), std::to_string(tid)});
    if (r.code == 0) break;  // it got the GIL between two matches: ended
    EXPECT_EQ(r.code, 9) << r.out << r.err;
    refused = Has(r.out, "the GIL was not free within 1000 ms");
    EXPECT_TRUE(refused) << r.out;
  }
  p.ExpectTicks();
  p.Exit0();
}

// While the interpreter finalizes (a module global's __del__ runs during
// Py_FinalizeEx, asleep), CPython is not asked: a thread that takes the GIL
// then is ended by CPython itself. The listing says so, the python mode is
// refused, and the program's exit status is its own.
const char kFinalizing[] = R"(
import os, sys, threading, time
class Slow:
    # Run as __main__ is cleared, with sys.stdout gone: os.write.
    def __del__(self, os=os, time=time):
        os.write(1, b"finalizing\n")
        time.sleep(2)
slow = Slow()
# A target outside __main__: a frame of __main__'s would keep it alive.
t = threading.Thread(target=time.sleep, args=(3600,), daemon=True)
t.start()
print("worker tid=%d" % t.native_id, flush=True)
sys.stdin.readline()
sys.exit(3)
)";

TEST(Python, FinalizingInterpreterIsLeftAlone) {
  Target t(kPy.prog, kPy.Args({"-c", kFinalizing}), kPy.env);
  pid_t tid = TidFrom(t.WaitFor("worker tid="));
  ASSERT_TRUE(t.WaitSocket());
  t.Send("go");
  ASSERT_EQ(t.WaitFor("finalizing"), "finalizing");
  ks::Result l = Inject({std::to_string(t.pid())});
  EXPECT_EQ(l.code, 0) << l.out << l.err;
  EXPECT_TRUE(Has(l.err, "Python threads not named: CPython is finalizing")) << l.err;
  ks::Result r = Inject({"-m", "python", std::to_string(t.pid()), std::to_string(tid)});
  EXPECT_EQ(r.code, 9) << r.out << r.err;
  EXPECT_TRUE(Has(r.out, "CPython is finalizing (the interpreter is exiting)")) << r.out;
  int st = t.Wait(30000);
  ASSERT_TRUE(WIFEXITED(st)) << st;
  EXPECT_EQ(WEXITSTATUS(st), 3);
}

}  // namespace

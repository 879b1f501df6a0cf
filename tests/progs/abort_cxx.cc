// C++ threads for the abort tests: RAII objects whose destructors must run,
// and frames an unwind must not cross. Knows nothing of killshim.
//
// stdin:  "start KIND" -> "victim I tid=T kind=KIND"; "join I" -> "joined I";
//         "stop" (loops that poll it finish), "progress I" -> "progress I N",
//         "check" -> "healthy beats=N" or "unhealthy: why", "quit".
//         "trap-install" -> "trap-installed start=dfl|caught": installs the
//         program's own SIGTRAP handler and says how main found SIGTRAP
//         before any command; "trap-raise" -> "trapped N trace=M": an int3
//         on this thread, then how many SIGTRAPs the program's handler got
//         (M of them trace traps, the single-stepping's, never its own).
// stdout: "dtor NAME I" from destructors, "forced-unwind I" from a handler
//         that rethrows abi::__forced_unwind.
//         "throw": the qsort victim's comparator throws once, after checking
//         that a backtrace from inside qsort reaches the victim's frame
//         ("backtrace-ok" or "backtrace-broken", then "caught I").
// KINDs: raii nothrow nothrowlong memcpy bigcopy nocall noexcept catchall trycatch trycatch0
//        trycatchall rethrownoexcept rethrow cv qsort smallstack
//         "smallstack": the victim is a pthread with the smallest stack
//         (PTHREAD_STACK_MIN, 16 KiB), 20 frames with destructors ("dtor nest
//         I" each) inside a rethrowing catch (abi::__forced_unwind&) and a
//         catch (const std::runtime_error&); "small-ended I canceled" once
//         it ended, before "returned I".
#include <cxxabi.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <unwind.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

std::mutex out_mu;
std::mutex cv_mu;
// Never destroyed: at exit a victim may still wait on it, and glibc's
// pthread_cond_destroy waits for every waiter to leave.
std::condition_variable& cv = *new std::condition_variable;
std::atomic<bool> stop{false};
std::atomic<unsigned long> beats{0};
thread_local volatile unsigned long sink;   // per thread: no victim races another

struct Victim {
  int idx = 0;
  std::string kind;
  std::thread th;
  std::atomic<unsigned long> progress{0};
};
// Never destroyed: victims still running at exit use their records.
std::vector<std::unique_ptr<Victim>>& victims = *new std::vector<std::unique_ptr<Victim>>;

void Say(const std::string& s) {
  std::lock_guard<std::mutex> g(out_mu);
  std::cout << s << std::endl;
}

struct Guard {
  const char* name;
  int idx;
  Guard(const char* n, int i) : name(n), idx(i) {}
  ~Guard() { Say(std::string("dtor ") + name + " " + std::to_string(idx)); }
};

__attribute__((noinline)) unsigned long Work(unsigned long x) {
  asm volatile("" ::: "memory");
  if (x == 42) throw std::runtime_error("never");
  return x * 2654435761u + 1;
}

void Announce(Victim* v) {
  Say("victim " + std::to_string(v->idx) + " tid=" + std::to_string(gettid()) + " kind=" + v->kind);
}

__attribute__((noinline)) void Inner(Victim* v) {
  Guard g("inner", v->idx);
  for (;;) {
    std::string s = "x" + std::to_string(v->progress.load());
    sink = Work(sink + s.size());
    v->progress++;
  }
}

__attribute__((noinline)) void RunRaii(Victim* v) {
  Guard g("outer", v->idx);
  Announce(v);
  Inner(v);
}

// Cannot throw, and the compiler knows it: a call to it gets no entry in the
// caller's exception table (as memcpy's does), so an unwind from that call's
// return address would call std::terminate. A leaf of the program without an
// exception table of its own, 4 instructions an iteration.
__attribute__((noinline)) unsigned long Mix(unsigned long x, int n) noexcept {
  for (int i = 0; i < n; i++) {
    x = x * 6364136223846793005ul + 1;
    asm volatile("" : "+r"(x));
  }
  return x;
}

// Nearly always inside Mix (N iterations), called where leaving would call
// std::terminate; Work's call, a few instructions later, runs the Guard's
// destructor. (Work's own handler keeps its call-site range apart from
// Announce's: GCC's range for two calls with one landing pad would cover the
// call to Mix between them.) "nothrow": 250 iterations, stepped through in
// one run (the abort's time budget is checked every 1,024 steps);
// "nothrowlong": 10 million, longer than any stepping run.
__attribute__((noinline)) void RunNothrow(Victim* v, int n) {
  Guard g("nothrow", v->idx);
  Announce(v);
  for (;;) {
    sink = Mix(sink, n);
    try {
      sink = Work(sink);
    } catch (const std::runtime_error&) {
      sink = 0;
    }
    v->progress++;
  }
}

// The same with memcpy (libc), which GCC knows cannot throw. "memcpy": 64
// bytes, short enough to be stepped through in one run under
// ThreadSanitizer too, whose memcpy checks the shadow of every 8 bytes (the
// time budget is checked every 1,024 steps). "bigcopy": 4 MiB, so that the
// thread is nearly always inside memcpy; it polls "stop".
__attribute__((noinline)) void RunMemcpy(Victim* v, size_t size, bool polls) {
  Guard g(size > 64 ? "bigcopy" : "memcpy", v->idx);
  std::vector<char> a(size, 'a'), b(a.size());
  Announce(v);
  while (!polls || !stop.load(std::memory_order_relaxed)) {
    std::memcpy(b.data(), a.data(), a.size());
    try {
      sink = Work(sink + static_cast<unsigned char>(b[sink % b.size()]));
    } catch (const std::runtime_error&) {
      sink = 0;
    }
    v->progress++;
  }
}

// A frame with a destructor and a loop without calls: no call boundary.
__attribute__((noinline)) void RunNocall(Victim* v) {
  Guard g("nocall", v->idx);
  Announce(v);
  v->progress = 1;
  volatile unsigned long n = 0;
  while (!stop.load(std::memory_order_relaxed)) n = n + 1;
  sink = Work(n);
}

__attribute__((noinline)) void Loop(Victim* v) {
  while (!stop.load()) {
    sink = Work(sink);
    v->progress++;
  }
}

__attribute__((noinline)) void NoexceptFrame(Victim* v) noexcept {
  Guard g("noexcept", v->idx);
  Loop(v);
}

void RunNoexcept(Victim* v) {
  Announce(v);
  NoexceptFrame(v);
}

// A noexcept function that holds a try block, the thread looping in Loop (a
// frame without an exception table). GCC writes the call's handler entry as
// "catch runtime_error, else cleanup" and the landing pad calls
// std::terminate when the catch does not match: a forced unwind through it
// kills the process ("terminate called without an active exception").
// Clang writes a catch (...) clause whose handler calls
// __clang_call_terminate. "trycatch" as the build compiles (-O2),
// "trycatch0" at -O0 (its pad compares %rdx itself), "trycatchall" with a
// catch (...) after the typed one.
__attribute__((noinline)) void NoexceptTry(Victim* v) noexcept {
  try {
    Loop(v);
  } catch (const std::runtime_error&) {
    Say("caught " + std::to_string(v->idx));
  }
}

__attribute__((noinline, optimize("O0"))) void NoexceptTryO0(Victim* v) noexcept {
  try {
    Loop(v);
  } catch (const std::runtime_error&) {
    Say("caught " + std::to_string(v->idx));
  }
}

__attribute__((noinline)) void NoexceptTryAll(Victim* v) noexcept {
  try {
    Loop(v);
  } catch (const std::runtime_error&) {
    Say("caught " + std::to_string(v->idx));
  } catch (...) {
    Say("caught all " + std::to_string(v->idx));
  }
}

// The documented idiom, catch (abi::__forced_unwind&) { ...; throw; }, in a
// noexcept function: the rethrow cannot leave it (GCC: "'throw' will always
// call 'terminate'"). The handler runs, then std::terminate.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wterminate"
#endif
__attribute__((noinline, no_sanitize("null"))) void NoexceptRethrow(Victim* v) noexcept {
  try {
    Loop(v);
  } catch (abi::__forced_unwind&) {
    Say("forced-unwind " + std::to_string(v->idx));
    throw;
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

void RunCatchAll(Victim* v) {
  Announce(v);
  try {
    Loop(v);
  } catch (...) {
    Say("caught " + std::to_string(v->idx));
  }
}

// A forced unwind carries no C++ object: the handler's reference is bound to
// null, which UBSan (--config=ubsan) would report; the idiom is glibc's own.
__attribute__((noinline, no_sanitize("null"))) void RunRethrow(Victim* v) {
  Guard g("rethrow", v->idx);
  Announce(v);
  try {
    Loop(v);
  } catch (abi::__forced_unwind&) {
    Say("forced-unwind " + std::to_string(v->idx));
    throw;
  }
}

// "smallstack": nested frames with destructors on a thread whose stack is
// PTHREAD_STACK_MIN; the sanitizers' runtimes need more of their own.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
const size_t kSmallStack = 256 * 1024;
#else
const size_t kSmallStack = PTHREAD_STACK_MIN;   // 16 KiB (a sysconf call in glibc 2.34+)
#endif

__attribute__((noinline)) void Nest(Victim* v, int depth) {
  Guard g("nest", v->idx);
  if (depth > 0)
    Nest(v, depth - 1);
  else if (v)   // a way out, to GCC: Inner never returns (-Winfinite-recursion)
    Inner(v);
}

__attribute__((noinline, no_sanitize("null"))) void* SmallStackMain(void* arg) {
  Victim* v = static_cast<Victim*>(arg);
  Announce(v);
  try {
    Nest(v, 19);
  } catch (abi::__forced_unwind&) {
    Say("forced-unwind " + std::to_string(v->idx));
    throw;
  } catch (const std::runtime_error&) {
  }
  return nullptr;
}

void RunSmallStack(Victim* v) {
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_t th;
  int rc = pthread_attr_setstacksize(&a, kSmallStack);
  if (rc == 0) rc = pthread_create(&th, &a, SmallStackMain, v);
  pthread_attr_destroy(&a);
  if (rc != 0) {
    Say("small-create-failed " + std::to_string(rc));
    return;
  }
  void* r = nullptr;
  pthread_join(th, &r);
  Say("small-ended " + std::to_string(v->idx) + (r == PTHREAD_CANCELED ? " canceled" : " value"));
}

std::atomic<bool> throw_now{false};

__attribute__((noinline)) void SortLoop(Victim* v);

_Unwind_Reason_Code FindSortLoop(struct _Unwind_Context* ctx, void* arg) {
  if (_Unwind_GetRegionStart(ctx) == reinterpret_cast<uintptr_t>(&SortLoop)) {
    *static_cast<bool*>(arg) = true;
    return _URC_END_OF_STACK;
  }
  return _URC_NO_REASON;
}

std::atomic<bool> park{true};
Victim* sorting;

// The first sort parks in its comparator (the thread then runs a callback of
// libc) until "throw"; later sorts run through.
int Cmp(const void* a, const void* b) {
  if (park.load(std::memory_order_relaxed)) {
    sorting->progress = 1;
    while (park.load(std::memory_order_relaxed) && !throw_now.load(std::memory_order_relaxed)) {
    }
    park = false;
  }
  if (throw_now.exchange(false)) {
    bool seen = false;
    _Unwind_Backtrace(FindSortLoop, &seen);
    Say(seen ? "backtrace-ok" : "backtrace-broken");
    throw 7;
  }
  int x = *static_cast<const int*>(a), y = *static_cast<const int*>(b);
  return (x > y) - (x < y);
}

// Mostly inside qsort (libc), which calls back into the program.
__attribute__((noinline)) void SortLoop(Victim* v) {
  Guard g("qsort", v->idx);
  std::vector<int> a(10000);
  sorting = v;
  Announce(v);
  for (unsigned seed = 1;; seed++) {
    for (auto& x : a) x = static_cast<int>(seed = seed * 1103515245u + 12345u);
    try {
      qsort(a.data(), a.size(), sizeof(int), Cmp);
    } catch (int) {
      Say("caught " + std::to_string(v->idx));
    }
    v->progress++;
  }
}

void RunCv(Victim* v) {
  Guard g("cv", v->idx);
  std::unique_lock<std::mutex> lk(cv_mu);
  Announce(v);
  cv.wait(lk, [] { return stop.load(); });
}

void VictimMain(Victim* v) {
  const std::string& k = v->kind;
  if (k == "raii") RunRaii(v);
  else if (k == "nothrow") RunNothrow(v, 250);
  else if (k == "nothrowlong") RunNothrow(v, 10000000);
  else if (k == "memcpy") RunMemcpy(v, 64, false);
  else if (k == "bigcopy") RunMemcpy(v, 4 << 20, true);
  else if (k == "nocall") RunNocall(v);
  else if (k == "noexcept") RunNoexcept(v);
  else if (k == "catchall") RunCatchAll(v);
  else if (k == "trycatch") Announce(v), NoexceptTry(v);
  else if (k == "trycatch0") Announce(v), NoexceptTryO0(v);
  else if (k == "trycatchall") Announce(v), NoexceptTryAll(v);
  else if (k == "rethrownoexcept") Announce(v), NoexceptRethrow(v);
  else if (k == "rethrow") RunRethrow(v);
  else if (k == "cv") RunCv(v);
  else if (k == "qsort") SortLoop(v);
  else if (k == "smallstack") RunSmallStack(v);
  Say("returned " + std::to_string(v->idx));
}

bool trap_dfl_at_start = false;
std::atomic<int> own_traps{0}, own_trace_traps{0};

void OwnTrap(int, siginfo_t* si, void*) {
  own_traps++;
  if (si->si_code == TRAP_TRACE) own_trace_traps++;
}

void TrapInstall() {
  struct sigaction sa {};
  sa.sa_sigaction = OwnTrap;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTRAP, &sa, nullptr);
  Say(std::string("trap-installed start=") + (trap_dfl_at_start ? "dfl" : "caught"));
}

void TrapRaise() {
  __asm__ volatile("int3");   // the program's own breakpoint: SIGTRAP, SI_KERNEL
  Say("trapped " + std::to_string(own_traps.load()) + " trace=" +
      std::to_string(own_trace_traps.load()));
}

void Check() {
  unsigned long b0 = beats;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; t++)
    ts.emplace_back([t] {
      std::vector<std::unique_ptr<std::string>> keep(64);
      unsigned long seed = static_cast<unsigned long>(t) + 1;
      for (int i = 0; i < 20000; i++) {
        seed = seed * 6364136223846793005ul + 1;
        keep[(seed >> 33) % 64] = std::make_unique<std::string>(1 + (seed >> 40) % 3000, 'z');
      }
    });
  for (auto& t : ts) t.join();
  for (int i = 0; i < 200 && beats == b0; i++) usleep(10000);
  for (std::mutex* m : {&cv_mu, &out_mu}) {
    if (!m->try_lock()) {
      std::cout << "unhealthy: a mutex is locked" << std::endl;
      return;
    }
    m->unlock();
  }
  if (beats == b0) {
    std::cout << "unhealthy: heartbeat stopped" << std::endl;
    return;
  }
  Say("healthy beats=" + std::to_string(beats.load()));
}

}  // namespace

int main() {
  struct sigaction cur {};
  sigaction(SIGTRAP, nullptr, &cur);
  trap_dfl_at_start = !(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_DFL;
  std::thread hb([] {
    for (;;) {
      beats++;
      usleep(1000);
    }
  });
  hb.detach();
  Say("ready pid=" + std::to_string(getpid()));
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.rfind("start ", 0) == 0) {
      auto v = std::make_unique<Victim>();
      v->idx = static_cast<int>(victims.size());
      v->kind = line.substr(6);
      Victim* p = v.get();
      victims.push_back(std::move(v));
      p->th = std::thread(VictimMain, p);
    } else if (line.rfind("join ", 0) == 0) {
      size_t i = std::strtoul(line.c_str() + 5, nullptr, 10);
      if (i < victims.size() && victims[i]->th.joinable()) victims[i]->th.join();
      Say("joined " + std::to_string(i));
    } else if (line.rfind("progress ", 0) == 0) {
      size_t i = std::strtoul(line.c_str() + 9, nullptr, 10);
      if (i < victims.size())
        Say("progress " + std::to_string(i) + " " + std::to_string(victims[i]->progress.load()));
    } else if (line == "stop") {
      stop = true;
      std::lock_guard<std::mutex> g(cv_mu);
      cv.notify_all();
    } else if (line == "throw") {
      throw_now = true;
    } else if (line == "trap-install") {
      TrapInstall();
    } else if (line == "trap-raise") {
      TrapRaise();
    } else if (line == "check") {
      Check();
    } else if (line == "quit") {
      break;
    }
  }
  for (auto& v : victims)
    if (v->th.joinable()) v->th.detach();
  // exit, not _exit: LeakSanitizer (--config=asan) checks at exit.
  return 0;
}

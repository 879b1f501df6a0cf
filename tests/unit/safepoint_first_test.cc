// The module table is not built at start: the doorbell builds the first one
// in its signal handler (ks_redirect_table), and only where the handler
// interrupted the application's own code, or a libc system-call stub the
// application called. Anywhere else (libc's other code, the loader, the
// shim, the vDSO, no object at all) the thread could hold the loader's list
// half changed, and the handler must refuse and leave no table.
//
// The application is a library of its own (walk_spin.c): this binary links
// the shim's rooms, so its own code is the shim's.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "shim/core/ks.h"
#include "shim/safepoint/redirect.h"
#include "shim/safepoint/safepoint.h"
#include "tests/unit/beside.h"
#include "tests/unit/thread_ticker.h"

namespace {

volatile int g_stop;             // written by the handler, on the spinning thread
volatile int g_stop_in_handler;  // the same, for the spin inside a handler of the program's
std::atomic<int> g_give_up;      // the guard's timeout
std::atomic<uintptr_t> g_built_ip;
std::atomic<int> g_refused, g_after;
constexpr int kMaxRefused = 256;
uintptr_t g_refused_ip[kMaxRefused];
bool g_refused_replayed[kMaxRefused];
std::atomic<int> g_replayed;
int g_refused_in_handler;        // g_refused_ip[] from here on: the application's code
std::atomic<int> g_handler_until{kMaxRefused};   // the spin in the handler ends at this count
void (*g_spin)(volatile int *);

// A signal handler of the program's that computes in the application's code
// until 50 more ticks were refused: a handler may have interrupted the
// loader in the middle of its list, so no tick may build there.
extern "C" void OnUsr2(int) { g_spin(&g_stop_in_handler); }

// Whether the kernel delivered this tick: its context is on this thread's
// stack, just above the handler's frame. ThreadSanitizer's runtime takes a
// signal that lands in instrumented code itself and replays the handler
// later, from its next interceptor, with a saved copy of the context: by
// then the stack that context describes has moved on (a callee's frames
// are gone), so the walk may fail there even in the application's code,
// and refusing is right.
bool DeliveredByTheKernel(const void *ctx) {
  char here;
  auto c = reinterpret_cast<uintptr_t>(ctx), h = reinterpret_cast<uintptr_t>(&here);
  return c > h && c - h < 64 * 1024;
}

// The doorbell's use, at every tick of a timer aimed at the spinning thread.
extern "C" void OnProf(int, siginfo_t *, void *ctx) {
  int saved = errno;
  auto *uc = static_cast<ucontext_t *>(ctx);
  auto ip = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
  bool replayed = !DeliveredByTheKernel(ctx);
  g_replayed += replayed;
  if (g_built_ip == 0) {
    if (ks_redirect_table(uc) == 0) {
      g_built_ip = ip;
    } else {
      int k = g_refused++;
      if (k < kMaxRefused) {
        g_refused_ip[k] = ip;
        g_refused_replayed[k] = replayed;
      }
    }
  } else if (++g_after >= 200) {
    g_stop = 1;
  }
  if (g_refused >= g_handler_until) g_stop_in_handler = 1;   // 50 more in the handler
  if (g_give_up) g_stop = g_stop_in_handler = 1;
  errno = saved;
}

int KindOf(uintptr_t addr) {
  struct ks_pc_info pi;
  return ks_safepoint_lookup(addr, &pi);
}

// A thread interrupted at IP (no stack to step: none of these is a stub).
int TableAt(uintptr_t ip) {
  ucontext_t uc;
  memset(&uc, 0, sizeof uc);
  uc.uc_mcontext.gregs[REG_RIP] = static_cast<greg_t>(ip);
  return ks_redirect_table(&uc);
}

uintptr_t Sym(const char *lib, const char *name) {
  void *h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
  return h ? reinterpret_cast<uintptr_t>(dlsym(h, name)) : 0;
}

TEST(SafepointFirst, BuiltOnlyWhereTheApplicationWasInterrupted) {
  std::string lib = ks::test::Beside("libwalk_spin.so");
  void *h = dlopen(lib.c_str(), RTLD_NOW);
  ASSERT_NE(h, nullptr) << dlerror();
  auto spin = reinterpret_cast<void (*)(volatile int *)>(dlsym(h, "kw_spin"));
  ASSERT_NE(spin, nullptr);
  auto app = reinterpret_cast<uintptr_t>(spin);
  uintptr_t in_libc = Sym("libc.so.6", "memset");
  uintptr_t in_loader = getauxval(AT_BASE);   // its ELF header, in its first segment
  uintptr_t vdso = getauxval(AT_SYSINFO_EHDR);
  uintptr_t in_shim = reinterpret_cast<uintptr_t>(&ks_redirect_table);
  ASSERT_NE(in_libc, 0u);
  ASSERT_NE(in_loader, 0u);
  int on_stack = 0;
  auto stack = reinterpret_cast<uintptr_t>(&on_stack);

  // Nothing built at start: no module is known.
  EXPECT_FALSE(ks_safepoint_built());
  EXPECT_EQ(KindOf(app), KS_MOD_NONE);
  EXPECT_EQ(KindOf(in_libc), KS_MOD_NONE);

  // Without the table, each place is told by the loader's lock-free lookup.
  EXPECT_EQ(ks_safepoint_kind_now(app, nullptr), KS_MOD_APP);
  EXPECT_EQ(ks_safepoint_kind_now(in_libc, nullptr), KS_MOD_LIBC);
  EXPECT_EQ(ks_safepoint_kind_now(in_loader, nullptr), KS_MOD_LOADER);
  EXPECT_EQ(ks_safepoint_kind_now(in_shim, nullptr), KS_MOD_SHIM);
  EXPECT_EQ(ks_safepoint_kind_now(stack, nullptr), KS_MOD_NONE);
  if (vdso) EXPECT_EQ(ks_safepoint_kind_now(vdso + 0x400, nullptr), KS_MOD_VDSO);

  // Refused, and still nothing built, wherever the thread could be inside
  // the loader's list or lock.
  EXPECT_EQ(TableAt(in_libc), EAGAIN);
  EXPECT_EQ(TableAt(in_loader), EAGAIN);
  EXPECT_EQ(TableAt(in_shim), EAGAIN);
  EXPECT_EQ(TableAt(stack), EAGAIN);
  if (vdso) EXPECT_EQ(TableAt(vdso + 0x400), EAGAIN);
  EXPECT_FALSE(ks_safepoint_built());
  EXPECT_EQ(KindOf(app), KS_MOD_NONE);

  // In a signal handler, at every tick of a timer aimed at this thread:
  // first while it runs only the shim's code (this binary's) and libc's
  // (memset), where every tick is refused; then while it runs the
  // application's code inside a signal handler of the program's, refused
  // too; then while it runs the application (computing, qsort calling
  // back, memset, strlen, system calls), where the first tick in its own
  // code, or in a stub it called, builds it.
  auto ticker = std::make_unique<ks::test::ThreadTicker>(SIGPROF, OnProf, 100000);
  ASSERT_TRUE(ticker->ok());
  std::atomic<int> done{0};
  std::thread guard([&] {
    for (int i = 0; i < 500 && !done; i++) usleep(10000);   // 5 s at most
    g_give_up = 1;
  });
  static char buf[1 << 16];
  for (unsigned i = 0; g_refused < 50 && !g_stop; i++) memset(buf, static_cast<int>(i), sizeof buf);
  int refused_alone = g_refused;
  EXPECT_EQ(g_built_ip.load(), 0u) << "built in the shim's or libc's code";
  g_refused_in_handler = refused_alone;
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer's runtime holds asynchronous signals back while a
  // handler runs: no tick would reach the spin inside the handler.
  const int kInHandler = 0;
#else
  const int kInHandler = 50;
  g_spin = spin;
  g_handler_until = refused_alone + kInHandler;
  struct sigaction usr2 = {}, old_usr2 = {};
  usr2.sa_handler = OnUsr2;
  sigemptyset(&usr2.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR2, &usr2, &old_usr2), 0);
  raise(SIGUSR2);
  sigaction(SIGUSR2, &old_usr2, nullptr);
#endif
  int refused_in_handler = g_refused - g_refused_in_handler;
  EXPECT_EQ(g_built_ip.load(), 0u) << "built in a signal handler of the program's";
  spin(&g_stop);
  done = 1;
  guard.join();
  ticker.reset();

  // (A tick may land between a phase's end and its count: at least.)
  EXPECT_GE(refused_alone, 50);
  EXPECT_GE(refused_in_handler, kInHandler);
  ASSERT_NE(g_built_ip.load(), 0u) << "no tick built the table";
  printf("built at the tick %d, after %d refusals\n", g_refused.load() + 1, g_refused.load());
  // The application's code, or libc's at a system call (getppid's).
  uintptr_t b = g_built_ip;
  EXPECT_TRUE(KindOf(b) == KS_MOD_APP ||
              (KindOf(b) == KS_MOD_LIBC && (ks_pc_at_syscall(b) || ks_pc_after_syscall(b))))
      << std::hex << b;
  // Every tick came from the kernel, but under ThreadSanitizer (above).
#if !defined(__SANITIZE_THREAD__)
  EXPECT_EQ(g_replayed.load(), 0);
#endif
  printf("%d ticks replayed by a sanitizer's runtime\n", g_replayed.load());
  for (int i = 0; i < std::min(g_refused.load(), kMaxRefused); i++) {
    bool in_handler = i >= g_refused_in_handler && i < g_refused_in_handler + refused_in_handler;
    if (!in_handler && !g_refused_replayed[i])
      EXPECT_NE(KindOf(g_refused_ip[i]), KS_MOD_APP)
          << "refused in the application at " << std::hex << g_refused_ip[i];
  }
  // Inside the program's handler, the ticks that were refused there for
  // that reason alone: in the application's own code.
  int app_in_handler = 0;
  for (int i = g_refused_in_handler; i < g_refused_in_handler + refused_in_handler; i++)
    app_in_handler += i < kMaxRefused && KindOf(g_refused_ip[i]) == KS_MOD_APP;
  if (kInHandler) EXPECT_GT(app_in_handler, 0);
  // The table is whole: every kind of module is where it belongs, and the
  // program's malloc is libc's.
  EXPECT_TRUE(ks_safepoint_built());
  EXPECT_EQ(KindOf(app), KS_MOD_APP);
  EXPECT_EQ(KindOf(in_libc), KS_MOD_LIBC);
  EXPECT_EQ(KindOf(in_loader), KS_MOD_LOADER);
  EXPECT_EQ(KindOf(in_shim), KS_MOD_SHIM);
  EXPECT_EQ(ks_safepoint_own_malloc(), 0);
  // Once built, any place will do: nothing more to build.
  EXPECT_EQ(TableAt(in_libc), 0);
}


// The stub rule's test of a system call (ks_uc_at_syscall): on a real
// kernel, a thread blocked in read and signalled is found at the call (to
// be restarted, SA_RESTART) or just after it (EINTR), with rcx telling so;
// and bytes 0f 05 before a pc are not enough without rcx.
std::atomic<int> g_seen;
ucontext_t g_seen_uc;
std::atomic<int> g_seen_at_syscall;

extern "C" void OnUsr(int, siginfo_t *, void *ctx) {
  auto *uc = static_cast<ucontext_t *>(ctx);
  g_seen_uc = *uc;
  g_seen_at_syscall = ks_uc_at_syscall(uc);
  g_seen++;
}

bool InRead(pid_t tid) {
  if (!tid) return false;
  std::string path = "/proc/self/task/" + std::to_string(tid) + "/syscall";
  FILE *f = fopen(path.c_str(), "re");
  if (!f) return false;
  long nr = -1;
  int n = fscanf(f, "%ld", &nr);
  fclose(f);
  return n == 1 && nr == SYS_read;
}

void BlockedReadSignalled(bool restart) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  struct sigaction sa = {}, old = {};
  sa.sa_sigaction = OnUsr;
  sa.sa_flags = SA_SIGINFO | (restart ? SA_RESTART : 0);
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
  g_seen = 0;
  std::atomic<long> got{-2};
  std::atomic<int> err{0};
  std::atomic<pid_t> tid{0};
  std::thread reader([&] {
    tid = gettid();
    char c;
    long n = read(fds[0], &c, 1);
    err = errno;
    got = n;
  });
  // Blocked in read (/proc's syscall file names the call a thread is in).
  for (int i = 0; i < 5000 && !InRead(tid); i++) usleep(1000);
  ASSERT_TRUE(InRead(tid));
  ASSERT_EQ(pthread_kill(reader.native_handle(), SIGUSR1), 0);
  for (int i = 0; i < 2000 && !g_seen; i++) usleep(1000);
  ASSERT_EQ(g_seen.load(), 1);
  if (restart) ASSERT_EQ(write(fds[1], "x", 1), 1);
  reader.join();
  sigaction(SIGUSR1, &old, nullptr);
  close(fds[0]);
  close(fds[1]);

  auto ip = static_cast<uintptr_t>(g_seen_uc.uc_mcontext.gregs[REG_RIP]);
  auto cx = static_cast<uintptr_t>(g_seen_uc.uc_mcontext.gregs[REG_RCX]);
  EXPECT_EQ(g_seen_at_syscall.load(), 1) << std::hex << ip << " rcx " << cx;
  if (restart) {
    EXPECT_TRUE(ks_pc_at_syscall(ip));
    EXPECT_EQ(cx, ip + 2);
    EXPECT_EQ(got.load(), 1);
  } else {
    EXPECT_TRUE(ks_pc_after_syscall(ip));
    EXPECT_EQ(cx, ip);
    EXPECT_EQ(static_cast<long>(g_seen_uc.uc_mcontext.gregs[REG_RAX]), -EINTR);
    EXPECT_EQ(got.load(), -1);
    EXPECT_EQ(err.load(), EINTR);
  }
}

TEST(SafepointFirst, ASystemCallIsToldByRcxNotByTheBytesAlone) {
#if !defined(__SANITIZE_THREAD__)
  // (ThreadSanitizer's runtime takes the signal itself and runs the
  // handler later, from its read interceptor, with a context of its own.)
  BlockedReadSignalled(true);
  BlockedReadSignalled(false);
#endif

  // Code whose bytes before the pc are 0f 05 without being a syscall (here
  // the end of a mov's immediate): only an rcx left by a syscall passes.
  static const uint8_t code[] = {0xb8, 0x00, 0x00, 0x0f, 0x05, 0x90, 0x90};
  ucontext_t uc;
  memset(&uc, 0, sizeof uc);
  auto pc = reinterpret_cast<uintptr_t>(code + 5);
  uc.uc_mcontext.gregs[REG_RIP] = static_cast<greg_t>(pc);
  uc.uc_mcontext.gregs[REG_RCX] = 0x1234;
  EXPECT_TRUE(ks_pc_after_syscall(pc));
  EXPECT_FALSE(ks_uc_at_syscall(&uc));
  uc.uc_mcontext.gregs[REG_RCX] = static_cast<greg_t>(pc);
  EXPECT_TRUE(ks_uc_at_syscall(&uc));
  uc.uc_mcontext.gregs[REG_RIP] = static_cast<greg_t>(pc - 2);
  uc.uc_mcontext.gregs[REG_RCX] = static_cast<greg_t>(pc);
  EXPECT_TRUE(ks_uc_at_syscall(&uc));
  uc.uc_mcontext.gregs[REG_RCX] = static_cast<greg_t>(pc - 2);
  EXPECT_FALSE(ks_uc_at_syscall(&uc));
}

}  // namespace

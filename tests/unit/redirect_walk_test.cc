// The doorbell's safety walk (ks_redirect_safe) with the shim's CFI stepper
// against the same walk stepped by libunwind (unw_walk.h, the walk before
// cfi_step.c): interrupted by a timer wherever a program spends
// its time (its own code, libc's qsort calling back into it, memset and
// strlen, system calls), both must give the same verdict every time, and
// the walk must find the program's own code safe, first in a process that
// has not loaded libunwind at all.
//
// The program is a library of its own (walk_spin.c): this binary links the
// shim's rooms, so the module table calls it the shim. Its caller here is
// registered as the thread's start, as the shim's thread start is on the
// threads the shim created: the walk ends there.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "shim/core/registry.h"
#include "shim/safepoint/redirect.h"
#include "shim/safepoint/safepoint.h"
#include "shim/unwind/unwind.h"
#include "tests/unit/beside.h"
#include "tests/unit/thread_ticker.h"
#include "tests/unit/unw_walk.h"

namespace {

constexpr int kSamples = 10000;

volatile int g_stop;
std::atomic<int> g_both_safe, g_both_unsafe, g_only_new, g_only_old;
uintptr_t g_differ_ip[8];
std::atomic<int> g_ndiffer;
struct timespec g_deadline;

// Phase 1: only the new walk, in a process where libunwind is not loaded.
bool g_new_only;
std::atomic<int> g_alone_safe, g_alone_unsafe;

extern "C" void OnProf(int, siginfo_t *, void *ctx) {
  int saved = errno;
  auto *uc = static_cast<ucontext_t *>(ctx);
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  if (t.tv_sec > g_deadline.tv_sec) g_stop = 1;
  if (g_new_only) {
    (ks_redirect_safe(uc) ? g_alone_safe : g_alone_unsafe)++;
    if (g_alone_safe + g_alone_unsafe >= kSamples / 5) g_stop = 1;
    errno = saved;
    return;
  }
  int now = ks_redirect_safe(uc), before = ks_unw_walk_safe(uc);
  if (now && before) g_both_safe++;
  else if (!now && !before) g_both_unsafe++;
  else if (now) g_only_new++;
  else g_only_old++;
  if (now != before) {
    int i = g_ndiffer++;
    if (i < 8) g_differ_ip[i] = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
  }
  if (g_both_safe + g_both_unsafe + g_only_new + g_only_old >= kSamples) g_stop = 1;
  errno = saved;
}

void (*g_spin)(volatile int *);

__attribute__((noinline)) void RunSpin() {
  g_spin(&g_stop);
  __asm__ volatile("" ::: "memory");
}

std::string Where(uintptr_t ip) {
  Dl_info di;
  if (!dladdr(reinterpret_cast<void *>(ip), &di)) return "?";
  return std::string(di.dli_fname ? di.dli_fname : "?") + ":" + (di.dli_sname ? di.dli_sname : "?");
}

// Runs the spinner under a timer signal that walks at each interruption,
// until OnProf sets g_stop.
void Sample() {
  clock_gettime(CLOCK_MONOTONIC, &g_deadline);
  g_deadline.tv_sec += 60;
  // Every 200 us of wall time, to this thread.
  ks::test::ThreadTicker ticker(SIGPROF, OnProf, 200000);
  ASSERT_TRUE(ticker.ok());
  RunSpin();
}

TEST(RedirectWalk, NeedsNoLibunwindAndGivesItsVerdicts) {
  std::string lib = ks::test::Beside("libwalk_spin.so");
  void *h = dlopen(lib.c_str(), RTLD_NOW);
  ASSERT_NE(h, nullptr) << dlerror();
  g_spin = reinterpret_cast<void (*)(volatile int *)>(dlsym(h, "kw_spin"));
  ASSERT_NE(g_spin, nullptr);
  ASSERT_EQ(ks_safepoint_refresh(), 0);
  ks_thread_start_set(reinterpret_cast<uintptr_t>(RunSpin));

  // Phase 1: the walk needs no libunwind (the doorbell runs it before
  // control starts, when the shim has not loaded it).
  ASSERT_EQ(dlopen("libunwind.so.8", RTLD_NOW | RTLD_NOLOAD), nullptr);
  g_new_only = true;
  Sample();
  EXPECT_EQ(dlopen("libunwind.so.8", RTLD_NOW | RTLD_NOLOAD), nullptr);
  printf("without libunwind: %d safe, %d not\n", g_alone_safe.load(), g_alone_unsafe.load());
  EXPECT_GT(g_alone_safe, kSamples / 50);
  EXPECT_GT(g_alone_unsafe, 0);

  // Phase 2: both walks at each interruption.
  ASSERT_EQ(ks_unw_load(), 0);
  g_new_only = false;
  g_stop = 0;
  Sample();

  int total = g_both_safe + g_both_unsafe + g_only_new + g_only_old;
  std::string diffs;
  for (int i = 0; i < std::min<int>(g_ndiffer, 8); i++) diffs += " " + Where(g_differ_ip[i]);
  printf("%d samples: both safe %d, both unsafe %d, only the new walk safe %d, only the old %d\n",
         total, g_both_safe.load(), g_both_unsafe.load(), g_only_new.load(), g_only_old.load());
  EXPECT_GE(total, kSamples);
  EXPECT_EQ(g_only_new, 0) << "the new walk called safe where libunwind's did not:" << diffs;
  EXPECT_EQ(g_only_old, 0) << "the new walk refused where libunwind's did not:" << diffs;
  // Both kinds of place were hit: the program's own code, and libc's.
  EXPECT_GT(g_both_safe, total / 10);
  EXPECT_GT(g_both_unsafe, 0);
}

}  // namespace

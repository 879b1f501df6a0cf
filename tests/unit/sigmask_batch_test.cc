// ks_sigmask_pass inside a batch (signals.h): each call it answers without
// the kernel gives what the kernel gives, a call that changes the mask goes
// to the kernel and ends the shortcut, and the batch's end restores the mask.
// And the shim's own signal-set functions (ks.h) give glibc's sets.
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <thread>

#include "shim/core/ks.h"
#include "shim/core/registry.h"
#include "shim/core/signals.h"

namespace {

uint64_t KernelMask() {
  uint64_t m = 0;
  syscall(SYS_rt_sigprocmask, SIG_BLOCK, nullptr, &m, sizeof m);
  return m;
}

uint64_t Bits(const sigset_t& s) {
  uint64_t v;
  memcpy(&v, &s, sizeof v);
  return v;
}

sigset_t Set(std::initializer_list<int> sigs, bool full = false) {
  sigset_t s;
  if (full) sigfillset(&s); else sigemptyset(&s);
  for (int n : sigs) sigaddset(&s, n);
  return s;
}

// This thread's shortcut flag, through an empty asm (see held_list_test:
// GCC's UBSan misreads a C++ access to an initial-exec TLS member).
int Batch() {
  struct ks_thread* p = ks_self();
  __asm__("" : "+r"(p));
  return p->sig_batch;
}

struct Result {
  int rc;
  uint64_t old, after;
};

// HOW with SET (nullptr: a query) through ks_sigmask_pass, in a batch or
// straight to the kernel from the batch's mask.
Result Call(bool batch, int how, const sigset_t* set) {
  Result r{};
  std::thread([&] {
    sigset_t start = Set({SIGUSR1}), saved;
    ks_sigmask_raw(SIG_SETMASK, &start, nullptr);
    if (batch) {
      ks_sigmask_batch_begin(&saved);
    } else {
      sigset_t all = Set({}, true);
      ks_sigmask_raw(SIG_BLOCK, &all, &saved);
    }
    sigset_t old;
    memset(&old, 0xa5, sizeof old);
    r.rc = ks_sigmask_pass(how, set, &old);
    r.old = Bits(old);
    r.after = KernelMask();
    if (batch) ks_sigmask_batch_end(&saved);
  }).join();
  return r;
}

TEST(SigmaskBatch, AnswersAsTheKernelWould) {
  sigset_t full = Set({}, true), usr2 = Set({SIGUSR2}), none = Set({});
  sigset_t m = Set({});  // what the kernel keeps of "block all" (M)
  std::thread([&] {
    sigset_t saved;
    ks_sigmask_batch_begin(&saved);
    uint64_t k = KernelMask();
    memcpy(&m, &k, sizeof k);
    ks_sigmask_batch_end(&saved);
  }).join();
  struct { int how; const sigset_t* set; } cases[] = {
      {SIG_SETMASK, &full}, {SIG_SETMASK, &m}, {SIG_BLOCK, &full}, {SIG_BLOCK, &usr2},
      {SIG_UNBLOCK, &none}, {SIG_BLOCK, nullptr}, {SIG_UNBLOCK, &usr2}, {SIG_SETMASK, &usr2},
      {SIG_SETMASK, &none}, {42, &full},
  };
  for (auto& c : cases) {
    Result b = Call(true, c.how, c.set), k = Call(false, c.how, c.set);
    EXPECT_EQ(b.rc, k.rc) << c.how;
    EXPECT_EQ(b.old, k.old) << c.how;
    EXPECT_EQ(b.after, k.after) << c.how;
  }
}

TEST(SigmaskBatch, ShortcutEndsWhenTheMaskChangesAndEndRestores) {
  std::thread([] {
    sigset_t start = Set({SIGUSR1, SIGTERM}), saved, full = Set({}, true), usr2 = Set({SIGUSR2});
    ks_sigmask_raw(SIG_SETMASK, &start, nullptr);
    uint64_t before = KernelMask();
    EXPECT_EQ(Batch(), 0);
    ks_sigmask_batch_begin(&saved);
    EXPECT_EQ(Bits(saved), before);
    uint64_t all = KernelMask();
    EXPECT_EQ(Batch(), 1);
    // What libunwind does around each lookup: answered, mask unchanged.
    sigset_t old;
    EXPECT_EQ(ks_sigmask_pass(SIG_SETMASK, &full, &old), 0);
    EXPECT_EQ(Bits(old), all);
    EXPECT_EQ(ks_sigmask_pass(SIG_SETMASK, &old, nullptr), 0);
    EXPECT_EQ(Batch(), 1);
    EXPECT_EQ(KernelMask(), all);
    // A real change: done by the kernel, and the shortcut is over.
    EXPECT_EQ(ks_sigmask_pass(SIG_UNBLOCK, &usr2, nullptr), 0);
    EXPECT_EQ(Batch(), 0);
    EXPECT_EQ(KernelMask(), all & ~(1ull << (SIGUSR2 - 1)));
    EXPECT_EQ(ks_sigmask_pass(SIG_BLOCK, nullptr, &old), 0);
    EXPECT_EQ(Bits(old), KernelMask());
    ks_sigmask_batch_end(&saved);
    EXPECT_EQ(Batch(), 0);
    EXPECT_EQ(KernelMask(), before);
  }).join();
}

// ks_sigfill, ks_sigdel, ks_sigadd and ks_sigempty replace libc's in the
// shim's start and handlers: every signal, in every combination of the
// three, gives the set glibc's would (glibc's two internal signals left out
// of a full set and refused by sigaddset), in the 64 bits the kernel reads
// (glibc's functions write no more of the 128-byte type).
TEST(SignalSets, TheShimsOwnSetsAreGlibcs) {
  sigset_t mine, libc;
  ks_sigfill(&mine);
  sigfillset(&libc);
  EXPECT_EQ(Bits(mine), Bits(libc));
  for (int sig = 1; sig < _NSIG; sig++) {
    ks_sigfill(&mine);
    sigfillset(&libc);
    ks_sigdel(&mine, sig);
    sigdelset(&libc, sig);
    EXPECT_EQ(Bits(mine), Bits(libc)) << "del " << sig;
    ks_sigempty(&mine);
    sigemptyset(&libc);
    EXPECT_EQ(Bits(mine), Bits(libc));
    ks_sigadd(&mine, sig);
    sigaddset(&libc, sig);
    EXPECT_EQ(Bits(mine), Bits(libc)) << "add " << sig;
    EXPECT_EQ(sigismember(&mine, sig), sig != 32 && sig != 33) << sig;
  }
}

// ks_copy copies exactly N bytes, whatever their alignment: the redirect
// saves and restores an interrupted thread's registers and vector state
// with it.
TEST(SignalSets, TheShimsCopyCopiesExactlyItsLength) {
  unsigned char src[600], dst[600];
  for (size_t i = 0; i < sizeof src; i++) src[i] = (unsigned char)(i * 7 + 1);
  for (size_t off : {0, 1, 3, 8}) {
    for (size_t n : {0, 1, 7, 184, 512, 583}) {
      memset(dst, 0xee, sizeof dst);
      ks_copy(dst + off, src + 3, n);
      EXPECT_EQ(memcmp(dst + off, src + 3, n), 0) << off << " " << n;
      for (size_t i = 0; i < off; i++) ASSERT_EQ(dst[i], 0xee);
      for (size_t i = off + n; i < sizeof dst; i++) ASSERT_EQ(dst[i], 0xee);
    }
  }
}

}  // namespace

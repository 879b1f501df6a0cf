// The return-address trampolines (shim/deliver/abort_tramp.S) on their own: a
// patched return gives the caller its return registers back untouched, and
// while a return is patched, an exception thrown through that frame is still
// caught and both unwinders (libgcc, libunwind) still walk the stack.
#include <gtest/gtest.h>
#include <unwind.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "shim/deliver/abort_tramp.h"
#include "shim/unwind/unwind.h"

extern "C" {

// What abort_exit.c provides in the shim: here, count and carry on.
int g_fired, g_fired_k = -1;
int ks_abort_trampoline_fire(long k) {
  g_fired++;
  g_fired_k = static_cast<int>(k);
  return 0;
}
void ks_abort_exit(void) { abort(); }
}

namespace {

struct Find {
  uintptr_t start;
  uintptr_t cfa = 0;
  int after = 0;   // frames seen after the one found
};

_Unwind_Reason_Code FindCaller(struct _Unwind_Context* ctx, void* arg) {
  auto* f = static_cast<Find*>(arg);
  if (f->cfa) {
    f->after++;
    return _URC_NO_REASON;
  }
  // libgcc's CFA for a frame is its callee's CFA: the stack pointer of this
  // frame at its call, just above the callee's return address.
  if (_Unwind_GetRegionStart(ctx) == f->start) f->cfa = _Unwind_GetCFA(ctx);
  return _URC_NO_REASON;
}

// Patches, as the abort does, the return address of the call that CALLER
// (a function start) is making, with trampoline K.
void Patch(uintptr_t caller, int k) {
  Find f{caller};
  _Unwind_Backtrace(FindCaller, &f);
  ASSERT_NE(f.cfa, 0u);
  auto* slot = reinterpret_cast<uintptr_t*>(f.cfa - 8);
  ks_tramp_slots[k] = *slot;
  ks_tramp_ips[k] = *slot - 1;
  *slot = ks_tramp_addr(k);
}

struct Pair { long a, b; };        // returned in rax:rdx
struct DPair { double x, y; };     // returned in xmm0:xmm1

__attribute__((noinline)) void CallerInts();
__attribute__((noinline)) void CallerDoubles();

__attribute__((noinline)) Pair CalleeInts() {
  Patch(reinterpret_cast<uintptr_t>(&CallerInts), 3);
  return Pair{0x1111222233334444, 0x5555666677778888};
}

Pair g_pair;
DPair g_dpair;

__attribute__((noinline)) void CallerInts() { g_pair = CalleeInts(); }

__attribute__((noinline)) DPair CalleeDoubles() {
  Patch(reinterpret_cast<uintptr_t>(&CallerDoubles), 7);
  return DPair{1.25, -3.5};
}

__attribute__((noinline)) void CallerDoubles() { g_dpair = CalleeDoubles(); }

TEST(Tramp, AReturnThroughItKeepsTheReturnRegisters) {
  g_fired = 0;
  CallerInts();
  EXPECT_EQ(g_fired, 1);
  EXPECT_EQ(g_fired_k, 3);
  EXPECT_EQ(g_pair.a, 0x1111222233334444);
  EXPECT_EQ(g_pair.b, 0x5555666677778888);
  CallerDoubles();
  EXPECT_EQ(g_fired, 2);
  EXPECT_EQ(g_fired_k, 7);
  EXPECT_EQ(g_dpair.x, 1.25);
  EXPECT_EQ(g_dpair.y, -3.5);
}

// ks_tramp_addr computes where trampoline K starts (no table of them): each
// is a push of K behind a nop, and a return through each one fires K.
int g_k;
__attribute__((noinline)) void CallerAnyK();
__attribute__((noinline)) Pair CalleeAnyK() {
  Patch(reinterpret_cast<uintptr_t>(&CallerAnyK), g_k);
  return Pair{g_k, -g_k};
}
__attribute__((noinline)) void CallerAnyK() { g_pair = CalleeAnyK(); }

TEST(Tramp, EachTrampolineIsWhereItsAddressSays) {
  for (int k = 0; k < KS_TRAMP_N; k++) {
    const auto* at = reinterpret_cast<const unsigned char*>(ks_tramp_addr(k));
    EXPECT_EQ(at[-1], 0x90) << k;                         // nop
    EXPECT_EQ(at[0], 0x6a) << k;                          // push imm8
    EXPECT_EQ(at[1], k) << k;
    g_fired = 0;
    g_k = k;
    CallerAnyK();
    EXPECT_EQ(g_fired, 1) << k;
    EXPECT_EQ(g_fired_k, k);
    EXPECT_EQ(g_pair.a, k);
    EXPECT_EQ(g_pair.b, -k);
  }
}

// qsort (libc) calls back into the program; the comparator patches qsort's
// return into Sorter, as the abort does for a thread in a callback.
__attribute__((noinline)) void Sorter();
int g_calls;
int g_after_gcc, g_unw_frames;
bool g_unw_saw_sorter;

int Cmp(const void* a, const void* b) {
  if (g_calls++ == 0) {
    Patch(reinterpret_cast<uintptr_t>(&Sorter), 9);
    // libgcc sees Sorter and what called it.
    Find f{reinterpret_cast<uintptr_t>(&Sorter)};
    _Unwind_Backtrace(FindCaller, &f);
    g_after_gcc = f.cfa ? f.after : -1;
    // libunwind too, with the right stack pointers (or it stops early).
    unw_context_t uc;
    unw_cursor_t cur;
    if (ks_unw.getcontext(&uc) == 0 && ks_unw.init_local2(&cur, &uc, 0) == 0) {
      int n = 0, seen = -1;
      do {
        unw_proc_info_t pi;
        if (ks_unw.get_proc_info(&cur, &pi) == 0 &&
            pi.start_ip == reinterpret_cast<uintptr_t>(&Sorter))
          seen = n;
        n++;
      } while (ks_unw.step(&cur) > 0 && n < 200);
      g_unw_saw_sorter = seen >= 0;
      g_unw_frames = n - seen;
    }
  }
  if (g_calls == 100) throw 42;
  return *static_cast<const int*>(a) - *static_cast<const int*>(b);
}

int g_caught;

__attribute__((noinline)) void Sorter() {
  std::vector<int> v(5000);
  for (size_t i = 0; i < v.size(); i++) v[i] = static_cast<int>((i * 7919) % 5000);
  try {
    qsort(v.data(), v.size(), sizeof(int), Cmp);
  } catch (int x) {
    g_caught = x;
  }
}

TEST(Tramp, ExceptionsAndUnwindersPassAPatchedFrame) {
  ASSERT_EQ(ks_unw_load(), 0);
  g_fired = 0;
  Sorter();
  EXPECT_EQ(g_caught, 42);           // the throw went through the patched frame
  EXPECT_EQ(g_fired, 0);             // and the trampoline never ran
  EXPECT_GE(g_after_gcc, 2);         // Sorter's callers: the test body, gtest...
  EXPECT_TRUE(g_unw_saw_sorter);
  EXPECT_GE(g_unw_frames, 3);
}

}  // namespace

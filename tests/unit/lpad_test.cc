// The landing pad scan (lpad.h): on the pads GCC generated for this test's
// own functions, found through their LSDA as the abort's walk finds them
// (with calls named through the GOT slots gotsym.h finds by relocation), and
// on pads clang 14 and GCC 12 emitted, copied from objdump with their call
// targets pointed at stand-ins.
#include "shim/safepoint/lpad.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <link.h>
#include <unwind.h>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "shim/safepoint/gotsym.h"
#include "shim/safepoint/lsda.h"
#include "tests/unit/lsda_capture.h"

namespace {

// ---- Pads of real functions -------------------------------------------

using ks::lsda_capture::Capture;
using ks::lsda_capture::g_cap;
using ks::lsda_capture::Trace;
volatile int g_sink;

// Without ThreadSanitizer's instrumentation, which gives every function a
// cleanup of its own (see lsda_test.cc).
#define KS_SAMPLE __attribute__((noinline, no_sanitize("thread")))

__attribute__((noinline)) void Probe() {
  _Unwind_Backtrace(Trace, nullptr);
  g_sink = g_sink + 1;
}

struct Noisy {
  KS_SAMPLE ~Noisy() { g_sink = g_sink + 1; }
};

KS_SAMPLE void TryInNoexcept() noexcept {
  try {
    Probe();
  } catch (const std::runtime_error&) {
    g_sink = 0;
  }
}

KS_SAMPLE __attribute__((optimize("O0"))) void TryInNoexceptO0() noexcept {
  try {
    Probe();
  } catch (const std::runtime_error&) {
    g_sink = 0;
  }
}

// The destructor runs first (the selector kept in a callee-saved register
// across its call), then std::terminate.
KS_SAMPLE void DtorInTryInNoexcept() noexcept {
  try {
    Noisy n;
    Probe();
  } catch (const std::runtime_error&) {
    g_sink = 0;
  }
}

// Not noexcept: the same "catch, else cleanup" chain, whose cleanup runs the
// destructor and resumes (_Unwind_Resume).
KS_SAMPLE void DtorAndTry() {
  Noisy n;
  try {
    Probe();
  } catch (const std::runtime_error&) {
    g_sink = 0;
  }
}

KS_SAMPLE void WithDtor() {
  Noisy n;
  Probe();
}

// The executable's GOT slots for std::terminate and friends.
ks_gotsym g_got;

int CollectSelf(struct dl_phdr_info* info, size_t, void*) {
  ks_gotsym_collect(info, &g_got);
  return 1;   // the first entry is the executable
}

size_t ReadSelf(uintptr_t addr, uint8_t* buf, size_t n, void*) {
  std::memcpy(buf, reinterpret_cast<const void*>(addr), n);   // this test's own text
  return n;
}

int SlotKind(uintptr_t slot) { return ks_gotsym_kind(&g_got, slot); }

// A PLT stub ([endbr64] [bnd] jmp *slot(%rip)) is named by its slot.
int TargetSelf(uintptr_t addr, int slot, void*) {
  if (slot) return SlotKind(addr);
  const uint8_t* b = reinterpret_cast<const uint8_t*>(addr);
  size_t i = 0;
  if (b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && b[3] == 0xfa) i = 4;
  if (b[i] == 0xf2) i++;
  if (b[i] == 0xff && b[i + 1] == 0x25) {
    int32_t d;
    std::memcpy(&d, b + i + 2, 4);
    return SlotKind(addr + i + 6 + d);
  }
  return KS_LP_OTHER;
}

// The unwind goes on from a rethrow or _Unwind_Resume: counted; what the
// frame's LSDA does there is padcheck.c's (abort_test's rethrow kinds).
int g_unwinds;
int UnwindsSelf(uintptr_t, void*) {
  g_unwinds++;
  return KS_LP_CLEAN;
}

struct Pad {
  ks_lsda_out out{};
  int scan = -1;
};

Pad PadOf(void (*fn)()) {
  if (g_got.n == 0) dl_iterate_phdr(CollectSelf, nullptr);
  g_cap = Capture{};
  g_cap.want_start = reinterpret_cast<uintptr_t>(fn);
  fn();
  Pad p;
  EXPECT_TRUE(g_cap.found && g_cap.lsda);
  if (!g_cap.found || !g_cap.lsda) return p;
  ks_lsda_in in{};
  in.buf = g_cap.lsda;
  in.len = 4096;
  in.addr = reinterpret_cast<uintptr_t>(g_cap.lsda);
  in.func_start = g_cap.start;
  in.ip = g_cap.ip;
  ks_lsda_eval(&in, &p.out);
  static const ks_lp_env env = {ReadSelf, TargetSelf, UnwindsSelf, nullptr};
  static ks_lp_work work;
  if (p.out.landing_pad) p.scan = ks_lp_scan(&env, p.out.landing_pad, p.out.selector, &work);
  return p;
}

TEST(LpadGot, TheExecutablesSlotsAreNamedByRelocation) {
  dl_iterate_phdr(CollectSelf, nullptr);
  bool term = false, resume = false;
  for (int i = 0; i < g_got.n; i++) {
    term |= g_got.kind[i] == KS_LP_TERMINATE;
    resume |= g_got.kind[i] == KS_LP_UNWINDS;
  }
  EXPECT_TRUE(term) << "no GOT slot for std::terminate";
  EXPECT_TRUE(resume) << "no GOT slot for _Unwind_Resume";
  EXPECT_EQ(ks_gotsym_kind_of_name("_ZSt9terminatev"), KS_LP_TERMINATE);
  EXPECT_EQ(ks_gotsym_kind_of_name("__cxa_call_terminate"), KS_LP_TERMINATE);
  EXPECT_EQ(ks_gotsym_kind_of_name("_Unwind_Resume"), KS_LP_UNWINDS);
  EXPECT_EQ(ks_gotsym_kind_of_name("__cxa_rethrow"), KS_LP_UNWINDS);
  EXPECT_EQ(ks_gotsym_kind_of_name("__stack_chk_fail"), KS_LP_NORETURN);
  EXPECT_EQ(ks_gotsym_kind_of_name("_ZSt20__throw_length_errorPKc"), KS_LP_UNWINDS);
  EXPECT_EQ(ks_gotsym_kind_of_name("__asan_report_load8"), KS_LP_NORETURN);
  EXPECT_EQ(ks_gotsym_kind_of_name("__asan_report_load8_noabort"), KS_LP_OTHER);
  EXPECT_EQ(ks_gotsym_kind_of_name("__ubsan_handle_type_mismatch_v1_abort"), KS_LP_NORETURN);
  EXPECT_EQ(ks_gotsym_kind_of_name("__ubsan_handle_type_mismatch_v1"), KS_LP_OTHER);
  EXPECT_EQ(ks_gotsym_kind_of_name("free"), KS_LP_OTHER);
}

// The LSDA says "cleanup" (lsda_test checks the reader); the pad's code
// calls std::terminate.
TEST(LpadReal, NoexceptFunctionWithATryBlockTerminates) {
  Pad p = PadOf(TryInNoexcept);
  EXPECT_EQ(p.out.verdict, KS_LSDA_CLEANUP);
  EXPECT_EQ(p.out.selector, 0);
  EXPECT_EQ(p.scan, KS_LP_TERMINATES);
}

TEST(LpadReal, NoexceptFunctionWithATryBlockAtO0Terminates) {
  Pad p = PadOf(TryInNoexceptO0);
  EXPECT_EQ(p.out.verdict, KS_LSDA_CLEANUP);
  EXPECT_EQ(p.scan, KS_LP_TERMINATES);
}

TEST(LpadReal, DestructorThenTerminateInANoexceptFunction) {
  Pad p = PadOf(DtorInTryInNoexcept);
  EXPECT_EQ(p.out.verdict, KS_LSDA_CLEANUP);
  EXPECT_EQ(p.scan, KS_LP_TERMINATES);
}

TEST(LpadReal, DestructorsThatResumeAreClean) {
  g_unwinds = 0;
  Pad a = PadOf(DtorAndTry);
  EXPECT_EQ(a.out.verdict, KS_LSDA_CLEANUP);
  EXPECT_EQ(a.scan, KS_LP_CLEAN);
  Pad b = PadOf(WithDtor);
  EXPECT_EQ(b.out.verdict, KS_LSDA_CLEANUP);
  EXPECT_EQ(b.scan, KS_LP_CLEAN);
  EXPECT_EQ(g_unwinds, 2);   // each ends in _Unwind_Resume, asked about
}

// ---- Pads copied from objdump -----------------------------------------

constexpr uintptr_t kBase = 0x10000;
constexpr uintptr_t kTerminate = 0x90000, kOther = 0x91000, kResume = 0x92000,
                    kNoreturn = 0x93000;

struct Code {
  std::vector<uint8_t> b;
};

size_t ReadCode(uintptr_t addr, uint8_t* buf, size_t n, void* arg) {
  const Code* c = static_cast<const Code*>(arg);
  if (addr < kBase || addr >= kBase + c->b.size()) return 0;
  size_t off = addr - kBase;
  size_t k = std::min(n, c->b.size() - off);
  std::memcpy(buf, c->b.data() + off, k);
  return k;
}

int TargetCode(uintptr_t addr, int slot, void*) {
  if (slot) return KS_LP_OTHER;
  if (addr == kTerminate) return KS_LP_TERMINATE;
  if (addr == kNoreturn) return KS_LP_NORETURN;
  return addr == kResume ? KS_LP_UNWINDS : KS_LP_OTHER;
}

// What the LSDA says where the unwind goes on (set per test) and where.
int g_unwinds_to = KS_LP_CLEAN;
uintptr_t g_unwinds_ret;
int UnwindsCode(uintptr_t ret, void*) {
  g_unwinds_ret = ret;
  return g_unwinds_to;
}

// Points the call (e8) at OFF to TARGET.
void Call(Code& c, size_t off, uintptr_t target) {
  ASSERT_EQ(c.b[off], 0xe8);
  int32_t d = static_cast<int32_t>(target - (kBase + off + 5));
  std::memcpy(&c.b[off + 1], &d, 4);
}

int Scan(Code& c, size_t pad, int64_t selector) {
  ks_lp_env env = {ReadCode, TargetCode, UnwindsCode, &c};
  static ks_lp_work work;
  return ks_lp_scan(&env, kBase + pad, selector, &work);
}

// clang++-14 -O2: F() noexcept { try { Loop(); } catch (const E&) {} }.
// The catch (...) clause (filter 1) that stands for noexcept enters the pad
// with 1; the typed catch has 2.
TEST(LpadBytes, ClangO2) {
  Code c{{0x50, 0xe8, 0, 0, 0, 0, 0x58, 0xc3,                  // push; call Loop; pop; ret
          0x83, 0xfa, 0x02, 0x75, 0x0f,                        // 8: cmp $2,%edx; jne 1c
          0x48, 0x89, 0xc7, 0xe8, 0, 0, 0, 0,                  // d: mov; call begin_catch
          0xe8, 0, 0, 0, 0, 0xeb, 0xea,                        // 15: call end_catch; jmp 6
          0x48, 0x89, 0xc7, 0xe8, 0, 0, 0, 0}};                // 1c: call __clang_call_terminate
  Call(c, 0x10, kOther);
  Call(c, 0x15, kOther);
  Call(c, 0x1f, kTerminate);
  EXPECT_EQ(Scan(c, 8, 1), KS_LP_TERMINATES);
  EXPECT_EQ(Scan(c, 8, 2), KS_LP_CLEAN);
}

// clang++-14 -O0: the selector goes through a stack slot.
TEST(LpadBytes, ClangO0SpillsTheSelector) {
  Code c{{0x48, 0x89, 0xc1,                    // 0: mov %rax,%rcx
          0x89, 0xd0,                          // 3: mov %edx,%eax
          0x48, 0x89, 0x4d, 0xf8,              // 5: mov %rcx,-0x8(%rbp)
          0x89, 0x45, 0xf4,                    // 9: mov %eax,-0xc(%rbp)
          0x8b, 0x45, 0xf4,                    // c: mov -0xc(%rbp),%eax
          0xb9, 0x02, 0, 0, 0,                 // f: mov $2,%ecx
          0x39, 0xc8,                          // 14: cmp %ecx,%eax
          0x0f, 0x85, 0x0b, 0, 0, 0,           // 16: jne 27
          0x48, 0x8b, 0x7d, 0xf8,              // 1c: mov -0x8(%rbp),%rdi
          0xe8, 0, 0, 0, 0,                    // 20: call begin_catch
          0xc3, 0x90,                          // 25: ret (stands for the way back)
          0x48, 0x8b, 0x7d, 0xf8,              // 27: mov -0x8(%rbp),%rdi
          0xe8, 0, 0, 0, 0}};                  // 2b: call __clang_call_terminate
  Call(c, 0x20, kOther);
  Call(c, 0x2b, kTerminate);
  EXPECT_EQ(Scan(c, 0, 1), KS_LP_TERMINATES);
  EXPECT_EQ(Scan(c, 0, 2), KS_LP_CLEAN);
}

// g++-12 -O2, two typed catches in a noexcept function: sub $1; cmp $1; ja.
TEST(LpadBytes, GccO2TwoCatches) {
  Code c{{0x48, 0x89, 0xd0,                    // 0: mov %rdx,%rax (the hot part)
          0x48, 0x83, 0xe8, 0x01,              // 3: sub $1,%rax
          0x48, 0x83, 0xf8, 0x01,              // 7: cmp $1,%rax
          0x77, 0x06,                          // b: ja 13
          0xe8, 0, 0, 0, 0,                    // d: call begin_catch
          0xc3,                                // 12: ret
          0xe8, 0, 0, 0, 0}};                  // 13: call std::terminate
  Call(c, 0xd, kOther);
  Call(c, 0x13, kTerminate);
  EXPECT_EQ(Scan(c, 0, 0), KS_LP_TERMINATES);   // the forced unwind's cleanup
  EXPECT_EQ(Scan(c, 0, 1), KS_LP_CLEAN);
  EXPECT_EQ(Scan(c, 0, 2), KS_LP_CLEAN);
  EXPECT_EQ(Scan(c, 0, 3), KS_LP_TERMINATES);
}

// A cleanup that resumes; a branch on a register it does not know follows
// both sides; an instruction it does not read, and a loop.
TEST(LpadBytes, ResumeUnknownBranchesAndLimits) {
  Code resume{{0x48, 0x89, 0xc3,               // mov %rax,%rbx
               0xe8, 0, 0, 0, 0,               // call ~D
               0x48, 0x89, 0xdf,               // mov %rbx,%rdi
               0xe8, 0, 0, 0, 0}};             // call _Unwind_Resume
  Call(resume, 3, kOther);
  Call(resume, 11, kResume);
  g_unwinds_to = KS_LP_CLEAN;
  EXPECT_EQ(Scan(resume, 0, 0), KS_LP_CLEAN);
  EXPECT_EQ(g_unwinds_ret, kBase + 16);   // asked about the call's return address
  // A rethrow into a place where the frame's LSDA calls std::terminate
  // (catch (abi::__forced_unwind&) { throw; } in a noexcept function).
  g_unwinds_to = KS_LP_TERMINATES;
  EXPECT_EQ(Scan(resume, 0, 0), KS_LP_TERMINATES);
  g_unwinds_to = KS_LP_UNKNOWN;
  EXPECT_EQ(Scan(resume, 0, 0), KS_LP_UNKNOWN);
  g_unwinds_to = KS_LP_CLEAN;
  Code noret{{0xe8, 0, 0, 0, 0,                // call __stack_chk_fail
              0x0f, 0xa2}};                    // what follows is not followed
  Call(noret, 0, kNoreturn);
  EXPECT_EQ(Scan(noret, 0, 0), KS_LP_CLEAN);

  Code both{{0x48, 0x85, 0xff,                 // test %rdi,%rdi (unknown)
             0x74, 0x01,                       // je 6
             0xc3,                             // ret
             0xe8, 0, 0, 0, 0}};               // 6: call std::terminate
  Call(both, 6, kTerminate);
  EXPECT_EQ(Scan(both, 0, 0), KS_LP_TERMINATES);

  Code odd{{0x0f, 0xa2, 0xc3}};                // cpuid: not read
  EXPECT_EQ(Scan(odd, 0, 0), KS_LP_UNKNOWN);
  Code loop{{0x90, 0xeb, 0xfd}};               // nop; jmp 0
  EXPECT_EQ(Scan(loop, 0, 0), KS_LP_CLEAN);
  Code cut{{0x48, 0x83}};                      // truncated
  EXPECT_EQ(Scan(cut, 0, 0), KS_LP_UNKNOWN);
}

}  // namespace

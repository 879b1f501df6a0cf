// The LSDA evaluator against tables GCC generated for real functions (each
// captured from the stack while the function is inside a call), against
// hand-made tables for the encodings GCC rarely emits, and under truncation
// and random damage with a guard page right after the buffer.
#include "shim/safepoint/lsda.h"

#include <cxxabi.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>
#include <unwind.h>

#include <cstring>
#include <random>
#include <stdexcept>
#include <typeinfo>
#include <vector>

#include "tests/unit/lsda_capture.h"

extern "C" void ks_lsda_c_sample(void (*fn)(void));   // lsda_c_sample.c: a C cleanup
extern "C" void* ks_lsda_c_sample_addr(void);

namespace {

using ks::lsda_capture::Capture;
using ks::lsda_capture::g_cap;
using ks::lsda_capture::Trace;
volatile int g_sink;

// The sample functions are built as in a plain build: ThreadSanitizer's
// instrumentation gives every function an exception cleanup (its
// __tsan_func_exit), which would turn every verdict below into "cleanup".
#define KS_SAMPLE __attribute__((noinline, no_sanitize("thread")))

// Not noexcept: the compiler must assume it throws.
__attribute__((noinline)) void Probe(int which) {
  if (which == g_cap.which) _Unwind_Backtrace(Trace, nullptr);
  g_sink = g_sink + 1;
}

struct Noisy {
  KS_SAMPLE ~Noisy() { g_sink = g_sink + 1; }
};

KS_SAMPLE void WithDtor() { Noisy n; Probe(1); }
KS_SAMPLE void Noexcept() noexcept { Probe(1); }
KS_SAMPLE void ThrowSpec() throw() { Probe(1); }
KS_SAMPLE void CatchAll() {
  try { Probe(1); } catch (...) { g_sink = 2; }
}
KS_SAMPLE void CatchForced() {
  try { Probe(1); } catch (abi::__forced_unwind&) { g_sink = 3; throw; }
}
KS_SAMPLE void CatchTyped() {
  try { Probe(1); } catch (std::runtime_error&) { g_sink = 4; }
}
KS_SAMPLE void CatchTypedWithDtor() {
  Noisy n;
  try { Probe(1); } catch (std::runtime_error&) { g_sink = 5; }
}
KS_SAMPLE void ForcedThenAll() {
  try { Probe(1); } catch (abi::__forced_unwind&) { throw; } catch (...) { g_sink = 6; }
}
KS_SAMPLE void TypedThenAll() {
  try { Probe(1); } catch (std::runtime_error&) { g_sink = 7; } catch (...) { g_sink = 8; }
}
// GCC: "catch runtime_error, else cleanup", the cleanup standing for the
// noexcept around the try block; its landing pad calls std::terminate.
KS_SAMPLE void TryInNoexcept() noexcept {
  try { Probe(1); } catch (std::runtime_error&) { g_sink = 10; }
}
KS_SAMPLE void NothrowProbe() noexcept { Probe(1); }
// The call to NothrowProbe gets no call-site entry (it cannot throw); the
// typed handler keeps the last call's range apart from the first's, which
// would otherwise cover it.
KS_SAMPLE void AtNothrowCall() {
  Noisy n;
  Probe(2);
  NothrowProbe();
  try { Probe(3); } catch (std::runtime_error&) { g_sink = 9; }
}
KS_SAMPLE void Mixed() {
  Probe(1);   // nothing live yet
  Noisy n;
  Probe(2);   // n must be destroyed
}

int IsForcedUnwind(uint64_t ptr, int indirect, void*) {
  const std::type_info* t =
      indirect ? *reinterpret_cast<const std::type_info* const*>(ptr)
               : reinterpret_cast<const std::type_info*>(ptr);
  return t == &typeid(abi::__forced_unwind);
}

int NeverForced(uint64_t, int, void*) { return 0; }

struct Captured {
  std::vector<uint8_t> bytes;   // enough of the LSDA for this IP
  uintptr_t addr = 0, start = 0, ip = 0;
};

ks_lsda_in In(const uint8_t* buf, size_t len, uintptr_t addr, uintptr_t start, uintptr_t ip,
              bool c = false, int (*cb)(uint64_t, int, void*) = IsForcedUnwind) {
  ks_lsda_in in{};
  in.buf = buf;
  in.len = len;
  in.addr = addr;
  in.func_start = start;
  in.ip = ip;
  in.c_personality = c;
  in.is_forced_unwind = cb;
  return in;
}

// Runs FN until Probe(WHICH) captures FN's frame.
Captured RunUntil(void (*fn)(), uintptr_t start, int which) {
  g_cap = Capture{};
  g_cap.want_start = start;
  g_cap.which = which;
  fn();
  Captured c;
  EXPECT_TRUE(g_cap.found);
  if (!g_cap.found || !g_cap.lsda) return c;
  c.addr = reinterpret_cast<uintptr_t>(g_cap.lsda);
  c.start = g_cap.start;
  c.ip = g_cap.ip;
  // The shortest prefix that gives the verdict the whole table gives.
  ks_lsda_out full{}, o{};
  ks_lsda_in in = In(g_cap.lsda, 1 << 16, c.addr, c.start, c.ip);
  ks_lsda_eval(&in, &full);
  size_t n = 1;
  for (; n < (1u << 16); n++) {
    in.len = n;
    ks_lsda_eval(&in, &o);
    if (o.verdict == full.verdict && o.landing_pad == full.landing_pad &&
        o.nothrow_site == full.nothrow_site && o.selector == full.selector)
      break;
  }
  c.bytes.assign(g_cap.lsda, g_cap.lsda + n);
  return c;
}

ks_lsda_out Eval(const Captured& c) {
  ks_lsda_in in = In(c.bytes.data(), c.bytes.size(), c.addr, c.start, c.ip);
  ks_lsda_out o{};
  ks_lsda_eval(&in, &o);
  return o;
}

int Verdict(const Captured& c) { return Eval(c).verdict; }

uintptr_t A(void (*fn)()) { return reinterpret_cast<uintptr_t>(fn); }

TEST(Lsda, CleanupWhereAnObjectIsLive) {
  Captured c = RunUntil(WithDtor, A(WithDtor), 1);
  ASSERT_FALSE(c.bytes.empty());
  EXPECT_EQ(Verdict(c), KS_LSDA_CLEANUP);
}

// A noexcept function terminates anywhere in it (GCC: an empty call-site
// table), not only at this call.
TEST(Lsda, NoexceptAndThrowSpecTerminate) {
  Captured c = RunUntil(Noexcept, A(Noexcept), 1);
  ASSERT_FALSE(c.bytes.empty());
  EXPECT_EQ(Verdict(c), KS_LSDA_TERMINATE);
  EXPECT_EQ(Eval(c).nothrow_site, 0);
  Captured t = RunUntil(ThrowSpec, A(ThrowSpec), 1);
  ASSERT_FALSE(t.bytes.empty());
  EXPECT_EQ(Verdict(t), KS_LSDA_TERMINATE);
  EXPECT_EQ(Eval(t).nothrow_site, 0);
}

// At a call the compiler knew cannot throw, in a function whose other calls
// have entries: terminate at that IP only.
TEST(Lsda, ACallThatCannotThrowTerminatesThereOnly) {
  Captured c = RunUntil(AtNothrowCall, A(AtNothrowCall), 1);
  ASSERT_FALSE(c.bytes.empty());
  ks_lsda_out o = Eval(c);
  EXPECT_EQ(o.verdict, KS_LSDA_TERMINATE);
  EXPECT_EQ(o.nothrow_site, 1);
  Captured before = RunUntil(AtNothrowCall, A(AtNothrowCall), 2);
  Captured after = RunUntil(AtNothrowCall, A(AtNothrowCall), 3);
  EXPECT_EQ(Verdict(before), KS_LSDA_CLEANUP);
  EXPECT_EQ(Verdict(after), KS_LSDA_CLEANUP);
  EXPECT_EQ(Eval(after).nothrow_site, 0);
}

// The table alone reads a try block in a noexcept function as a cleanup,
// like a destructor's: only the landing pad's code (lpad_test) tells that it
// calls std::terminate. The pad is entered with selector 0.
TEST(Lsda, ATryBlockInANoexceptFunctionReadsAsACleanup) {
  Captured c = RunUntil(TryInNoexcept, A(TryInNoexcept), 1);
  ASSERT_FALSE(c.bytes.empty());
  ks_lsda_out o = Eval(c);
  EXPECT_EQ(o.verdict, KS_LSDA_CLEANUP);
  EXPECT_NE(o.landing_pad, 0u);
  EXPECT_EQ(o.selector, 0);
  EXPECT_EQ(o.nothrow_site, 0);
}

// A handler's pad is entered with its catch clause's filter.
TEST(Lsda, TheSelectorIsTheMatchingClausesFilter) {
  ks_lsda_out all = Eval(RunUntil(CatchAll, A(CatchAll), 1));
  EXPECT_EQ(all.verdict, KS_LSDA_CATCH_ALL);
  EXPECT_EQ(all.selector, 1);
  ks_lsda_out forced = Eval(RunUntil(CatchForced, A(CatchForced), 1));
  EXPECT_EQ(forced.verdict, KS_LSDA_RETHROWS);
  EXPECT_EQ(forced.selector, 1);
  // Two clauses: the catch (...) is not the first type in the table.
  ks_lsda_out two = Eval(RunUntil(TypedThenAll, A(TypedThenAll), 1));
  EXPECT_EQ(two.verdict, KS_LSDA_CATCH_ALL);
  EXPECT_EQ(two.selector, 2);
  EXPECT_EQ(Eval(RunUntil(WithDtor, A(WithDtor), 1)).selector, 0);
}

TEST(Lsda, CatchClauses) {
  EXPECT_EQ(Verdict(RunUntil(CatchAll, A(CatchAll), 1)), KS_LSDA_CATCH_ALL);
  EXPECT_EQ(Verdict(RunUntil(CatchForced, A(CatchForced), 1)), KS_LSDA_RETHROWS);
  EXPECT_EQ(Verdict(RunUntil(CatchTyped, A(CatchTyped), 1)), KS_LSDA_NOTHING);
  EXPECT_EQ(Verdict(RunUntil(CatchTypedWithDtor, A(CatchTypedWithDtor), 1)), KS_LSDA_CLEANUP);
  EXPECT_EQ(Verdict(RunUntil(ForcedThenAll, A(ForcedThenAll), 1)), KS_LSDA_RETHROWS);
  EXPECT_EQ(Verdict(RunUntil(TypedThenAll, A(TypedThenAll), 1)), KS_LSDA_CATCH_ALL);
}

TEST(Lsda, CallSitesInOneFunctionDiffer) {
  Captured before = RunUntil(Mixed, A(Mixed), 1);
  Captured after = RunUntil(Mixed, A(Mixed), 2);
  ASSERT_FALSE(before.bytes.empty());
  ASSERT_FALSE(after.bytes.empty());
  EXPECT_EQ(Verdict(before), KS_LSDA_NOTHING);
  EXPECT_EQ(Verdict(after), KS_LSDA_CLEANUP);
  // An IP before the function's first call site is in no entry: C++ would
  // terminate there, the C personality does nothing.
  ks_lsda_in in = In(after.bytes.data(), after.bytes.size(), after.addr, after.start, after.start);
  ks_lsda_out o{};
  EXPECT_EQ(ks_lsda_eval(&in, &o), KS_LSDA_TERMINATE);
  EXPECT_EQ(o.nothrow_site, 1);   // the other call has an entry
  in.c_personality = 1;
  EXPECT_EQ(ks_lsda_eval(&in, &o), KS_LSDA_NOTHING);
  EXPECT_EQ(o.nothrow_site, 0);
}

void CSampleProbe() { Probe(1); }
void RunCSample() { ks_lsda_c_sample(CSampleProbe); }

TEST(Lsda, CCleanupAttribute) {
  Captured c = RunUntil(RunCSample, reinterpret_cast<uintptr_t>(ks_lsda_c_sample_addr()), 1);
  ASSERT_FALSE(c.bytes.empty());
  ks_lsda_in in = In(c.bytes.data(), c.bytes.size(), c.addr, c.start, c.ip, true);
  ks_lsda_out o{};
  EXPECT_EQ(ks_lsda_eval(&in, &o), KS_LSDA_CLEANUP);
  EXPECT_NE(o.landing_pad, 0u);
}

// Hand-made: uleb128 call sites, an explicit LPStart, absolute udata4 type
// entries, and a non-empty exception spec (passed by a forced unwind).
TEST(Lsda, HandMadeEncodings) {
  // LPStart absptr = 0x1000 | TType udata4, offset | call sites uleb128, 8 bytes
  // | two entries | actions 1 (filter -1) and 3 (filter 1) | type 1 | TType:
  // the exception spec {1} of filter -1.
  std::vector<uint8_t> t = {0x00, 0x00, 0x10, 0, 0, 0, 0, 0, 0,
                            0x03, 29 - 11,
                            0x01, 0x08,
                            0x10, 0x04, 0x20, 0x01,   // [0x10,0x14) lp 0x20 action 1
                            0x14, 0x04, 0x30, 0x03,   // [0x14,0x18) lp 0x30 action 3
                            0x7f, 0x00, 0x01, 0x00,
                            0x44, 0x33, 0x22, 0x11,
                            0x01, 0x00};
  std::vector<uint64_t> seen;
  auto cb = [](uint64_t p, int ind, void* arg) {
    static_cast<std::vector<uint64_t>*>(arg)->push_back(p);
    EXPECT_EQ(ind, 0);
    return 0;
  };
  ks_lsda_in in = In(t.data(), t.size(), 0x500000, 0x400000, 0x400011);
  in.is_forced_unwind = cb;
  in.arg = &seen;
  ks_lsda_out o{};
  EXPECT_EQ(ks_lsda_eval(&in, &o), KS_LSDA_NOTHING);   // non-empty spec: passes
  EXPECT_EQ(o.landing_pad, 0x1020u);
  in.ip = 0x400015;
  EXPECT_EQ(ks_lsda_eval(&in, &o), KS_LSDA_NOTHING);   // typed catch: no match
  EXPECT_EQ(o.landing_pad, 0x1030u);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], 0x11223344u);
  // Empty spec at TType: terminate.
  t[29] = 0x00;
  in.ip = 0x400011;
  EXPECT_EQ(ks_lsda_eval(&in, &o), KS_LSDA_TERMINATE);
  // Past the table.
  in.ip = 0x400018;
  EXPECT_EQ(ks_lsda_eval(&in, &o), KS_LSDA_TERMINATE);
  // A datarel LPStart is not supported.
  t[0] = 0x30;
  EXPECT_EQ(ks_lsda_eval(&in, &o), KS_LSDA_UNSUPPORTED);
}

TEST(Lsda, ActionCycleIsMalformed) {
  // One call site [0,0x10) lp 1 action 1; action 1: filter 0, next: itself.
  std::vector<uint8_t> t = {0xff, 0xff, 0x01, 0x04, 0x00, 0x10, 0x01, 0x01, 0x00, 0x7f};
  ks_lsda_in in = In(t.data(), t.size(), 0x1000, 0x2000, 0x2004);
  ks_lsda_out o{};
  EXPECT_EQ(ks_lsda_eval(&in, &o), KS_LSDA_MALFORMED);
  // Same with the chain ending: a plain cleanup.
  t[9] = 0x00;
  EXPECT_EQ(ks_lsda_eval(&in, &o), KS_LSDA_CLEANUP);
}

// A buffer whose last byte is the last byte of a page, with no page after.
struct Guarded {
  uint8_t* page = nullptr;
  size_t pg = 0;
  explicit Guarded() {
    pg = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void* p = mmap(nullptr, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    page = static_cast<uint8_t*>(p);
    mprotect(page + pg, pg, PROT_NONE);
  }
  ~Guarded() { munmap(page, 2 * pg); }
  uint8_t* Place(const std::vector<uint8_t>& v) {
    uint8_t* at = page + pg - v.size();
    if (!v.empty()) memcpy(at, v.data(), v.size());   // an empty vector's data() may be null
    return at;
  }
};

TEST(Lsda, TruncatedAndDamagedTablesStayInBounds) {
  std::vector<Captured> all = {RunUntil(WithDtor, A(WithDtor), 1),   RunUntil(Noexcept, A(Noexcept), 1),
                               RunUntil(CatchAll, A(CatchAll), 1),   RunUntil(CatchForced, A(CatchForced), 1),
                               RunUntil(TypedThenAll, A(TypedThenAll), 1), RunUntil(Mixed, A(Mixed), 2)};
  Guarded g;
  std::mt19937 rng(7);
  for (const Captured& c : all) {
    ASSERT_FALSE(c.bytes.empty());
    int want = Verdict(c);
    // Exactly the bytes it needs, against the guard page: same verdict.
    uint8_t* at = g.Place(c.bytes);
    ks_lsda_in in = In(at, c.bytes.size(), c.addr, c.start, c.ip);
    ks_lsda_out o{};
    EXPECT_EQ(ks_lsda_eval(&in, &o), want);
    // Every truncation: no read past the end (the guard page would fault).
    in.is_forced_unwind = NeverForced;
    for (size_t n = 0; n < c.bytes.size(); n++) {
      std::vector<uint8_t> cut(c.bytes.begin(), c.bytes.begin() + static_cast<long>(n));
      in.buf = g.Place(cut);
      in.len = n;
      int v = ks_lsda_eval(&in, &o);
      EXPECT_GE(v, KS_LSDA_NOTHING);
      EXPECT_LE(v, KS_LSDA_MALFORMED);
    }
    // Random damage, random IPs.
    for (int i = 0; i < 20000; i++) {
      std::vector<uint8_t> d = c.bytes;
      int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; f++) d[rng() % d.size()] = static_cast<uint8_t>(rng());
      in.buf = g.Place(d);
      in.len = d.size();
      in.ip = c.start + rng() % 256;
      int v = ks_lsda_eval(&in, &o);
      ASSERT_GE(v, KS_LSDA_NOTHING);
      ASSERT_LE(v, KS_LSDA_MALFORMED);
    }
  }
}

}  // namespace

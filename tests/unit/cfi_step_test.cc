// The doorbell walk's CFI stepper (shim/safepoint/cfi_step.h) against
// libunwind, frame by frame (ip, sp, procedure start, signal frame), on real
// stacks: the test's own functions at -O0 and -O2, realigned (DRAP) frames,
// callbacks from libc (qsort, pthread_once) and libstdc++ (ios_base's
// callbacks, a std::thread's start), std::sort with a comparator, a
// signal handler's frame, and PLT entries; and what it must refuse
// (malformed CFI: cfi_malformed_test).
#define UNW_LOCAL_ONLY
#include "shim/safepoint/cfi_step.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libunwind.h>
#include <link.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include "tests/unit/cfi_frames.h"

namespace {

// The module table, taken once outside any handler (the shim's is
// safepoint.c's, filled the same way).
struct Mod {
  uintptr_t eh_hdr = 0;
  int nseg = 0;
  uintptr_t lo[8], hi[8];
};
Mod g_mods[256];
int g_nmods;

int Collect(dl_phdr_info *info, size_t, void *) {
  if (g_nmods == 256) return 1;
  Mod &m = g_mods[g_nmods];
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_GNU_EH_FRAME) m.eh_hdr = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && m.nseg < 8) {
      m.lo[m.nseg] = info->dlpi_addr + ph.p_vaddr;
      m.hi[m.nseg] = m.lo[m.nseg] + ph.p_memsz;
      m.nseg++;
    }
  }
  g_nmods++;
  return 0;
}

int SegOf(const Mod &m, uintptr_t a) {
  for (int s = 0; s < m.nseg; s++)
    if (a >= m.lo[s] && a < m.hi[s]) return s;
  return -1;
}

extern "C" int Find(uintptr_t pc, ks_cfi_module *out) {
  *out = ks_cfi_module{};
  for (int i = 0; i < g_nmods; i++) {
    int s = SegOf(g_mods[i], pc);
    if (s < 0) continue;
    out->pc_lo = g_mods[i].lo[s];
    out->pc_hi = g_mods[i].hi[s];
    int h = g_mods[i].eh_hdr ? SegOf(g_mods[i], g_mods[i].eh_hdr) : -1;
    if (h >= 0) {
      out->eh_hdr = g_mods[i].eh_hdr;
      out->hdr_lo = g_mods[i].lo[h];
      out->hdr_hi = g_mods[i].hi[h];
    }
    return 0;
  }
  return ENOENT;
}

// The shim's probe (unwind_mem.c): rt_sigprocmask reads the 8-byte set
// before it checks HOW, so EFAULT means unreadable, EINVAL readable.
int probes;
extern "C" int Readable(uintptr_t addr) {
  probes++;
  int saved = errno;
  long rc = syscall(SYS_rt_sigprocmask, ~0, reinterpret_cast<void *>(addr), nullptr, 8);
  int ok = rc != 0 && errno == EINVAL;
  errno = saved;
  return ok;
}

const ks_cfi_env kEnv = {Find, Readable};

struct Frame {
  uintptr_t ip, sp, start;
  int signal;
};
constexpr int kMaxFrames = 64;
struct Walk {
  Frame f[kMaxFrames];
  int n = 0;
  int last_rc = 99;   // the step that ended it
};

void WalkCfi(const ucontext_t *uc, Walk *w) {
  ks_cfi_cursor c;
  ks_cfi_init(&c, uc, &kEnv);
  for (w->n = 0; w->n < kMaxFrames;) {
    Frame &f = w->f[w->n++];
    f.ip = c.reg[KS_CFI_RIP];
    f.sp = c.reg[KS_CFI_RSP];
    f.signal = c.signal;
    ks_cfi_proc_start(&c, &f.start);
    w->last_rc = ks_cfi_step(&c);
    if (w->last_rc <= 0) break;
  }
}

void WalkUnw(ucontext_t *uc, Walk *w) {
  unw_cursor_t c;
  if (unw_init_local2(&c, reinterpret_cast<unw_context_t *>(uc), UNW_INIT_SIGNAL_FRAME) != 0) return;
  for (w->n = 0; w->n < kMaxFrames;) {
    Frame &f = w->f[w->n++];
    unw_word_t ip = 0, sp = 0;
    unw_get_reg(&c, UNW_REG_IP, &ip);
    unw_get_reg(&c, UNW_REG_SP, &sp);
    f.ip = ip;
    f.sp = sp;
    f.signal = unw_is_signal_frame(&c) > 0;
    unw_proc_info_t pi;
    memset(&pi, 0, sizeof pi);
    f.start = unw_get_proc_info(&c, &pi) == 0 ? pi.start_ip : 0;
    w->last_rc = unw_step(&c);
    if (w->last_rc <= 0) break;
  }
}

// Both walks of the stack at the leaf's call, kept for the test body.
struct Capture {
  Walk cfi, unw;
  int taken = 0;
};

__attribute__((noinline)) void TakeHere(void *arg) {
  auto *cap = static_cast<Capture *>(arg);
  ucontext_t uc;
  memset(&uc, 0, sizeof uc);
  getcontext(&uc);
  WalkCfi(&uc, &cap->cfi);
  WalkUnw(&uc, &cap->unw);
  cap->taken++;
  __asm__ volatile("" ::: "memory");
}

bool HasStart(const Walk &w, const void *fn) {
  for (int i = 0; i < w.n; i++)
    if (w.f[i].start == reinterpret_cast<uintptr_t>(fn)) return true;
  return false;
}

const char *ModuleOf(uintptr_t ip) {
  Dl_info di;
  return dladdr(reinterpret_cast<void *>(ip), &di) && di.dli_fname ? di.dli_fname : "?";
}

bool HasFrameIn(const Walk &w, const char *lib) {
  for (int i = 0; i < w.n; i++)
    if (strstr(ModuleOf(w.f[i].ip - 1), lib)) return true;
  return false;
}

std::string Describe(const Capture &cap) {
  std::string out;
  char line[256];
  for (int i = 0; i < std::max(cap.cfi.n, cap.unw.n); i++) {
    const Frame &a = cap.cfi.f[i], &b = cap.unw.f[i];
    Dl_info di;
    const char *sym = i < cap.unw.n && dladdr(reinterpret_cast<void *>(b.ip - 1), &di) &&
                              di.dli_sname ? di.dli_sname : "?";
    snprintf(line, sizeof line, "#%d ours %#lx sp %#lx start %#lx sig %d | libunwind %#lx sp %#lx start %#lx sig %d %s\n",
             i, i < cap.cfi.n ? a.ip : 0, i < cap.cfi.n ? a.sp : 0, i < cap.cfi.n ? a.start : 0,
             i < cap.cfi.n ? a.signal : 0, i < cap.unw.n ? b.ip : 0, i < cap.unw.n ? b.sp : 0,
             i < cap.unw.n ? b.start : 0, i < cap.unw.n ? b.signal : 0, sym);
    out += line;
  }
  return out;
}

// Every frame the same, and both walks end together: at the outermost
// frame (ours returns 0 where libunwind does).
void ExpectSame(const Capture &cap) {
  ASSERT_EQ(cap.taken, 1);
  ASSERT_GT(cap.unw.n, 3);
  ASSERT_EQ(cap.cfi.n, cap.unw.n) << "libunwind walked " << cap.unw.n << " frames, ours "
                                  << cap.cfi.n << " (its last step: " << cap.cfi.last_rc << ")\n"
                                  << Describe(cap);
  for (int i = 0; i < cap.unw.n; i++) {
    SCOPED_TRACE(testing::Message() << "frame " << i << " in " << ModuleOf(cap.unw.f[i].ip - 1));
    EXPECT_EQ(cap.cfi.f[i].ip, cap.unw.f[i].ip);
    EXPECT_EQ(cap.cfi.f[i].sp, cap.unw.f[i].sp);
    EXPECT_EQ(cap.cfi.f[i].start, cap.unw.f[i].start);
    // libunwind flags the frame the signal interrupted (the one after
    // __restore_rt's); ours flags __restore_rt's own frame, one earlier.
    EXPECT_EQ(cap.cfi.f[i].signal, i + 1 < cap.unw.n && cap.unw.f[i + 1].signal);
  }
  EXPECT_EQ(cap.cfi.last_rc, 0);
  EXPECT_EQ(cap.unw.last_rc, 0);
}

class CfiStep : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    g_nmods = 0;
    dl_iterate_phdr(Collect, nullptr);
  }
};

TEST_F(CfiStep, OwnFramesAtO0AndO2) {
  Capture o0, o2;
  ks_chain_o0(5, TakeHere, &o0);
  ks_chain_o2(5, TakeHere, &o2);
  ExpectSame(o0);
  ExpectSame(o2);
  EXPECT_TRUE(HasStart(o0.cfi, reinterpret_cast<void *>(ks_chain_o0)));
  EXPECT_TRUE(HasStart(o2.cfi, reinterpret_cast<void *>(ks_chain_o2)));
  EXPECT_TRUE(HasFrameIn(o0.cfi, "libc.so"));   // below main
}

TEST_F(CfiStep, RealignedDrapFrames) {
  Capture o0, o2;
  ks_drap_o0(40, TakeHere, &o0);
  ks_drap_o2(40, TakeHere, &o2);
  ExpectSame(o0);
  ExpectSame(o2);
  EXPECT_TRUE(HasStart(o0.cfi, reinterpret_cast<void *>(ks_drap_o0)));
  EXPECT_TRUE(HasStart(o2.cfi, reinterpret_cast<void *>(ks_drap_o2)));
}

Capture *g_qsort_cap;
extern "C" int CompareOnce(const void *a, const void *b) {
  if (g_qsort_cap && !g_qsort_cap->taken) TakeHere(g_qsort_cap);
  int x = *static_cast<const int *>(a), y = *static_cast<const int *>(b);
  return (x > y) - (x < y);
}

TEST_F(CfiStep, CallbackFromLibcQsort) {
  Capture cap;
  g_qsort_cap = &cap;
  int v[32];
  for (int i = 0; i < 32; i++) v[i] = (i * 7919) % 101;
  qsort(v, 32, sizeof v[0], CompareOnce);
  g_qsort_cap = nullptr;
  ExpectSame(cap);
  EXPECT_TRUE(HasStart(cap.cfi, reinterpret_cast<void *>(CompareOnce)));
  EXPECT_TRUE(HasStart(cap.cfi, reinterpret_cast<void *>(qsort)) ||
              HasFrameIn(cap.cfi, "libc.so"));
}

Capture *g_ios_cap;
void OnIosEvent(std::ios_base::event ev, std::ios_base &, int) {
  if (ev == std::ios_base::imbue_event && g_ios_cap && !g_ios_cap->taken) TakeHere(g_ios_cap);
}

TEST_F(CfiStep, LibstdcxxCallbacks) {
  // ios_base::_M_call_callbacks (libstdc++.so) calls the callback.
  Capture ios;
  g_ios_cap = &ios;
  std::ostringstream os;
  os.register_callback(OnIosEvent, 0);
  os.imbue(std::locale::classic());
  g_ios_cap = nullptr;
  ExpectSame(ios);
  EXPECT_TRUE(HasFrameIn(ios.cfi, "libstdc++")) << Describe(ios);
  // call_once: through libc's pthread_once.
  Capture once;
  static std::once_flag flag;
  std::call_once(flag, [&] { TakeHere(&once); });
  ExpectSame(once);
  EXPECT_TRUE(HasFrameIn(once.cfi, "libc.so")) << Describe(once);
  // std::sort with a comparator (its frames are instantiated here).
  Capture sorted;
  int v[64];
  for (int i = 0; i < 64; i++) v[i] = (i * 31) % 64;
  std::sort(v, v + 64, [&](int a, int b) {
    if (!sorted.taken) TakeHere(&sorted);
    return a < b;
  });
  ExpectSame(sorted);
}

TEST_F(CfiStep, ThreadStartedByLibstdcxx) {
  Capture cap;
  std::thread([&] { ks_chain_o2(2, TakeHere, &cap); }).join();
  ExpectSame(cap);   // ends at clone3, whose return address is undefined
  EXPECT_TRUE(HasFrameIn(cap.cfi, "libstdc++"));   // execute_native_thread_routine
}

Capture g_sig_inner, g_sig_outer;
extern "C" void OnSignal(int, siginfo_t *, void *ctx) {
  // From the interrupted registers (the doorbell's view), then from inside
  // the handler, through the kernel's signal frame.
  auto *uc = static_cast<ucontext_t *>(ctx);
  WalkCfi(uc, &g_sig_outer.cfi);
  WalkUnw(uc, &g_sig_outer.unw);
  g_sig_outer.taken++;
  ks_chain_o0(1, TakeHere, &g_sig_inner);
}

TEST_F(CfiStep, SignalFrame) {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = OnSignal;
  sa.sa_flags = SA_SIGINFO;
  ASSERT_EQ(sigaction(SIGUSR2, &sa, &old), 0);
  ks_chain_o2(2, [](void *) { raise(SIGUSR2); }, nullptr);
  sigaction(SIGUSR2, &old, nullptr);
  ExpectSame(g_sig_outer);
  ExpectSame(g_sig_inner);
  int signal_frames = 0;
  for (int i = 0; i < g_sig_inner.cfi.n; i++) signal_frames += g_sig_inner.cfi.f[i].signal;
  EXPECT_EQ(signal_frames, 1);
}

// The .plt section of the test binary, from its section headers.
bool FindPlt(uintptr_t *lo, uintptr_t *hi) {
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  off_t len = lseek(fd, 0, SEEK_END);
  void *map = mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return false;
  auto *eh = static_cast<const Elf64_Ehdr *>(map);
  auto *sh = reinterpret_cast<const Elf64_Shdr *>(static_cast<const char *>(map) + eh->e_shoff);
  const char *names = static_cast<const char *>(map) + sh[eh->e_shstrndx].sh_offset;
  bool found = false;
  for (int i = 0; i < eh->e_shnum && !found; i++)
    if (strcmp(names + sh[i].sh_name, ".plt") == 0) {
      uintptr_t bias = reinterpret_cast<uintptr_t>(
          reinterpret_cast<const link_map *>(dlopen(nullptr, RTLD_NOW))->l_addr);
      *lo = bias + sh[i].sh_addr;
      *hi = *lo + sh[i].sh_size;
      found = true;
    }
  munmap(map, len);
  return found;
}

TEST_F(CfiStep, PltEntriesExpression) {
  uintptr_t lo = 0, hi = 0;
  ASSERT_TRUE(FindPlt(&lo, &hi));
  ASSERT_GE(hi - lo, 32u);
  // A frame interrupted in the PLT: its return address (a real one, into
  // this function) on a stack of ours, with the words a PLT entry pushes.
  uintptr_t ret = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  alignas(16) uintptr_t stack[8] = {ret, ret, ret, ret, ret, ret, ret, ret};
  int checked = 0;
  for (uintptr_t ip = lo; ip < lo + 32; ip += 1) {
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
    getcontext(&uc);
    uc.uc_mcontext.gregs[REG_RIP] = static_cast<greg_t>(ip);
    uc.uc_mcontext.gregs[REG_RSP] = reinterpret_cast<greg_t>(&stack[0]);
    unw_cursor_t u;
    ASSERT_EQ(unw_init_local2(&u, reinterpret_cast<unw_context_t *>(&uc), UNW_INIT_SIGNAL_FRAME), 0);
    ks_cfi_cursor c;
    ks_cfi_init(&c, &uc, &kEnv);
    uintptr_t start = 0;
    unw_proc_info_t pi;
    memset(&pi, 0, sizeof pi);
    ASSERT_EQ(unw_get_proc_info(&u, &pi), 0);
    ASSERT_EQ(ks_cfi_proc_start(&c, &start), 0);
    EXPECT_EQ(start, pi.start_ip);
    ASSERT_GT(unw_step(&u), 0);
    ASSERT_EQ(ks_cfi_step(&c), 1) << "at .plt+" << ip - lo;
    unw_word_t uip, usp;
    unw_get_reg(&u, UNW_REG_IP, &uip);
    unw_get_reg(&u, UNW_REG_SP, &usp);
    EXPECT_EQ(c.reg[KS_CFI_RIP], uip) << "at .plt+" << ip - lo;
    EXPECT_EQ(c.reg[KS_CFI_RSP], usp) << "at .plt+" << ip - lo;
    checked++;
  }
  EXPECT_EQ(checked, 32);
}

TEST_F(CfiStep, RefusesCodeWithoutCfi) {
  // Code in no module (a JIT's page): no FDE, no guess.
  void *page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  memset(page, 0xc3, 4096);   // ret
  ucontext_t uc;
  memset(&uc, 0, sizeof uc);
  getcontext(&uc);
  uc.uc_mcontext.gregs[REG_RIP] = reinterpret_cast<greg_t>(page) + 16;
  ks_cfi_cursor c;
  ks_cfi_init(&c, &uc, &kEnv);
  uintptr_t start = 1;
  EXPECT_EQ(ks_cfi_proc_start(&c, &start), ENOENT);
  EXPECT_EQ(ks_cfi_step(&c), -1);
  EXPECT_EQ(c.reg[KS_CFI_RIP], reinterpret_cast<uintptr_t>(page) + 16);   // unchanged
  munmap(page, 4096);
}

TEST_F(CfiStep, RefusesAnUnreadableStack) {
  // A frame whose return address would be read from an unmapped page.
  void *page = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  ucontext_t uc;
  memset(&uc, 0, sizeof uc);
  getcontext(&uc);
  // At the first byte of a function (CFA = rsp + 8, return address at rsp).
  uc.uc_mcontext.gregs[REG_RIP] = reinterpret_cast<greg_t>(ks_chain_o2);
  uc.uc_mcontext.gregs[REG_RSP] = reinterpret_cast<greg_t>(page) + 64;
  ks_cfi_cursor c;
  ks_cfi_init(&c, &uc, &kEnv);
  EXPECT_EQ(ks_cfi_step(&c), -1);
  munmap(page, 4096);
}

TEST_F(CfiStep, ProbesEachStackPageOnce) {
  Capture cap;
  probes = 0;
  ks_chain_o2(20, TakeHere, &cap);
  int walk_probes = probes;
  ExpectSame(cap);
  // Twenty-odd frames on a few contiguous pages: one probe per page, not
  // one per read.
  uintptr_t span = cap.cfi.f[cap.cfi.n - 1].sp - cap.cfi.f[0].sp;
  EXPECT_LE(walk_probes, static_cast<int>(span / 4096) + 3);
}

}  // namespace

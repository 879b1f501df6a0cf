// The doorbell walk's CFI stepper (shim/safepoint/cfi_step.h) on malformed
// CFI, in a test of its own: tools/fuzz.sh's cfi target does the same with
// libFuzzer and ASan; this one runs in every `bazel test`.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "shim/safepoint/cfi_step.h"

namespace {

// The shim's probe (unwind_mem.c).
extern "C" int Readable(uintptr_t addr) {
  int saved = errno;
  long rc = syscall(SYS_rt_sigprocmask, ~0, reinterpret_cast<void *>(addr), nullptr, 8);
  int ok = rc != 0 && errno == EINVAL;
  errno = saved;
  return ok;
}

// Malformed CFI: a module whose table, CIE and FDE end at a guard page,
// the FDE's instructions random bytes. Every read the stepper makes of CFI
// stays inside the segment the find callback named (a read past it faults
// on the guard page), and it never loops.
uintptr_t g_fz_hdr, g_fz_lo, g_fz_hi, g_fz_code;
extern "C" int FuzzFind(uintptr_t pc, ks_cfi_module *out) {
  if (pc < g_fz_code || pc >= g_fz_code + 4096) return ENOENT;
  *out = ks_cfi_module{g_fz_hdr, g_fz_lo, g_fz_hi, g_fz_code, g_fz_code + 4096};
  return 0;
}

void Put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

TEST(CfiMalformed, ReadsStayInTheirSegment) {
  auto *mem = static_cast<uint8_t *>(mmap(nullptr, 3 * 4096, PROT_READ | PROT_WRITE,
                                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(mem, MAP_FAILED);
  ASSERT_EQ(mprotect(mem + 4096, 4096, PROT_NONE), 0);   // the guard after the CFI
  uint8_t *code = mem + 2 * 4096;
  g_fz_code = reinterpret_cast<uintptr_t>(code);
  g_fz_lo = reinterpret_cast<uintptr_t>(mem);
  g_fz_hi = g_fz_lo + 4096;
  const ks_cfi_env env = {FuzzFind, Readable};
  alignas(16) uintptr_t stack[64];
  for (auto &w : stack) w = g_fz_code + 0x20;
  unsigned seed = getenv("KS_CFI_FUZZ_SEED") ? atoi(getenv("KS_CFI_FUZZ_SEED")) : 12345;
  int stepped = 0, refused = 0, outermost = 0;
  for (int iter = 0; iter < 20000; iter++) {
    uint8_t *end = mem + 4096;
    uint8_t *hdr = end - 200 + (rand_r(&seed) % 64);
    uint8_t *cie = hdr + 20, *fde = cie + 24;
    // .eh_frame_hdr: version 1, pcrel sdata4, udata4, datarel sdata4; one entry.
    hdr[0] = 1, hdr[1] = 0x1b, hdr[2] = 0x03, hdr[3] = 0x3b;
    Put32(hdr + 4, static_cast<uint32_t>(cie - (hdr + 4)));
    Put32(hdr + 8, 1);
    Put32(hdr + 12, static_cast<uint32_t>(code - hdr));
    Put32(hdr + 16, static_cast<uint32_t>(fde - hdr));
    // CIE "zR", code 1, data -8, ra 16, R = pcrel sdata4; def_cfa rsp+8; rip at cfa-8.
    const uint8_t c[] = {16, 0, 0, 0, 0, 0, 0, 0, 1, 'z', 'R', 0, 1, 0x78, 16, 1, 0x1b,
                         0x0c, 7, 8, 0x90, 1, 0, 0};
    memcpy(cie, c, sizeof c);
    cie[0] = sizeof c - 4;
    // FDE: pc_begin = code, range 4096, no augmentation data, random program.
    uint32_t len = static_cast<uint32_t>(end - fde - 4);
    if (rand_r(&seed) % 4 == 0) len += rand_r(&seed) % 64;   // claims more than there is
    Put32(fde, len);
    Put32(fde + 4, static_cast<uint32_t>(fde + 4 - cie));
    Put32(fde + 8, static_cast<uint32_t>(code - (fde + 8)));
    Put32(fde + 12, 4096);
    fde[16] = 0;
    // Mostly known opcodes with small operands, some noise.
    static const uint8_t ops[] = {0x41, 0x44, 0x48, 0x86, 0x83, 0xc6, 0x02, 0x0a, 0x0b,
                                  0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x07, 0x08, 0x09,
                                  0x2e, 0x00, 0x14, 0x16, 0x13};
    for (uint8_t *b = fde + 17; b < end; b++) {
      unsigned pick = rand_r(&seed) % 100;
      b[0] = pick < 40 ? ops[rand_r(&seed) % sizeof ops]
             : pick < 95 ? static_cast<uint8_t>(rand_r(&seed) % 20)
                         : static_cast<uint8_t>(rand_r(&seed));
    }
    if (rand_r(&seed) % 8 == 0) cie[rand_r(&seed) % sizeof c] = static_cast<uint8_t>(rand_r(&seed));
    g_fz_hdr = reinterpret_cast<uintptr_t>(hdr);
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
    uc.uc_mcontext.gregs[REG_RIP] = static_cast<greg_t>(g_fz_code + rand_r(&seed) % 48);
    uc.uc_mcontext.gregs[REG_RSP] = reinterpret_cast<greg_t>(&stack[32]);
    uc.uc_mcontext.gregs[REG_RBP] = reinterpret_cast<greg_t>(&stack[40]);
    ks_cfi_cursor cur;
    ks_cfi_init(&cur, &uc, &env);
    uintptr_t start = 0;
    ks_cfi_proc_start(&cur, &start);
    int rc = ks_cfi_step(&cur);
    ASSERT_TRUE(rc == -1 || rc == 0 || rc == 1);
    (rc == 1 ? stepped : rc == 0 ? outermost : refused)++;
  }
  // Both outcomes happen: the generator is not all garbage, nor all valid.
  EXPECT_GT(stepped, 100);
  EXPECT_GT(refused, 100);
  printf("malformed CFI: %d stepped, %d outermost, %d refused\n", stepped, outermost, refused);
  munmap(mem, 3 * 4096);
}

}  // namespace

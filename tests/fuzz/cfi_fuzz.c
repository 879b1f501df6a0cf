/* libFuzzer target: the doorbell walk's CFI stepper (shim/safepoint/
 * cfi_step.c, cfi_row.c, dwarf_rd.c), which reads .eh_frame_hdr, CIEs, FDEs and their
 * programs out of any module mapped in the program. Input: 2 bytes of the
 * table's offset in the segment, 1 byte of the PC's offset, 2 bytes of the
 * sp's and rbp's slots, then the segment itself (an exact-size copy, which
 * also holds the "code" the PC points into). The stack is one page of
 * words that point back into the segment, so that walks go on.
 * Checks: no read outside the segment or the stack page (tools/fuzz.sh
 * builds the stepper instrumented, -DKS_CFI_SAFE=, so ASan sees every CFI
 * read), step results in range, at most 16 steps. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shim/safepoint/cfi_step.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static uintptr_t fz_lo, fz_hi, fz_hdr;
static uintptr_t fz_stack[512] __attribute__((aligned(4096)));

static int fz_find(uintptr_t pc, struct ks_cfi_module *out)
{
    if (pc < fz_lo || pc >= fz_hi)
        return ENOENT;
    *out = (struct ks_cfi_module){fz_hdr, fz_lo, fz_hi, fz_lo, fz_hi};
    return 0;
}

static int fz_readable(uintptr_t addr)
{
    return addr >= (uintptr_t)fz_stack && addr + 8 <= (uintptr_t)fz_stack + sizeof fz_stack;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6)
        return 0;
    size_t len = size - 5;
    uint8_t *seg = malloc(len);   /* exact size: ASan sees any overread */
    if (!seg)
        return 0;
    memcpy(seg, data + 5, len);
    fz_lo = (uintptr_t)seg;
    fz_hi = fz_lo + len;
    fz_hdr = fz_lo + ((size_t)data[0] | (size_t)data[1] << 8) % len;
    for (size_t i = 0; i < 512; i++)
        fz_stack[i] = fz_lo + (i * 37) % len;
    static const struct ks_cfi_env env = {fz_find, fz_readable};
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)(fz_lo + data[2] % len);
    uc.uc_mcontext.gregs[REG_RSP] = (greg_t)(uintptr_t)&fz_stack[data[3] % 256];
    uc.uc_mcontext.gregs[REG_RBP] = (greg_t)(uintptr_t)&fz_stack[256 + data[4] % 256];
    struct ks_cfi_cursor c;
    ks_cfi_init(&c, &uc, &env);
    for (int n = 0; n < 16; n++) {
        uintptr_t start;
        int rc = ks_cfi_proc_start(&c, &start);
        CHECK(rc == 0 || rc == ENOENT || rc == EINVAL);
        struct ks_cfi_cursor before = c;
        rc = ks_cfi_step(&c);
        CHECK(rc >= -1 && rc <= 1);
        if (rc != 1) {
            CHECK(memcmp(before.reg, c.reg, sizeof c.reg) == 0);   /* unchanged */
            break;
        }
    }
    free(seg);
    return 0;
}

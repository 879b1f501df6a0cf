// The call/ret decoder against instructions assembled by gas: each sample
// sits between two labels in .rodata, so its true length is their distance.
#include "shim/safepoint/x86_decode.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#define KS_SAMPLE(name, insn)                                           \
  ".globl " #name "\n.globl " #name "_end\n" #name ":\n" insn "\n" #name "_end:\n"

asm(".pushsection .rodata\n"
    KS_SAMPLE(c_rel32, "call ks_far_away")
    KS_SAMPLE(c_bnd_rel32, "bnd call ks_far_away")
    KS_SAMPLE(c_rax, "call *%rax")
    KS_SAMPLE(c_r11, "call *%r11")
    KS_SAMPLE(c_notrack, "notrack call *%rdx")
    KS_SAMPLE(c_mem_rbx, "call *(%rbx)")
    KS_SAMPLE(c_mem_r13, "call *(%r13)")
    KS_SAMPLE(c_mem_rsp, "call *(%rsp)")
    KS_SAMPLE(c_mem_r12_d8, "call *8(%r12)")
    KS_SAMPLE(c_mem_d32, "call *0x1000(%rax)")
    KS_SAMPLE(c_rip, "call *ks_far_away(%rip)")
    KS_SAMPLE(c_sib, "call *(%rax,%rbx,8)")
    KS_SAMPLE(c_sib_d8, "call *16(%rax,%rcx,4)")
    KS_SAMPLE(c_sib_nobase, "call *0x2000(,%rcx,8)")
    KS_SAMPLE(c_sib_r13_base, "call *(%r13,%rcx,2)")
    KS_SAMPLE(c_fs, "call *%fs:0x10")
    KS_SAMPLE(c_addr32, "addr32 call *(%eax)")
    KS_SAMPLE(c_rex_sib, "call *0x7f(%r9,%r10,1)")
    KS_SAMPLE(n_jmp_rax, "jmp *%rax")
    KS_SAMPLE(n_jmp_rel, "jmp ks_far_away")
    KS_SAMPLE(n_push_mem, "push (%rax)")
    KS_SAMPLE(n_inc_mem, "incq (%rax)")
    KS_SAMPLE(n_callf, "lcall *(%rax)")
    KS_SAMPLE(n_mov, "mov %rax, %rbx")
    KS_SAMPLE(n_syscall, "syscall")
    KS_SAMPLE(r_ret, "ret")
    KS_SAMPLE(r_ret_imm, "ret $16")
    KS_SAMPLE(r_rep_ret, "rep ret")
    KS_SAMPLE(r_bnd_ret, "bnd ret")
    ".popsection\n");

#define KS_DECL(name) extern "C" const uint8_t name[], name##_end[];
KS_DECL(c_rel32) KS_DECL(c_bnd_rel32) KS_DECL(c_rax) KS_DECL(c_r11) KS_DECL(c_notrack)
KS_DECL(c_mem_rbx) KS_DECL(c_mem_r13) KS_DECL(c_mem_rsp) KS_DECL(c_mem_r12_d8)
KS_DECL(c_mem_d32) KS_DECL(c_rip) KS_DECL(c_sib) KS_DECL(c_sib_d8) KS_DECL(c_sib_nobase)
KS_DECL(c_sib_r13_base) KS_DECL(c_fs) KS_DECL(c_addr32) KS_DECL(c_rex_sib)
KS_DECL(n_jmp_rax) KS_DECL(n_jmp_rel) KS_DECL(n_push_mem) KS_DECL(n_inc_mem) KS_DECL(n_callf)
KS_DECL(n_mov) KS_DECL(n_syscall) KS_DECL(r_ret) KS_DECL(r_ret_imm) KS_DECL(r_rep_ret)
KS_DECL(r_bnd_ret)
extern "C" void ks_far_away() {}

namespace {

struct Sample {
  const char* name;
  const uint8_t *begin, *end;
};
#define KS_S(n) Sample{#n, n, n##_end}

TEST(X86Decode, CallsHaveTheirAssembledLength) {
  for (const Sample& s : {KS_S(c_rel32), KS_S(c_bnd_rel32), KS_S(c_rax), KS_S(c_r11),
                          KS_S(c_notrack), KS_S(c_mem_rbx), KS_S(c_mem_r13), KS_S(c_mem_rsp),
                          KS_S(c_mem_r12_d8), KS_S(c_mem_d32), KS_S(c_rip), KS_S(c_sib),
                          KS_S(c_sib_d8), KS_S(c_sib_nobase), KS_S(c_sib_r13_base), KS_S(c_fs),
                          KS_S(c_addr32), KS_S(c_rex_sib)}) {
    size_t len = static_cast<size_t>(s.end - s.begin);
    EXPECT_EQ(ks_x86_call_len(s.begin, 15), static_cast<int>(len)) << s.name;
    EXPECT_EQ(ks_x86_call_len(s.begin, len), static_cast<int>(len)) << s.name;
    // One byte short: not decodable, never a guess.
    EXPECT_EQ(ks_x86_call_len(s.begin, len - 1), 0) << s.name;
    EXPECT_FALSE(ks_x86_is_ret(s.begin, 15)) << s.name;
  }
}

TEST(X86Decode, OtherInstructionsAreNotCalls) {
  for (const Sample& s : {KS_S(n_jmp_rax), KS_S(n_jmp_rel), KS_S(n_push_mem), KS_S(n_inc_mem),
                          KS_S(n_callf), KS_S(n_mov), KS_S(n_syscall)}) {
    EXPECT_EQ(ks_x86_call_len(s.begin, 15), 0) << s.name;
    EXPECT_FALSE(ks_x86_is_ret(s.begin, 15)) << s.name;
  }
}

TEST(X86Decode, Returns) {
  for (const Sample& s : {KS_S(r_ret), KS_S(r_ret_imm), KS_S(r_rep_ret), KS_S(r_bnd_ret)}) {
    EXPECT_TRUE(ks_x86_is_ret(s.begin, static_cast<size_t>(s.end - s.begin))) << s.name;
    EXPECT_EQ(ks_x86_call_len(s.begin, 15), 0) << s.name;
  }
}

TEST(X86Decode, OperandSizePrefixAndTruncation) {
  const uint8_t call16[] = {0x66, 0xe8, 0, 0};
  EXPECT_EQ(ks_x86_call_len(call16, sizeof call16), 0);
  const uint8_t only_prefixes[] = {0x3e, 0x3e, 0x3e};
  EXPECT_EQ(ks_x86_call_len(only_prefixes, sizeof only_prefixes), 0);
  EXPECT_EQ(ks_x86_call_len(only_prefixes, 0), 0);
  const uint8_t ff_alone[] = {0xff};
  EXPECT_EQ(ks_x86_call_len(ff_alone, 1), 0);
  const uint8_t sc[] = {0x0f, 0x05, 0x90};
  EXPECT_TRUE(ks_x86_after_syscall(sc + 2, 2));
  EXPECT_FALSE(ks_x86_after_syscall(sc + 2, 1));
  EXPECT_FALSE(ks_x86_after_syscall(sc + 1, 1));
}

// Every byte string of up to 3 bytes, and random longer ones: the decoder
// never claims more bytes than it was given.
TEST(X86Decode, NeverReadsPastAvail) {
  uint8_t buf[16];
  for (int a = 0; a < 256; a++)
    for (int b = 0; b < 256; b++) {
      buf[0] = static_cast<uint8_t>(a);
      buf[1] = static_cast<uint8_t>(b);
      for (size_t n = 0; n <= 2; n++) {
        int l = ks_x86_call_len(buf, n);
        ASSERT_LE(l, static_cast<int>(n));
      }
    }
  uint32_t x = 12345;
  for (int i = 0; i < 200000; i++) {
    for (auto& c : buf) {
      x = x * 1103515245u + 12345u;
      c = static_cast<uint8_t>(x >> 16);
    }
    size_t n = x % 16;
    ASSERT_LE(ks_x86_call_len(buf, n), static_cast<int>(n));
  }
}

}  // namespace

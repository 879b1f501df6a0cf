// Pieces of killshim-inject --attach that need no target: the message for a
// refused PTRACE_SEIZE (each Yama setting, no Yama) and the one parsed view
// of /proc/PID/maps.
#include <errno.h>
#include <gtest/gtest.h>

#include <string>

#include "injector/attach.h"
#include "injector/injector.h"

namespace {

std::string Msg(int err, long scope, int* code = nullptr) {
  ksi_attach_err e = {};
  ksi_attach_seize_msg(42, err, scope, &e);
  if (code) *code = e.code;
  return e.msg;
}

// ptrace_scope 2 as non-root: the clear error names the setting and what
// it allows. The suite runs as root on a kernel without Yama here, so the
// end-to-end case cannot be staged; this is the message it would print.
TEST(AttachSeize, NamesYamasSetting) {
  int code = 0;
  std::string two = Msg(EPERM, 2, &code);
  EXPECT_EQ(code, KSI_EXIT_PERMISSION);
  EXPECT_NE(two.find("kernel.yama.ptrace_scope is 2"), std::string::npos) << two;
  EXPECT_NE(two.find("CAP_SYS_PTRACE"), std::string::npos) << two;
  EXPECT_NE(Msg(EPERM, 1).find("only a parent may trace"), std::string::npos);
  EXPECT_NE(Msg(EPERM, 3).find("until the next boot"), std::string::npos);
  // No Yama (or another error): the errno and who may attach.
  std::string none = Msg(EPERM, -1);
  EXPECT_EQ(none.find("yama"), std::string::npos) << none;
  EXPECT_NE(none.find("the process's user or root"), std::string::npos) << none;
  Msg(ESRCH, 2, &code);
  EXPECT_EQ(code, KSI_EXIT_NO_PROCESS);
}

ksi_maps Parse(const char* text) {
  ksi_maps m = {};
  std::string all = text;
  for (size_t at = 0; at < all.size();) {
    size_t nl = all.find('\n', at);
    std::string line = all.substr(at, nl == std::string::npos ? std::string::npos : nl - at + 1);
    ksi_maps_line(&m, line.c_str());
    at = nl == std::string::npos ? all.size() : nl + 1;
  }
  return m;
}

TEST(AttachMaps, OneViewAnswersEveryQuestion) {
  ksi_maps m = Parse(
      "55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1 /usr/bin/app\n"
      "7f0000000000-7f0000028000 r--p 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
      "7f0000028000-7f000019d000 r-xp 00028000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
      "7f0000200000-7f0000201000 r--p 00000000 08:01 3 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n"
      "7f0000300000-7f0000301000 rw-p 00000000 00:00 0 \n");
  EXPECT_TRUE(m.libc);
  EXPECT_FALSE(m.musl);
  EXPECT_FALSE(m.shim);
  ASSERT_EQ(m.nlib, 3);
  EXPECT_EQ(m.lib[1].lo, 0x7f0000028000u);
  EXPECT_EQ(m.lib[2].hi, 0x7f0000201000u);
  EXPECT_EQ(m.libc_lo, 0x7f0000000000u);
  EXPECT_EQ(m.libc_hi, 0x7f0000028000u);
  EXPECT_STREQ(m.libc_file, "/usr/lib/x86_64-linux-gnu/libc.so.6");

  ksi_maps s = Parse("7f0000000000-7f0000001000 r-xp 00000000 00:01 9 /memfd:/libkillshim.so (deleted)\n"
                     "7f0000100000-7f0000101000 r-xp 00000000 08:01 4 /lib/ld-musl-x86_64.so.1\n");
  EXPECT_TRUE(s.shim);
  EXPECT_TRUE(s.musl);
  EXPECT_FALSE(s.libc);
  EXPECT_EQ(s.libc_hi, 0u);
  // A file merely named like libc (libc.so.6.bak) is not libc's mapping.
  ksi_maps b = Parse("7f0000000000-7f0000001000 r--p 00000000 08:01 2 /tmp/libc.so.6.bak\n");
  EXPECT_EQ(b.libc_hi, 0u);
}

}  // namespace

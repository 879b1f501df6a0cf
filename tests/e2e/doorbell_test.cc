// A process under the shim starts serving only when asked (shim/control/control.h):
// an injector that finds nobody listening rings its doorbell, and the
// process answers whatever its only thread is doing (waiting in a system
// call, or computing in its own code), without noticing. Each test drives
// tests/progs/guest.c, which knows nothing of killshim.
#include <elf.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "shim/common/proto.h"
#include "tests/e2e/harness.h"

namespace {

using ks::RawClient;
using ks::Target;

struct Guest {
  Target t;
  explicit Guest(const std::vector<std::string>& env = {}) : t(ks::ProgPath("guest"), {}, env) {
    EXPECT_EQ(t.WaitFor("ready").rfind("ready pid=", 0), 0u) << t.Stderr();
  }
  std::string Do(const std::string& cmd, const std::string& expect, int timeout_ms = 10000) {
    t.Send(cmd);
    return t.WaitFor(expect, timeout_ms);
  }
  void Serve() { ASSERT_TRUE(t.WaitSocket()) << t.Stderr(); }
};

std::string Maps(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/maps");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The shared libraries FILE names in DT_NEEDED, read from the file.
std::vector<std::string> Needed(const std::string& file) {
  std::ifstream f(file, std::ios::binary);
  std::string b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::string> out;
  if (b.size() < sizeof(Elf64_Ehdr)) return out;
  auto* eh = reinterpret_cast<const Elf64_Ehdr*>(b.data());
  auto* sh = reinterpret_cast<const Elf64_Shdr*>(b.data() + eh->e_shoff);
  for (int i = 0; i < eh->e_shnum; i++) {
    if (sh[i].sh_type != SHT_DYNAMIC) continue;
    const char* str = b.data() + sh[sh[i].sh_link].sh_offset;
    auto* d = reinterpret_cast<const Elf64_Dyn*>(b.data() + sh[i].sh_offset);
    for (size_t k = 0; k < sh[i].sh_size / sizeof *d && d[k].d_tag != DT_NULL; k++)
      if (d[k].d_tag == DT_NEEDED) out.push_back(str + d[k].d_un.d_val);
  }
  return out;
}

// ---- what a process pays before anybody asks -------------------------------

// A program under the shim that nobody asked maps the shim and what the shim
// needs of libc, not the unwinders: libunwind (and its liblzma) and libgcc_s
// are loaded when control starts (docs/robust.md), so every program a service
// execs with the preload inherited does not load them. (The guest itself is
// linked with libstdc++, which brings libgcc_s: the shim's own needs are read
// from its file.) Once asked, stacks need libunwind.
TEST(Doorbell, UntilAskedNoUnwinderIsLoaded) {
  std::vector<std::string> needed = Needed(ks::ShimPath());
  ASSERT_FALSE(needed.empty()) << "cannot read " << ks::ShimPath();
  for (const std::string& lib : needed)   // libc, and a sanitizer's runtime in those builds
    EXPECT_TRUE(lib.find("unwind") == std::string::npos && lib.find("libgcc_s") == std::string::npos &&
                lib.find("lzma") == std::string::npos) << "the shim needs " << lib;
  Guest g;
  std::string before = Maps(g.t.pid());
  ASSERT_NE(before.find("libkillshim.so"), std::string::npos) << before;
#ifndef __SANITIZE_THREAD__  // ThreadSanitizer's build loads libunwind at start (shim/init.c says why)
  for (const char* lib : {"libunwind", "liblzma"})
    EXPECT_EQ(before.find(lib), std::string::npos) << lib << " loaded before anybody asked:\n" << before;
#endif
  g.Serve();
  ks::Result r = ks::Inject({"--stack", std::to_string(g.t.pid())});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("main"), std::string::npos) << r.out;
  EXPECT_NE(Maps(g.t.pid()).find("libunwind"), std::string::npos);
  g.t.Send("quit");
  EXPECT_EQ(g.t.Wait(), 0);
}

// ---- a process that serves when asked --------------------------------------

// Its only thread computes without a system call: the doorbell's signal
// sends it through the shim's trampoline, which starts serving and gives it
// back every register (AVX, SSE, integer) and its errno.
TEST(Doorbell, SingleThreadedSpinnerServesAndKeepsItsRegisters) {
  Guest g;
  ASSERT_EQ(g.Do("spin 3000", "spinning"), "spinning");
  usleep(50000);
  ks::Result r = ks::Inject({"--stack", std::to_string(g.t.pid())});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("guest_spin"), std::string::npos) << r.out;
  EXPECT_EQ(g.t.WaitFor("spun", 15000), "spun consistent=1 errno=1234");
  g.t.Send("quit");
  EXPECT_EQ(g.t.Wait(), 0);
}

// Its only thread calls libc's system call stubs in a loop (as stress-ng's
// futex stressor does): the signal lands as a call returns, inside libc,
// each time. A stub called straight from the program's own code holds no
// lock of libc's: serving starts there. (Before, every ring found it "inside
// libc" and the injector gave up after 2 s.)
TEST(Doorbell, ALoopOfSystemCallsServes) {
  Guest g;
  ASSERT_EQ(g.Do("syscalls 4000", "syscalling"), "syscalling");
  usleep(50000);
  ks::Result r = ks::Inject({"--stack", std::to_string(g.t.pid())});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("guest_syscalls"), std::string::npos) << r.out;
  EXPECT_EQ(g.t.WaitFor("syscalled", 15000), "syscalled ok=1");
  g.t.Send("quit");
  EXPECT_EQ(g.t.Wait(), 0);
}

// Its only thread waits in read() (not one of the shim's wrapped calls): the
// signal starts serving right there and the kernel restarts the read, which
// then gets its data as if nothing happened.
TEST(Doorbell, BlockedInReadServesAndTheReadGetsItsData) {
  Guest g;
  g.Serve();
  EXPECT_EQ(g.Do("ids", "ids").rfind("ids umask=", 0), 0u);
  EXPECT_EQ(ks::ProgramRows(g.t.pid()).size(), 1u);
  g.t.Send("quit");
  EXPECT_EQ(g.t.Wait(), 0);
}

// A fork child waits in read() on a pipe: it serves once rung, and its read
// still gets exactly what is written later.
TEST(Doorbell, ForkChildBlockedInReadServes) {
  Guest g;
  std::string f = g.Do("forkread", "forkread");
  pid_t child = atoi(f.c_str() + f.find('=') + 1);
  ASSERT_GT(child, 0) << f;
  RawClient c(child);
  ASSERT_TRUE(c.ok()) << "the child never started serving";
  EXPECT_EQ(c.ReadLine(), "killshim proto=" + std::to_string(KS_PROTO_VERSION) +
                             " pid=" + std::to_string(child));
  g.t.Send("feed hello");
  EXPECT_EQ(g.t.WaitFor("child read"), "child read hello");
  g.t.Send("quit");
  EXPECT_EQ(g.t.Wait(), 0);
}

// KILLSHIM_DISABLE: the shim installed no handler, so the injector must not
// send the doorbell (a real-time signal's default action ends a process).
TEST(Doorbell, DisabledProcessIsNeverSignalled) {
  Guest g({"KILLSHIM_DISABLE=1"});
  ks::Result r = ks::Inject({std::to_string(g.t.pid())});
  EXPECT_EQ(r.code, 5) << r.err;
  EXPECT_EQ(g.Do("ids", "ids").rfind("ids umask=", 0), 0u) << "the process did not survive";
  g.t.Send("quit");
  EXPECT_EQ(g.t.Wait(), 0);
}

}  // namespace

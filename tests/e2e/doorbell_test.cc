// A process under the shim starts serving only when asked (shim/control/control.h):
// an injector that finds nobody listening rings its doorbell, and the
// process answers whatever its only thread is doing (waiting in a system
// call, or computing in its own code), without noticing. Each test drives
// tests/progs/guest.c, which knows nothing of killshim.
#include <elf.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include <map>

#include <algorithm>
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
  explicit Guest(const std::vector<std::string>& env = {}, const char* prog = "guest")
      : t(ks::ProgPath(prog), {}, env) {
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

// Calls FN(entries, count, strings) for each section of TYPE in the ELF
// file FILE (read whole), with the section's string table.
template <typename Entry, typename Fn>
void EachSection(const std::string& file, uint32_t type, Fn fn) {
  std::ifstream f(file, std::ios::binary);
  std::string b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (b.size() < sizeof(Elf64_Ehdr)) return;
  auto* eh = reinterpret_cast<const Elf64_Ehdr*>(b.data());
  auto* sh = reinterpret_cast<const Elf64_Shdr*>(b.data() + eh->e_shoff);
  for (int i = 0; i < eh->e_shnum; i++)
    if (sh[i].sh_type == type)
      fn(reinterpret_cast<const Entry*>(b.data() + sh[i].sh_offset), sh[i].sh_size / sizeof(Entry),
         b.data() + sh[sh[i].sh_link].sh_offset);
}

// The shared libraries FILE names in DT_NEEDED, read from the file.
std::vector<std::string> Needed(const std::string& file) {
  std::vector<std::string> out;
  EachSection<Elf64_Dyn>(file, SHT_DYNAMIC, [&](const Elf64_Dyn* d, size_t n, const char* str) {
    for (size_t k = 0; k < n && d[k].d_tag != DT_NULL; k++)
      if (d[k].d_tag == DT_NEEDED) out.push_back(str + d[k].d_un.d_val);
  });
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

// The shim's segments follow each other without a gap: a page between text
// and data is mapped PROT_NONE by the loader, one mprotect more in every
// process at load and one mapping more that every fork copies (docs/bench.md,
// "two of the shim's page faults fewer"). gold, which Bazel's toolchain picks,
// starts the data segment one page above its file offset and pads it so that
// RELRO ends on a page boundary: with P the page, T the text's end and R
// RELRO's size, it leaves that page whenever (T mod P) + (R mod P) > P, which
// most sizes meet (the shim sat 8 bytes from it). GNU ld pads the file
// instead and has no such size: shim/BUILD links the shim with it. This
// guards that choice. The sanitizers' builds have a layout of their own, not
// the one a user carries.
TEST(Doorbell, TheShimIsMappedWithoutAGapPage) {
#ifdef KS_SANITIZER
  GTEST_SKIP() << "a sanitizer's build of the shim is laid out differently from the one users carry";
#endif
  Guest g;
  std::istringstream maps(Maps(g.t.pid()));
  int mapped = 0;
  std::string line, gaps;
  while (std::getline(maps, line)) {
    if (line.find("libkillshim.so") == std::string::npos) continue;
    mapped++;
    std::istringstream f(line);
    std::string range, perms;
    f >> range >> perms;
    if (perms.find_first_of("rwx") == std::string::npos) gaps += line + "\n";
  }
  EXPECT_GE(mapped, 2);
  EXPECT_EQ(gaps, "") << "a PROT_NONE page inside the shim's mapping";
  g.t.Send("quit");
  EXPECT_EQ(g.t.Wait(), 0);
}

// ---- a process that serves when asked --------------------------------------

// Has the guest G run CMD (it answers STARTED), dumps its stack meanwhile:
// the dump succeeds with FRAME among its frames (the doorbell started
// serving), and the guest ends CMD with DONE (its first word is what it
// prints first) and exits 0 when told.
void ExpectDumpedWhileItRuns(Guest& g, const std::string& cmd, const std::string& started,
                             const std::string& frame, const std::string& done) {
  ASSERT_EQ(g.Do(cmd, started), started);
  usleep(50000);
  ks::Result r = ks::Inject({"--stack", std::to_string(g.t.pid())});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(frame), std::string::npos) << r.out;
  EXPECT_EQ(g.t.WaitFor(done.substr(0, done.find(' ')), 15000), done);
  g.t.Send("quit");
  EXPECT_EQ(g.t.Wait(), 0);
}

// Its only thread computes without a system call: the doorbell's signal
// sends it through the shim's trampoline, which starts serving and gives it
// back every register (AVX, SSE, integer) and its errno.
TEST(Doorbell, SingleThreadedSpinnerServesAndKeepsItsRegisters) {
  Guest g;
  ExpectDumpedWhileItRuns(g, "spin 3000", "spinning", "guest_spin",
                          "spun consistent=1 errno=1234");
}

// Whether FILE's dynamic symbol table defines NAME (a function).
bool DefinesFunction(const std::string& file, const std::string& name) {
  bool found = false;
  EachSection<Elf64_Sym>(file, SHT_DYNSYM, [&](const Elf64_Sym* sym, size_t n, const char* str) {
    for (size_t k = 0; k < n; k++)
      found |= sym[k].st_shndx != SHN_UNDEF && ELF64_ST_TYPE(sym[k].st_info) == STT_FUNC &&
               name == str + sym[k].st_name;
  });
  return found;
}

// A program whose allocator is its own code (tests/progs/ownalloc.c, in the
// executable): its only thread computes, and the doorbell must not send it
// through the trampoline, since starting control allocates and the thread
// may be inside that allocator, holding its lock (shim/safepoint/redirect.c).
// The injector says the process did not start serving, the computation is
// untouched; once the thread waits in a system call (reading its commands),
// the process serves. (With the rule gone, the first --stack is answered.)
TEST(Doorbell, AProgramWithItsOwnAllocatorIsNeverSentThroughTheTrampoline) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // Their runtimes must own malloc (the program's would displace it, and it
  // dies before main): the plain and UndefinedBehaviorSanitizer runs test it.
  GTEST_SKIP() << "a program with its own malloc cannot run under this sanitizer's runtime";
#endif
  const std::string prog = ks::ProgPath("guest_ownalloc");
  for (const char* fn : {"malloc", "calloc", "realloc", "free"})
    ASSERT_TRUE(DefinesFunction(prog, fn)) << prog << " does not export its own " << fn;
  Guest g({}, "guest_ownalloc");
  ASSERT_EQ(g.Do("spin 4000", "spinning"), "spinning");
  usleep(50000);
  ks::Result r = ks::Inject({"--stack", std::to_string(g.t.pid())});
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.err.find("did not start serving"), std::string::npos) << r.err;
  EXPECT_EQ(g.t.WaitFor("spun", 15000), "spun consistent=1 errno=1234");
  r = ks::Inject({"--stack", std::to_string(g.t.pid())});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("main"), std::string::npos) << r.out;
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
  ExpectDumpedWhileItRuns(g, "syscalls 4000", "syscalling", "guest_syscalls", "syscalled ok=1");
}

// The same loop in a program whose segments are not contiguous (a code
// section aligned at 64 KiB has a segment of its own after a gap: stress-ng's
// layout). glibc's _dl_find_object bounds such a program by its first code
// segment, and .eh_frame_hdr lies in a read-only segment after it: the first
// walk found no CFI for the program's frames, and every ring of stress-ng's
// futex children gave up (6 of 7 listings). The header is now read within the
// segment that holds it.
TEST(Doorbell, ALoopOfSystemCallsServesInAProgramInPieces) {
  Guest g({}, "guest_split");
  ExpectDumpedWhileItRuns(g, "syscalls 4000", "syscalling", "guest_syscalls", "syscalled ok=1");
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


// ---- the shim's imports: bound by the shim, never lazily where it works ----

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Where each of the shim's PLT slots in process PID leads: "file+offset" of
// the mapping its value falls in, or "lazy" if it is still the shim's own
// PLT stub (the loader's lazy resolver on the next call). Read from the
// shim's file (its .rela.plt, symbols and PLT sections) and the process's
// memory; keyed by symbol name.
std::map<std::string, std::string> SlotTargets(pid_t pid) {
  std::map<std::string, std::string> out;
  std::string b = ReadAll(ks::ShimPath());
  if (b.size() < sizeof(Elf64_Ehdr)) return out;
  auto* eh = reinterpret_cast<const Elf64_Ehdr*>(b.data());
  auto* sh = reinterpret_cast<const Elf64_Shdr*>(b.data() + eh->e_shoff);
  const char* shstr = b.data() + sh[eh->e_shstrndx].sh_offset;
  const Elf64_Shdr *rela = nullptr, *dynsym = nullptr;
  std::vector<std::pair<uint64_t, uint64_t>> plt;   // .plt, .plt.sec: [lo, hi)
  for (int i = 0; i < eh->e_shnum; i++) {
    std::string name = shstr + sh[i].sh_name;
    if (name == ".rela.plt") rela = &sh[i];
    if (name == ".dynsym") dynsym = &sh[i];
    if (name == ".plt" || name == ".plt.sec") plt.push_back({sh[i].sh_addr, sh[i].sh_addr + sh[i].sh_size});
  }
  if (!rela || !dynsym) return out;
  const char* dynstr = b.data() + sh[dynsym->sh_link].sh_offset;
  auto* syms = reinterpret_cast<const Elf64_Sym*>(b.data() + dynsym->sh_offset);
  struct Map { uint64_t lo, hi, off; std::string file; };
  std::vector<Map> maps;
  uint64_t base = 0;
  std::istringstream ms(Maps(pid));
  for (std::string l; std::getline(ms, l);) {
    Map m;
    char perms[8], path[4096] = "";
    unsigned long lo, hi, off;
    if (sscanf(l.c_str(), "%lx-%lx %7s %lx %*s %*s %4095s", &lo, &hi, perms, &off, path) < 4) continue;
    m = {lo, hi, off, path};
    if (!base && m.file.find("libkillshim.so") != std::string::npos && off == 0) base = lo;
    maps.push_back(m);
  }
  if (!base) return out;
  auto* r = reinterpret_cast<const Elf64_Rela*>(b.data() + rela->sh_offset);
  for (size_t i = 0; i < rela->sh_size / sizeof *r; i++) {
    if (ELF64_R_TYPE(r[i].r_info) != R_X86_64_JUMP_SLOT) continue;
    std::string name = dynstr + syms[ELF64_R_SYM(r[i].r_info)].st_name;
    uint64_t v = 0;
    struct iovec local = {&v, sizeof v}, remote = {reinterpret_cast<void*>(base + r[i].r_offset), sizeof v};
    if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != sizeof v) {
      out[name] = "unreadable";
      continue;
    }
    std::string where = "unmapped";
    for (auto& p : plt)
      if (v - base >= p.first && v - base < p.second) where = "lazy";
    for (const Map& m : maps)
      if (where == "unmapped" && v >= m.lo && v < m.hi)
        where = m.file + "+" + std::to_string(v - m.lo + m.off);
    out[name] = where;
  }
  return out;
}

// LD_DEBUG=bindings lines that bind one of the shim's PLT slots (IMPORTS):
// the lazy resolver's work. (The shim's own dlsym calls log the same way,
// for names it does not import.)
std::vector<std::string> ShimBindings(const std::string& log,
                                      const std::map<std::string, std::string>& imports) {
  std::vector<std::string> out;
  std::istringstream ls(log);
  for (std::string l; std::getline(ls, l);) {
    size_t q = l.find("normal symbol `");
    if (l.find("libkillshim.so [0] to ") == std::string::npos || q == std::string::npos) continue;
    std::string name = l.substr(q + 15, l.find('\'', q + 15) - (q + 15));
    if (imports.count(name)) out.push_back(l);
  }
  return out;
}

// The shim links lazily and binds its imports itself (shim/core/selfbind.h).
// Rung while it spins (the trampoline starts control) or while it waits in
// read() (control starts inside the signal handler): from the ring on, the
// loader binds nothing of the shim's (no lazy resolution in the handler, in
// the server, in the dump's handlers), every PLT slot of the shim is bound,
// and each leads exactly where the loader's own binding (LD_BIND_NOW) leads.
TEST(Doorbell, ControlStartsWithEveryImportOfTheShimBoundAndNoneBindsLazily) {
  std::map<std::string, std::string> eager;
  {
    Guest g({"LD_BIND_NOW=1"});
    eager = SlotTargets(g.t.pid());
    g.t.Send("quit");
    EXPECT_EQ(g.t.Wait(), 0);
  }
  ASSERT_GT(eager.size(), 50u) << "cannot read the shim's PLT slots";
  for (auto& [name, where] : eager) EXPECT_NE(where.find('+'), std::string::npos) << name << ": " << where;
  for (bool spin : {true, false}) {
    SCOPED_TRACE(spin ? "spinning" : "waiting in read");
    const char* tmp = getenv("TEST_TMPDIR");
    std::string prefix = std::string(tmp ? tmp : "/tmp") + "/ks_lddebug_" + std::to_string(getpid()) +
                         (spin ? "_s" : "_r");
    Guest g({"LD_DEBUG=bindings", "LD_DEBUG_OUTPUT=" + prefix});
    std::string log = prefix + "." + std::to_string(g.t.pid());
    std::map<std::string, std::string> before = SlotTargets(g.t.pid());
    EXPECT_GT(std::count_if(before.begin(), before.end(), [](auto& e) { return e.second == "lazy"; }), 20)
        << "the shim is not linked lazily: nothing to prove";
    if (spin) ASSERT_EQ(g.Do("spin 3000", "spinning"), "spinning");
    size_t seen = ReadAll(log).size();
    ASSERT_GT(seen, 0u) << "no LD_DEBUG output in " << log;
    ks::Result r = ks::Inject({"--stack", std::to_string(g.t.pid())});
    EXPECT_EQ(r.code, 0) << r.err;
    if (spin) EXPECT_EQ(g.t.WaitFor("spun", 15000), "spun consistent=1 errno=1234");
    std::map<std::string, std::string> after = SlotTargets(g.t.pid());
    EXPECT_EQ(after.size(), eager.size());
    for (auto& [name, where] : eager)
      EXPECT_EQ(after[name], where) << name << " is not bound where the loader binds it";
    std::string late = ReadAll(log).substr(seen);
    for (const std::string& l : ShimBindings(late, eager)) ADD_FAILURE() << "bound lazily after the ring: " << l;
    g.t.Send("quit");
    EXPECT_EQ(g.t.Wait(), 0);
    unlink(log.c_str());
  }
}

}  // namespace

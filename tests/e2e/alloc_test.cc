// Programs with their own allocator, under the shim (issue 11, section 2):
// Debian's jemalloc, tcmalloc and mimalloc preloaded before and after the
// shim, around a threaded program (tests/progs/allocs.c) that works its
// allocator hard under mutexes, rwlocks and condition waits. The injector
// lists it, dumps its stacks, cancels one thread and aborts another while
// the other threads keep working; the program then ends with the same exit
// status and output as under the same allocator without the shim.
//
// jemalloc used to kill every such program at start: its initialisation
// takes a mutex, the shim's hook resolved the real function with dlvsym,
// whose failed lookup allocated its error message with jemalloc's malloc,
// which took the mutex again (shim/core/resolve.c).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"

namespace {

using ks::Inject;
using ks::Target;

struct Allocator {
  const char* name;
  const char* lib;
  const char* package;  // tools/setup.sh installs it
};

const Allocator kAllocators[] = {
    {"jemalloc", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "libjemalloc2"},
    // tcmalloc without the profiler: the full libtcmalloc.so.4 brings
    // libunwind.so.8 into the global scope ahead of libgcc_s, and then the
    // shim's unwinding breaks (docs/robust.md, "Programs hostile to preloading").
    {"tcmalloc", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "libtcmalloc-minimal4"},
    {"mimalloc", "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2", "libmimalloc2.0"},
};

struct Case {
  Allocator alloc;
  bool before_shim;
};

std::string Name(const testing::TestParamInfo<Case>& p) {
  return std::string(p.param.alloc.name) + (p.param.before_shim ? "_before_shim" : "_after_shim");
}

std::vector<Case> Cases() {
  std::vector<Case> v;
  for (const auto& a : kAllocators)
    for (bool before : {true, false}) v.push_back({a, before});
  return v;
}

std::string TmpDir() {
  const char* t = getenv("TEST_TMPDIR");
  return t ? t : "/tmp";
}

std::string Maps(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/maps");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

long Progress(Target& t) {
  t.Send("progress");
  std::string l = t.WaitFor("progress ");
  return l.empty() ? -1 : atol(l.c_str() + 9);
}

// The consumers move on (the queue, its mutex and conditions, the heap).
bool KeepsWorking(Target& t) {
  long before = Progress(t);
  long deadline = ks::NowMs() + 20000;
  while (ks::NowMs() < deadline) {
    if (Progress(t) > before + 100) return true;
    usleep(20000);
  }
  return false;
}

// "quit", then the summary: the lines that do not depend on timing.
std::vector<std::string> Finish(Target& t) {
  t.Send("quit");
  std::vector<std::string> out;
  for (const char* key : {"queue: ", "items: ", "table: "}) out.push_back(t.WaitFor(key, 30000));
  return out;
}

pid_t TidOf(Target& t, const std::string& who) {
  std::string l = t.WaitFor(who + " tid=");
  return l.empty() ? 0 : atoi(l.c_str() + who.size() + 5);
}

class Alloc : public testing::TestWithParam<Case> {};

TEST_P(Alloc, BehavesAsWithoutTheShimWhileListedDumpedAndEnded) {
  const Case& c = GetParam();
  ASSERT_EQ(access(c.alloc.lib, R_OK), 0) << c.alloc.package << " missing: tools/setup.sh installs it";
  std::string prog = ks::ProgPath("allocs");

  // Under ASan or TSan their runtime serves malloc and the allocator is only
  // loaded (ks::AllocatorPreload says where); in the plain and UBSan builds
  // the allocator is the program's, on the side of the shim asked.
  // Under ASan, LeakSanitizer runs at exit. Not the program's leaks: what
  // the allocators keep for themselves (tcmalloc's MallocExtension), and the
  // block the spinner held in a local when the abort ended it between malloc
  // and free (an abort leaves at a safe point, not at a point where the
  // thread owns nothing; the same as a cancellation without a cleanup). Its
  // allocation stack may show the abort's trampoline where malloc returned
  // to: spin_alloc's caller, spinner, is still in it.
  std::string supp = TmpDir() + "/lsan.supp";
  std::ofstream(supp) << "leak:libtcmalloc\nleak:libjemalloc\nleak:libmimalloc\nleak:spinner\n";
  std::string lsan = "LSAN_OPTIONS=print_suppressions=0:suppressions=" + supp;

  // The same allocator without the shim: the reference.
  Target plain(prog, {}, {"LD_PRELOAD=" + ks::AllocatorPreload(c.alloc.lib, ks::AllocAt::kNoShim), lsan},
               /*preload=*/false);
  ASSERT_EQ(plain.WaitFor("ready"), "ready") << plain.Stderr();
  ASSERT_TRUE(KeepsWorking(plain));
  std::vector<std::string> want = Finish(plain);
  ASSERT_EQ(plain.Wait(30000), 0) << plain.Stderr();
  ASSERT_EQ(plain.Stderr(), "");
  EXPECT_EQ(want, (std::vector<std::string>{"queue: consumed == produced", "items: intact",
                                            "table: intact"}));

  std::string preload = ks::AllocatorPreload(
      c.alloc.lib, c.before_shim ? ks::AllocAt::kBeforeShim : ks::AllocAt::kAfterShim);
  Target t(prog, {}, {"LD_PRELOAD=" + preload, lsan}, /*preload=*/false);
  ASSERT_EQ(t.WaitFor("ready"), "ready") << t.Stderr();
  ASSERT_TRUE(t.WaitSocket()) << t.Stderr();
  std::string maps = Maps(t.pid());
  ASSERT_NE(maps.find(c.alloc.lib), std::string::npos) << "the allocator is not loaded";
  ASSERT_NE(maps.find("libkillshim.so"), std::string::npos);
  std::string pid = std::to_string(t.pid());
  t.Send("tids");
  pid_t blocked = TidOf(t, "blocked"), spinner = TidOf(t, "spinner");
  ASSERT_GT(blocked, 0);
  ASSERT_GT(spinner, 0);

  // Listed: every thread of the program, as an application thread.
  auto rows = ks::ProgramRows(t.pid());
  EXPECT_EQ(rows.size(), 9u);  // main, six workers, blocked, spinner
  EXPECT_EQ(rows[blocked]["role"], "app");
  EXPECT_EQ(rows[spinner]["role"], "app");
  ks::Result list = Inject({pid});
  EXPECT_EQ(list.code, 0) << list.err;
  EXPECT_TRUE(KeepsWorking(t));

  // Dumped: every stack, the program's own frames in them. A thread caught
  // in uninterruptible sleep (the spinner faulting in a page its allocator
  // just mapped, on a loaded machine) cannot take the dump's signal and is
  // reported so, without its frames: only then is the dump taken again.
  const char* fns[] = {"producer", "consumer", "writer", "reader", "blocked", "spinner"};
  ks::Result st;
  for (int attempt = 0; attempt < 10; attempt++) {
    st = Inject({"--stack", pid});
    ASSERT_EQ(st.code, 0) << st.err;
    bool all = true;
    for (const char* fn : fns) all = all && st.out.find(fn) != std::string::npos;
    if (all || st.out.find("uninterruptible sleep (D)") == std::string::npos) break;
  }
  for (const char* fn : fns)
    EXPECT_NE(st.out.find(fn), std::string::npos) << fn << " missing from\n" << st.out;
  EXPECT_TRUE(KeepsWorking(t));

  // Cancelled in read(), its cleanup handler freeing a buffer.
  ks::Result cancel = Inject({"-m", "cancel", pid, std::to_string(blocked)});
  EXPECT_EQ(cancel.code, 0) << cancel.out << cancel.err;
  EXPECT_FALSE(ks::TaskExists(t.pid(), blocked));
  EXPECT_TRUE(KeepsWorking(t));

  // Aborted out of a malloc/free loop, at a point where it holds none of
  // the allocator's locks.
  ks::Result abort = Inject({"-m", "abort", "-t", "30", pid, std::to_string(spinner)}, 60000);
  EXPECT_EQ(abort.code, 0) << abort.out << abort.err;
  EXPECT_FALSE(ks::TaskExists(t.pid(), spinner));
  EXPECT_TRUE(KeepsWorking(t));

  EXPECT_EQ(Finish(t), want);
  EXPECT_EQ(t.Wait(30000), 0) << t.Stderr();
  EXPECT_EQ(t.Stderr(), "");
}

INSTANTIATE_TEST_SUITE_P(Allocators, Alloc, testing::ValuesIn(Cases()), Name);

}  // namespace

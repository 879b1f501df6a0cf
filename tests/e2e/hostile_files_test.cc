// A target chooses every path and byte the injector reads to name its frames:
// its .gnu_debuglink may name a FIFO, a symlink into a file only root may
// read, garbage or a huge file; a library it maps may be truncated under it.
// The injector (root, as the suite runs) finishes in time, names what it
// safely can, reads nothing the target's user could not, and says on stderr
// what it skipped (docs/security.md, "Files the injector reads").
#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"

namespace {

using ks::Has;
using ks::Target;

// sh -c CMD; asserts it worked.
void Sh(const std::string& cmd) {
  ks::Result r = ks::Run({"/bin/sh", "-c", cmd}, 30000);
  ASSERT_EQ(r.code, 0) << cmd << "\n" << r.out << r.err;
}

// A directory everyone may enter (a target run as nobody reads its program
// and the shim from it): under /tmp, not Bazel's root-only test directory.
struct Dir {
  std::string path;
  Dir() {
    char tmpl[] = "/tmp/ks-hostile-files-XXXXXX";
    path = mkdtemp(tmpl) ? tmpl : "";
    if (!path.empty()) chmod(path.c_str(), 0755);
  }
  ~Dir() {
    if (!path.empty()) ks::Run({"/bin/rm", "-rf", path});
  }
};

// DIR/prog: threads_basic without any symbols of its own, whose
// .gnu_debuglink names "prog.debug"; its real debug info is kept in
// DIR/keep.debug (world-readable). Whatever DIR/prog.debug is decides what
// its frames are called: worker_main only if the debug info was read.
void MakeStrippedProg(const std::string& dir) {
  ASSERT_FALSE(dir.empty());
  Sh("cd " + dir + " && cp " + ks::ProgPath("threads_basic") + " prog && chmod 0755 prog" +
     " && objcopy --only-keep-debug prog prog.debug && strip --strip-all prog" +
     " && objcopy --add-gnu-debuglink=prog.debug prog && mv prog.debug keep.debug" +
     " && chmod 0644 keep.debug");
}

struct Dump {
  ks::Result list, stack;
  long ms = 0;
};

// `killshim-inject PID` and `--stack PID`, each bounded well below any
// test timeout: a hang shows as a failure here, not as a stuck test.
Dump DumpBoth(pid_t pid) {
  Dump d;
  long t0 = ks::NowMs();
  d.list = ks::Inject({std::to_string(pid)}, 20000);
  d.stack = ks::Inject({"--stack", std::to_string(pid)}, 20000);
  d.ms = ks::NowMs() - t0;
  return d;
}

// The program under the shim, as the test's user.
struct Prog {
  Target t;
  explicit Prog(const std::string& dir) : t(dir + "/prog", {"2"}) {
    EXPECT_EQ(t.WaitFor("ready"), "ready");
    EXPECT_TRUE(t.WaitSocket());
  }
  ~Prog() { t.Send("quit"); }
};

TEST(HostileFiles, ADebugFileIsReadWhenItIsOne) {
  Dir d;
  MakeStrippedProg(d.path);
  Sh("cp " + d.path + "/keep.debug " + d.path + "/prog.debug");
  Prog p(d.path);
  Dump r = DumpBoth(p.t.pid());
  EXPECT_EQ(r.stack.code, 0) << r.stack.err;
  EXPECT_TRUE(Has(r.stack.out, "worker_main")) << r.stack.out;   // the control for the tests below
  EXPECT_FALSE(Has(r.stack.err, "skipped")) << r.stack.err;
}

TEST(HostileFiles, ADebuglinkNamingAFifoIsSkippedNotWaitedOn) {
  Dir d;
  MakeStrippedProg(d.path);
  Sh("mkfifo " + d.path + "/prog.debug");
  Prog p(d.path);
  Dump r = DumpBoth(p.t.pid());
  EXPECT_EQ(r.list.code, 0) << r.list.err;
  EXPECT_EQ(r.stack.code, 0) << r.stack.err;
  EXPECT_LT(r.ms, 10000);
  EXPECT_TRUE(Has(r.stack.out, "pthread_cond_wait")) << "libc's frames are still named\n" << r.stack.out;
  EXPECT_FALSE(Has(r.stack.out, "worker_main"));
  // Its frames are the module and the address as the object's own, which
  // addr2line maps back to the function with the debug info kept aside.
  std::vector<std::string> offsets;
  for (size_t at = 0; (at = r.stack.out.find(" prog+0x", at)) != std::string::npos; at++)
    offsets.push_back(r.stack.out.substr(at + 6, r.stack.out.find_first_not_of("0123456789abcdefx", at + 6) - at - 6));
  ASSERT_FALSE(offsets.empty()) << r.stack.out;
  std::vector<std::string> argv = {"/usr/bin/addr2line", "-f", "-e", d.path + "/keep.debug"};
  argv.insert(argv.end(), offsets.begin(), offsets.end());
  ks::Result a2l = ks::Run(argv, 30000);
  EXPECT_TRUE(Has(a2l.out, "worker_main")) << r.stack.out << a2l.out << a2l.err;
  std::string said = d.path + "/prog.debug (debug info of prog): a FIFO, not a regular file";
  EXPECT_TRUE(Has(r.stack.err, said)) << r.stack.err;
  EXPECT_TRUE(Has(r.list.err, said)) << r.list.err;
}

TEST(HostileFiles, GarbageTruncatedAndHugeDebugFilesAreSkipped) {
  struct Case {
    const char* make;   // shell, in DIR, making prog.debug
    const char* said;
  } cases[] = {
      {"head -c 100000 /dev/urandom > prog.debug", "not an ELF file"},
      // An ELF header and nothing after it: no build-id to match.
      {"head -c 300 keep.debug > prog.debug", "truncated or damaged"},
      {"truncate -s 5G prog.debug", "5120 MiB, over the 4096 MiB limit"},
  };
  for (const Case& c : cases) {
    Dir d;
    MakeStrippedProg(d.path);
    Sh("cd " + d.path + " && " + c.make);
    Prog p(d.path);
    Dump r = DumpBoth(p.t.pid());
    EXPECT_EQ(r.list.code, 0) << c.make << ": " << r.list.err;
    EXPECT_EQ(r.stack.code, 0) << c.make << ": " << r.stack.err;
    EXPECT_LT(r.ms, 10000) << c.make;
    EXPECT_TRUE(Has(r.stack.out, "pthread_cond_wait")) << c.make << "\n" << r.stack.out;
    EXPECT_FALSE(Has(r.stack.out, "worker_main")) << c.make;
    EXPECT_TRUE(Has(r.stack.err, "skipped " + d.path + "/prog.debug")) << c.make << ": " << r.stack.err;
    EXPECT_TRUE(Has(r.stack.err, c.said)) << c.make << ": " << r.stack.err;
  }
}

// Where the last loaded segment of the ELF file PATH ends in the file: what
// lies after it (section headers, .symtab) is read by the injector, never
// by the program.
long MappedEnd(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  Elf64_Ehdr eh;
  if (!f.read(reinterpret_cast<char*>(&eh), sizeof eh)) return -1;
  long end = 0;
  for (int i = 0; i < eh.e_phnum; i++) {
    Elf64_Phdr ph;
    f.seekg(static_cast<long>(eh.e_phoff) + i * eh.e_phentsize);
    if (!f.read(reinterpret_cast<char*>(&ph), sizeof ph)) return -1;
    if (ph.p_type == PT_LOAD) end = std::max(end, static_cast<long>(ph.p_offset + ph.p_filesz));
  }
  return (end + 4095) / 4096 * 4096;
}

// A library the target maps, with threads whose stacks run through it, whose
// file the target cuts or fills with garbage past what it maps (its section
// headers and symbol table: the pages the program uses stay as they were,
// so the program lives on): the injector parses what the path holds now,
// without a crash or a hang, and names the frames it still can.
TEST(HostileFiles, AMappedLibraryCutOrGarbledUnderTheTargetIsNoCrash) {
  Dir d;
  ASSERT_FALSE(d.path.empty());
  std::string lib = d.path + "/libcut.so";
  Sh("cp " + ks::ProgPath("libdeepbind_plugin.so") + " " + lib + " && cp " + lib + " " + lib +
     ".orig");
  long tail = MappedEnd(lib);
  ASSERT_GT(tail, 0);
  Target t(ks::ProgPath("deepbind_main"), {lib, "plain"});
  ASSERT_EQ(t.WaitFor("ready"), "ready");
  ASSERT_TRUE(t.WaitSocket());
  Dump r = DumpBoth(t.pid());
  EXPECT_TRUE(Has(r.stack.out, "plugin_worker")) << "the control\n" << r.stack.out;
  std::string at = std::to_string(tail / 4096);
  for (std::string cut : {"truncate -s " + std::to_string(tail) + " " + lib,
                          "dd if=/dev/urandom of=" + lib + " bs=4096 seek=" + at +
                              " count=64 conv=notrunc 2>/dev/null",
                          // e_shoff: where the section headers are (the
                          // program's loader never reads it)
                          "printf '\\377\\377\\377\\377\\377\\377\\377\\177' | dd of=" + lib +
                              " bs=1 seek=40 conv=notrunc 2>/dev/null"}) {
    Sh(cut);
    r = DumpBoth(t.pid());
    EXPECT_EQ(r.list.code, 0) << cut << ": " << r.list.err;
    EXPECT_EQ(r.stack.code, 0) << cut << ": " << r.stack.err;
    EXPECT_TRUE(Has(r.stack.out, "pthread_cond_wait")) << cut << "\n" << r.stack.out;
    EXPECT_TRUE(Has(r.stack.out, "(libcut.so)") || Has(r.stack.out, " libcut.so+0x")) << cut << "\n" << r.stack.out;
    EXPECT_TRUE(t.Alive());
  }
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0) << t.Stderr();
}

// ---- A root injector and a target that is not root ---------------------

// DIR/prog started as nobody, under a copy of the shim in DIR (nobody cannot
// reach Bazel's runfiles under /root).
std::unique_ptr<Target> AsNobody(const std::string& dir) {
  Sh("cp " + ks::ShimPath() + " " + dir + "/libkillshim.so && chmod 0755 " + dir + "/libkillshim.so");
  std::string rt = ks::SanitizerPreload();
  std::string preload = dir + "/libkillshim.so" + (rt.empty() ? "" : ":" + rt);
  auto t = std::make_unique<Target>(
      "/usr/bin/setpriv",
      std::vector<std::string>{"--reuid=nobody", "--regid=nogroup", "--clear-groups",
                               "/usr/bin/env", "LD_PRELOAD=" + preload, dir + "/prog", "2"},
      std::vector<std::string>{}, false);
  EXPECT_EQ(t->WaitFor("ready"), "ready");
  EXPECT_TRUE(t->WaitSocket());
  return t;
}

TEST(HostileFiles, ASymlinkedDebuglinkIntoARootOnlyFileIsNotRead) {
  ASSERT_EQ(geteuid(), 0u) << "this test needs root, as the suite does";
  Dir d;
  MakeStrippedProg(d.path);
  // The real debug info, readable by root only, behind a symlink the
  // target's debuglink reaches.
  Sh("cd " + d.path + " && mkdir -m 0700 secret && cp keep.debug secret/real.debug" +
     " && chmod 0600 secret/real.debug && ln -s secret/real.debug prog.debug");
  auto t = AsNobody(d.path);
  Dump r = DumpBoth(t->pid());
  EXPECT_EQ(r.stack.code, 0) << r.stack.err;
  EXPECT_TRUE(Has(r.stack.out, "pthread_cond_wait")) << r.stack.out;
  EXPECT_FALSE(Has(r.stack.out, "worker_main")) << "root read a file nobody cannot\n" << r.stack.out;
  EXPECT_TRUE(Has(r.stack.err, "skipped " + d.path + "/prog.debug")) << r.stack.err;
  EXPECT_TRUE(Has(r.stack.err, "uid 65534")) << r.stack.err;
  // The same link to a copy nobody may read is followed: the refusal above
  // is about the reader, not about symlinks.
  Sh("cd " + d.path + " && chmod 0755 secret && chmod 0644 secret/real.debug");
  r = DumpBoth(t->pid());
  EXPECT_TRUE(Has(r.stack.out, "worker_main")) << r.stack.out << r.stack.err;
  t->Send("quit");
  EXPECT_EQ(t->Wait(), 0);
}

// The build-id path, /usr/lib/debug/.build-id/xx/yyy.debug, is the
// injector's own (as for gdb): here a private mount namespace of the
// injector's, with a tmpfs on /usr/lib/debug holding a symlink into a file
// only root may read, for a target running as nobody. Credentials, not the
// directory, decide: not read; read once nobody may.
TEST(HostileFiles, ASymlinkedBuildIdPathIntoARootOnlyFileIsNotRead) {
  ASSERT_EQ(geteuid(), 0u) << "this test needs root, as the suite does";
  Dir d;
  MakeStrippedProg(d.path);
  Sh("cd " + d.path + " && mkdir -m 0700 secret && cp keep.debug secret/real.debug" +
     " && chmod 0600 secret/real.debug");
  ks::Result id = ks::Run({"/bin/sh", "-c",
                           "readelf -n " + d.path + "/prog | sed -n 's/.*Build ID: //p'"});
  std::string hex = id.out.substr(0, id.out.find('\n'));
  ASSERT_GE(hex.size(), 4u) << id.out << id.err;
  std::string link = "/usr/lib/debug/.build-id/" + hex.substr(0, 2) + "/" + hex.substr(2) + ".debug";
  auto t = AsNobody(d.path);
  std::string plant = "mkdir -p " + link.substr(0, link.rfind('/')) + " && ln -sf " + d.path +
                      "/secret/real.debug " + link;
  std::string inject = ks::InjectorPath() + " --stack " + std::to_string(t->pid());
  std::string stack = "exec /usr/bin/unshare --mount --propagation private /bin/sh -c '"
                      "mkdir -p /usr/lib/debug && mount -t tmpfs tmpfs /usr/lib/debug && " +
                      plant + " && exec " + inject + "'";
  // Where no mount namespace can be made (a chroot), the link goes into the
  // machine's own directory, for this program's build-id only, and is
  // removed after.
  struct Unlink {
    std::string path;
    ~Unlink() { if (!path.empty()) unlink(path.c_str()); }
  } planted;
  if (!ks::NamespaceUnavailable("mount").empty()) {
    Sh(plant);
    planted.path = link;
    stack = "exec " + inject;
  }
  ks::Result r = ks::Run({"/bin/sh", "-c", stack}, 20000);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(Has(r.out, "pthread_cond_wait")) << r.out << r.err;
  EXPECT_FALSE(Has(r.out, "worker_main")) << "root read a file nobody cannot\n" << r.out;
  EXPECT_TRUE(Has(r.err, "skipped " + link)) << r.err;
  EXPECT_TRUE(Has(r.err, "uid 65534")) << r.err;
  Sh("chmod 0755 " + d.path + "/secret && chmod 0644 " + d.path + "/secret/real.debug");
  r = ks::Run({"/bin/sh", "-c", stack}, 20000);
  EXPECT_TRUE(Has(r.out, "worker_main")) << "the injector's own build-id directory\n"
                                         << r.out << r.err;
  t->Send("quit");
  EXPECT_EQ(t->Wait(), 0);
}

// Whatever else stalls (here a target stopped before it could answer), the
// deadline ends the injector with a message that says what was pending.
TEST(HostileFiles, TheDeadlineEndsAnInjectorThatWouldWait) {
  Dir d;
  MakeStrippedProg(d.path);
  Prog p(d.path);
  ASSERT_EQ(kill(p.t.pid(), SIGSTOP), 0);
  long t0 = ks::NowMs();
  ks::Result r = ks::Inject({"--deadline", "1", std::to_string(p.t.pid())}, 20000);
  long ms = ks::NowMs() - t0;
  kill(p.t.pid(), SIGCONT);
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_GE(ms, 1000);
  EXPECT_LT(ms, 5000);
  EXPECT_TRUE(Has(r.err, "gave up after 1 s (--deadline) while connecting to process " +
                             std::to_string(p.t.pid())))
      << r.err;
}

}  // namespace

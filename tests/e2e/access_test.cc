// Who may do what (docs/security.md): a client gets exactly what the
// kernel's ptrace rules give it over the process at that moment: reading
// (list, stack, status) needs read access, ending a thread attach access.
// Each case is checked against the kernel itself (what /proc lets the same
// user do), with real users: the target or the client runs as nobody, or as
// a uid that is neither.
#include <gtest/gtest.h>
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "tests/e2e/harness.h"
#include "tests/e2e/users.h"

namespace {

using ks::Copies;
using ks::kNobody;
using ks::kOther;
using ks::RawClient;
using ks::Target;

// tests/progs/dropper, started as root (AS_UID < 0) or as AS_UID.
struct Dropper {
  std::unique_ptr<Target> t;
  pid_t worker[2] = {0, 0};
  std::string ready;

  Dropper(const Copies& c, int as_uid, const std::vector<std::string>& mode) {
    if (as_uid < 0) {
      t.reset(new Target(ks::ProgPath("dropper"), mode));
    } else {
      std::vector<std::string> argv = {"/usr/bin/env", "LD_PRELOAD=" + c.preload(),
                                       c.prog("dropper")};
      argv.insert(argv.end(), mode.begin(), mode.end());
      argv = ks::AsUser(as_uid, argv);
      t.reset(new Target(argv[0], std::vector<std::string>(argv.begin() + 1, argv.end()), {},
                         /*preload=*/false));
    }
    // The workers race to print: the line's index, not its order, says which.
    for (int n = 0; n < 2; n++) {
      std::string l = t->WaitFor("worker ");
      int i = atoi(l.c_str() + l.find(' ') + 1);
      size_t at = l.find("tid=");
      if (l.empty() || i < 0 || i > 1 || at == std::string::npos) break;
      worker[i] = (pid_t)atoi(l.c_str() + at + 4);
    }
    ready = t->WaitFor("ready");
    EXPECT_TRUE(t->WaitSocket()) << t->Stderr();
  }
  pid_t pid() const { return t->pid(); }
  std::string Pid() const { return std::to_string(t->pid()); }
  std::string Worker(int i) const { return std::to_string(worker[i]); }
};

// Root's view of thread TID: alive and asked nothing, or how it ended.
std::map<std::string, std::string> Status(pid_t pid, pid_t tid) {
  RawClient c(pid);
  c.ReadLine();
  auto r = c.Request("status tid=" + std::to_string(tid));
  return r.empty() ? std::map<std::string, std::string>{} : ks::ParseLine(r.back());
}

void ExpectUntouched(const Dropper& d, int i) {
  auto st = Status(d.pid(), d.worker[i]);
  EXPECT_EQ(st["state"], "alive");
  EXPECT_EQ(st["requested"], "none");
}

// The kernel's own answer: can UID read PID's memory map?
bool KernelLetsRead(int uid, pid_t pid) {
  return ks::Run(ks::AsUser(uid, {"/bin/cat", "/proc/" + std::to_string(pid) + "/maps"})).code ==
         0;
}

// A service that runs as nobody: root and nobody may look and end; a third
// user may do neither. With Yama, attaching (ending) is also limited by
// kernel.yama.ptrace_scope: the nobody injector is no ancestor of the
// service, so scope 1 and 2 refuse it the end, and scope 3 refuses everyone.
TEST(Access, NobodysServiceOpenToRootAndNobodyClosedToOthers) {
  Copies c({"dropper"});
  Dropper d(c, kNobody, {"none"});
  EXPECT_NE(d.ready.find("uid=65534 dumpable=1"), std::string::npos) << d.ready;
  int scope = ks::YamaScope();   // -1: no Yama, only the uid and dumpable rules
  ASSERT_TRUE(KernelLetsRead(kNobody, d.pid()));
  ASSERT_FALSE(KernelLetsRead(kOther, d.pid()));

  ks::Result r = ks::Inject({d.Pid()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(d.Worker(0)), std::string::npos) << r.out;
  r = ks::InjectAs(c, kNobody, {d.Pid()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(d.Worker(0)), std::string::npos) << r.out;
  r = ks::InjectAs(c, kNobody, {"--stack", d.Pid()});
  EXPECT_EQ(r.code, 0) << r.err;

  r = ks::InjectAs(c, kOther, {d.Pid()});
  EXPECT_EQ(r.code, 6) << r.out << r.err;
  EXPECT_NE(r.err.find("permission denied"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("runs as uid 65534"), std::string::npos) << r.err;
  r = ks::InjectAs(c, kOther, {"-m", "flag", d.Pid(), d.Worker(0)});
  EXPECT_EQ(r.code, 6) << r.out << r.err;
  ExpectUntouched(d, 0);

  r = ks::InjectAs(c, kNobody, {"-m", "flag", d.Pid(), d.Worker(0)});
  if (scope <= 0) {
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_EQ(d.t->WaitFor("gone 0"), "gone 0");
  } else {
    EXPECT_EQ(r.code, 6) << r.out << r.err;
    EXPECT_NE(r.err.find("ptrace_scope"), std::string::npos) << r.err;
    ExpectUntouched(d, 0);
  }
  r = ks::Inject({"-m", "flag", d.Pid(), d.Worker(1)});
  EXPECT_EQ(r.code, scope == 3 ? 6 : 0) << r.out << r.err;
  if (scope != 3) EXPECT_EQ(d.t->WaitFor("gone 1"), "gone 1");
  d.t->Send("quit");
  EXPECT_EQ(d.t->Wait(), 0) << d.t->Stderr();
}

// What a client without the rights gets from the shim itself, whatever
// client it is: run in a child as UID (not through the injector, which
// would refuse before asking). Returns the final lines of a bare list, a
// list with a made-up proof, and an end with it, one per line.
std::string RawAs(int uid, pid_t pid, pid_t tid) {
  int p[2];
  if (pipe(p) != 0) return "";
  pid_t kid = fork();
  if (kid == 0) {
    close(p[0]);
    if (setgroups(0, nullptr) != 0 || setresgid(uid, uid, uid) != 0 || setresuid(uid, uid, uid) != 0)
      _exit(1);
    RawClient c(pid);
    std::string out = c.ReadLine() + "\n";
    std::string forged = " proof=1-00000000000000000000000000000000";
    out += c.RequestBare("list").back() + "\n";
    out += c.RequestBare("list" + forged).back() + "\n";
    out += c.RequestBare("end tid=" + std::to_string(tid) + " mode=flag" + forged).back() + "\n";
    out += "proof=" + c.Proof() + "\n";   // what this user could prove: nothing
    ssize_t w = write(p[1], out.data(), out.size());
    _exit(w < 0);
  }
  close(p[1]);
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) s.append(buf, (size_t)n);
  close(p[0]);
  waitpid(kid, nullptr, 0);
  return s;
}

// A root service that drops to nobody with setuid: the kernel marks it
// non-dumpable, and nobody may neither read its maps nor ptrace it. Nobody
// gets nothing through the shim either: no list, no stack, no end; root
// still gets everything.
TEST(Access, ServiceThatDroppedToNobodyIsClosedToNobody) {
  Copies c({});
  Dropper d(c, -1, {"setuid", "65534", "65534"});
  ASSERT_NE(d.ready.find("uid=65534 dumpable=0"), std::string::npos) << d.ready;
  ASSERT_FALSE(KernelLetsRead(kNobody, d.pid()));  // the kernel's rule, as gdb -p meets it

  for (const std::vector<std::string>& args :
       {std::vector<std::string>{d.Pid()}, {"--stack", d.Pid()},
        {"-m", "flag", d.Pid(), d.Worker(0)}}) {
    ks::Result r = ks::InjectAs(c, kNobody, args);
    EXPECT_EQ(r.code, 6) << args[0] << r.out << r.err;
    EXPECT_NE(r.err.find("not dumpable"), std::string::npos) << r.err;
  }
  std::istringstream raw(RawAs(kNobody, d.pid(), d.worker[0]));
  std::string banner, bare, forged_list, forged_end, proof;
  std::getline(raw, banner);
  std::getline(raw, bare);
  std::getline(raw, forged_list);
  std::getline(raw, forged_end);
  std::getline(raw, proof);
  EXPECT_EQ(banner.rfind("killshim proto=2", 0), 0u) << banner;
  EXPECT_EQ(ks::ParseLine(bare)["code"], "permission") << bare;
  EXPECT_NE(bare.find("needs read access"), std::string::npos) << bare;
  EXPECT_EQ(ks::ParseLine(forged_list)["code"], "permission") << forged_list;
  EXPECT_NE(forged_list.find("matches no challenge"), std::string::npos) << forged_list;
  EXPECT_EQ(ks::ParseLine(forged_end)["code"], "permission") << forged_end;
  EXPECT_EQ(proof, "proof=");
  ExpectUntouched(d, 0);

  ks::Result r = ks::Inject({d.Pid()});
  EXPECT_EQ(r.code, 0) << r.err;
  r = ks::Inject({"-m", "flag", d.Pid(), d.Worker(0)});
  EXPECT_EQ(r.code, ks::YamaScope() == 3 ? 6 : 0) << r.out << r.err;
}

// PR_SET_DUMPABLE 0, in a service of nobody's own: nobody is refused what
// the kernel refuses it; root is not.
TEST(Access, NonDumpableServiceIsClosedToItsOwnUser) {
  Copies c({"dropper"});
  Dropper d(c, kNobody, {"nodump"});
  ASSERT_NE(d.ready.find("uid=65534 dumpable=0"), std::string::npos) << d.ready;
  ASSERT_FALSE(KernelLetsRead(kNobody, d.pid()));
  ks::Result r = ks::InjectAs(c, kNobody, {d.Pid()});
  EXPECT_EQ(r.code, 6) << r.out << r.err;
  EXPECT_NE(r.err.find("not dumpable"), std::string::npos) << r.err;
  r = ks::InjectAs(c, kNobody, {"-m", "flag", d.Pid(), d.Worker(1)});
  EXPECT_EQ(r.code, 6) << r.out << r.err;
  ExpectUntouched(d, 1);
  r = ks::Inject({d.Pid()});
  EXPECT_EQ(r.code, 0) << r.err;
  r = ks::Inject({"-m", "flag", d.Pid(), d.Worker(1)});
  EXPECT_EQ(r.code, ks::YamaScope() == 3 ? 6 : 0) << r.out << r.err;
}

// The proofs themselves, over the protocol: no proof, a made-up one, a read
// proof (the page's name in /proc/PID/maps) that lists but cannot end, an
// expired one, and an attach proof that ends.
TEST(Access, ProofsOverTheProtocol) {
  Target t(ks::ProgPath("threads_basic"), {"1"});
  std::string w = t.WaitFor("worker 0");
  std::string tid = w.substr(w.find("tid=") + 4);
  ASSERT_EQ(t.WaitFor("ready"), "ready");
  RawClient c(t.pid());
  c.ReadLine();
  EXPECT_EQ(ks::ParseLine(c.RequestBare("hello").back())["verb"], "ok");
  auto bare = ks::ParseLine(c.RequestBare("list").back());
  EXPECT_EQ(bare["code"], "permission");
  EXPECT_NE(bare["msg"].find("challenge"), std::string::npos) << bare["msg"];

  auto ch = ks::ParseLine(c.RequestBare("challenge").back());
  ASSERT_EQ(ch["verb"], "ok");
  std::string want = "/memfd:killshim-proof-" + ch["gen"] + "-", read_proof;
  std::ifstream maps("/proc/" + std::to_string(t.pid()) + "/maps");
  for (std::string l; std::getline(maps, l);)
    if (l.find(want) != std::string::npos)
      read_proof = ch["gen"] + "-" + l.substr(l.find(want) + want.size(), 32);
  ASSERT_FALSE(read_proof.empty());
  long t0 = ks::NowMs();
  EXPECT_EQ(c.RequestBare("list proof=" + read_proof).back().rfind("ok count=", 0), 0u);
  auto end = ks::ParseLine(c.RequestBare("end tid=" + tid + " mode=flag proof=" + read_proof).back());
  EXPECT_EQ(end["code"], "permission");
  EXPECT_NE(end["msg"].find("read access only"), std::string::npos) << end["msg"];

  // A generation is good for a second after it was made, then refused as expired.
  std::string last;
  while (ks::NowMs() - t0 < 5000) {
    last = c.RequestBare("list proof=" + read_proof).back();
    if (last.rfind("err", 0) == 0) break;
    usleep(50 * 1000);
  }
  EXPECT_NE(last.find("expired"), std::string::npos) << last;
  EXPECT_GE(ks::NowMs() - t0, 400);

  EXPECT_EQ(ks::ParseLine(c.Request("end tid=" + tid + " mode=flag").back())["verb"], "ok");
  auto st = ks::ParseLine(c.Request("status tid=" + tid).back());
  EXPECT_NE(st["requested"].find("flag"), std::string::npos);
}

// The impostor of the security issue: a socket bound to @killshim-PID by an
// earlier process with the target's pid, handed to another process that
// answers like a shim. The injector finds that the target does not hold the
// server end, names the holder, and sends it nothing; the shim keeps trying
// for its name and serves once the impostor is gone.
TEST(Access, ImpostorIsRefusedAndTheShimServesOnceItIsGone) {
  Target t(ks::ProgPath("squat_exec"), {ks::ProgPath("threads_basic"), "1"},
           {"KS_TARGET_PRELOAD=" + ks::Preload()}, /*preload=*/false);
  std::string sq = t.WaitFor("squatter ");
  pid_t squatter = (pid_t)atoi(sq.substr(9).c_str());
  ASSERT_GT(squatter, 0) << sq;
  ASSERT_EQ(t.WaitFor("ready"), "ready");
  long deadline = ks::NowMs() + 10000;
  while (t.Stderr().find("is taken by") == std::string::npos && ks::NowMs() < deadline)
    usleep(20 * 1000);
  EXPECT_NE(t.Stderr().find("is taken by a socket of uid 0 made by pid " +
                            std::to_string(t.pid())), std::string::npos) << t.Stderr();

  ks::Result r = ks::Inject({std::to_string(t.pid())});
  EXPECT_EQ(r.code, 7) << r.out << r.err;
  EXPECT_NE(r.err.find("impostor"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("process " + std::to_string(squatter)), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("uid 0"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(t.Stderr().find("squatter got"), std::string::npos) << t.Stderr();

  ASSERT_EQ(kill(squatter, SIGKILL), 0);
  deadline = ks::NowMs() + 15000;
  for (;;) {
    r = ks::Inject({std::to_string(t.pid())});
    if (r.code == 0 || ks::NowMs() > deadline) break;
    usleep(100 * 1000);
  }
  EXPECT_EQ(r.code, 0) << r.err << t.Stderr();
  EXPECT_NE(r.out.find("worker-0"), std::string::npos) << r.out;
  EXPECT_NE(t.Stderr().find("is free again: serving it now"), std::string::npos) << t.Stderr();
}

// A process that serves its socket itself, in another protocol version: the
// injector passes the impostor check (the process holds its server end) and
// stops at the version, saying what to do.
TEST(Access, VersionMismatchIsSaidPlainly) {
  Target old(ks::ProgPath("oldshim"), {}, {}, /*preload=*/false);
  ASSERT_EQ(old.WaitFor("ready"), "ready");
  ks::Result r = ks::Inject({std::to_string(old.pid())});
  EXPECT_EQ(r.code, 7) << r.out << r.err;
  EXPECT_NE(r.err.find("protocol version mismatch: process " + std::to_string(old.pid()) +
                       " speaks 1, this injector speaks 2; use the killshim-inject that matches "
                       "its libkillshim.so"),
            std::string::npos) << r.err;
}

}  // namespace

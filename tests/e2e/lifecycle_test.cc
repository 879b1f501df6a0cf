// The shim across a process's life: fork, exec, every way of ending, a
// program that closes or replaces the shim's fds, threads the shim did not
// see start. Each test drives tests/progs/lifecycle.c, which knows nothing of
// killshim.
#include <dirent.h>
#include <errno.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"

namespace {

using ks::RawClient;
using ks::Target;

using ks::NowMs;
using ks::Row;




bool WaitServes(pid_t pid, int timeout_ms = 10000) {
  long deadline = NowMs() + timeout_ms;
  while (NowMs() < deadline) {
    std::string final;
    if (!ks::ListRows(pid, &final).empty() && final.rfind("ok", 0) == 0) return true;
    usleep(10000);
  }
  return false;
}

int FieldInt(const std::string& line, const std::string& key) {
  size_t p = line.find(key + "=");
  return p == std::string::npos ? -1 : atoi(line.c_str() + p + key.size() + 1);
}

// Connecting to a socket file: 0, or the errno.
int ConnectFile(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {};
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  int rc = connect(fd, (struct sockaddr*)&a, sizeof a) == 0 ? 0 : errno;
  close(fd);
  return rc;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> v;
  DIR* d = opendir(dir.c_str());
  while (d && (errno = 0, true)) {
    struct dirent* e = readdir(d);
    if (!e) break;
    if (e->d_name[0] != '.' || (e->d_name[1] && e->d_name[1] != '.' )) v.push_back(e->d_name);
  }
  if (d) closedir(d);
  return v;
}

size_t CountOf(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) n++;
  return n;
}

// Sets a variable in this process (so RawClient and the injector agree with
// the target) until the end of the scope, even when an ASSERT returns early.
struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const std::string& v) : name(n) { setenv(n, v.c_str(), 1); }
  ~ScopedEnv() { unsetenv(name.c_str()); }
};

// Under a sanitizer, let a fatal signal kill the program as it would without
// one, instead of the sanitizer's handler turning it into exit(1).
std::vector<std::string> DefaultFatalSignals() {
  std::vector<std::string> env;
  for (const char* v : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS"}) {
    const char* cur = getenv(v);
    if (cur) env.push_back(std::string(v) + "=" + cur + ":handle_segv=0");
  }
  return env;
}

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/ks-life-XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() {
    for (auto& e : DirEntries(path)) unlink((path + "/" + e).c_str());
    rmdir(path.c_str());
  }
  std::string Sock(pid_t pid) const { return path + "/killshim-" + std::to_string(pid) + ".sock"; }
};

struct Life {
  Target t;
  explicit Life(const std::vector<std::string>& env = {})
      : t(ks::ProgPath("lifecycle"), {}, env) {
    EXPECT_EQ(t.WaitFor("ready").rfind("ready pid=", 0), 0u);
    EXPECT_TRUE(WaitServes(t.pid()));
  }
  std::string Do(const std::string& cmd, const std::string& expect) {
    t.Send(cmd);
    return t.WaitFor(expect);
  }
};

// ---- fork ----------------------------------------------------------------

// Connection threads of the shim still running in PID (each listing's thread
// lives on briefly after its reply).
int ConnThreads(pid_t pid) {
  int n = 0;
  std::string task = "/proc/" + std::to_string(pid) + "/task";
  for (auto& tid : DirEntries(task)) {
    FILE* f = fopen((task + "/" + tid + "/comm").c_str(), "r");
    if (!f) continue;
    char comm[32] = "";
    if (fgets(comm, sizeof comm, f) && std::string(comm) == "killshim-conn\n") n++;
    fclose(f);
  }
  return n;
}

// Under ASan a test forks only once the listings before it have no
// connection thread left: the fork child's control thread is started, and
// allocates, in the child. glibc resets its malloc locks at fork; GCC 12's
// ASan allocator does not (a lock a connection thread held at fork time,
// freeing its buffer, stays held in the child; seen with gdb). The plain
// build forks at once, possibly while one is still finishing: the harder case.
// The same held for the program's own workers: one still in ASan's thread
// start (which callocs) at fork time left a size class locked in the child;
// "threads N" now answers only once its workers wait (tests/progs/lifecycle.c).
#ifdef __SANITIZE_ADDRESS__
constexpr bool kQuietBeforeFork = true;
#else
constexpr bool kQuietBeforeFork = false;
#endif

void QuiesceForFork(pid_t pid) {
  if (!kQuietBeforeFork) return;
  long deadline = NowMs() + 10000;
  while (ConnThreads(pid) > 0 && NowMs() < deadline) usleep(5000);
  ASSERT_EQ(ConnThreads(pid), 0) << "connection threads still running in " << pid;
}

TEST(Fork, ChildServesItsOwnPidWithOnlyTheForkingThread) {
  Life l;
  ASSERT_EQ(l.Do("threads 3", "threads"), "threads 3");
  QuiesceForFork(l.t.pid());
  std::string f = l.Do("fork", "forked");
  pid_t child = FieldInt(f, "child");
  ASSERT_GT(child, 0) << f;
  ASSERT_TRUE(WaitServes(child)) << l.t.Stderr();
  RawClient c(child);
  EXPECT_EQ(c.ReadLine(), "killshim proto=2 pid=" + std::to_string(child));
  auto kid = ks::ProgramRows(child);
  ASSERT_EQ(kid.size(), 1u);
  EXPECT_EQ(kid.begin()->first, child);
  EXPECT_EQ(kid.begin()->second["role"], "main");
  auto parent = ks::ProgramRows(l.t.pid());
  EXPECT_EQ(parent.size(), 4u);
  EXPECT_EQ(parent[l.t.pid()]["role"], "main");
  kill(child, SIGKILL);
  EXPECT_TRUE(WaitServes(l.t.pid()));
  l.t.Send("quit");
  EXPECT_EQ(l.t.Wait(), 0);
}

// The shim looks a real function up on its first use through the loader's
// list lock, which glibc does not reset in a fork child: a child forked while
// another thread held it would hang at its first call of a hooked function
// nobody had called yet. The first pthread_create resolves every one, so the
// child of a process with threads never looks one up.
TEST(Fork, ChildOfAThreadHoldingTheLoadersLockCallsHooksItNeverUsed) {
  Life l;
  QuiesceForFork(l.t.pid());
  l.t.Send("forkheld");
  EXPECT_EQ(l.t.WaitFor("forkheld", 20000), "forkheld status=0") << l.t.Stderr();
  l.t.Send("quit");
  EXPECT_EQ(l.t.Wait(), 0);
}

TEST(Fork, FromAWorkerTheChildsOnlyThreadIsThatWorker) {
  Life l;
  ASSERT_EQ(l.Do("threads 2", "threads"), "threads 2");
  QuiesceForFork(l.t.pid());
  pid_t child = FieldInt(l.Do("forkthread", "forked"), "child");
  ASSERT_GT(child, 0);
  ASSERT_TRUE(WaitServes(child));
  auto kid = ks::ProgramRows(child);
  ASSERT_EQ(kid.size(), 1u);
  EXPECT_EQ(kid.begin()->first, child);
  EXPECT_EQ(kid.begin()->second["role"], "app");
  EXPECT_EQ(kid.begin()->second["start"].empty(), false);
  kill(child, SIGKILL);
  EXPECT_EQ(ks::ProgramRows(l.t.pid()).size(), 3u);
}

// A process that never served nor started a thread has not registered the
// shim's fork handlers (shim/init.c): its fork children run no shim code at
// the fork and keep the parent's registry, with the parent's tid in the
// forking thread's record, until they first need it. One child starts a
// thread (the first use of the graves and the exited ring, mapped in the
// child), one is only rung by the injector (the doorbell takes it for a
// vfork child unless it reads glibc's tid): each lists itself alone, under
// its own tid, and the ended thread is in the first one's graveyard.
TEST(Fork, ChildOfAProcessThatNeverServedNorStartedAThread) {
  Target t(ks::ProgPath("lifecycle"), {}, {});
  ASSERT_EQ(t.WaitFor("ready").rfind("ready pid=", 0), 0u);
  t.Send("forkend");
  std::string e = t.WaitFor("forkend child=");
  pid_t ender = FieldInt(e, "child");
  int thread = FieldInt(e, "thread");
  ASSERT_GT(ender, 0) << e << t.Stderr();
  ASSERT_GT(thread, 0) << e;
  t.Send("fork");
  pid_t plain = FieldInt(t.WaitFor("forked child="), "child");
  ASSERT_GT(plain, 0) << t.Stderr();
  for (pid_t child : {ender, plain}) {
    ASSERT_TRUE(WaitServes(child)) << child << t.Stderr();
    auto rows = ks::ProgramRows(child);
    ASSERT_EQ(rows.size(), 1u) << child;
    EXPECT_EQ(rows.begin()->first, child);
    EXPECT_EQ(rows.begin()->second["role"], "main");
  }
  RawClient c(ender);
  c.ReadLine();
  auto st = ks::ParseLine(c.Request("status tid=" + std::to_string(thread)).back());
  EXPECT_EQ(st["state"], "ended") << st["verb"];
  EXPECT_EQ(st["how"], "returned");
  kill(ender, SIGKILL);
  kill(plain, SIGKILL);
  // The parent, listed only now, is itself: one thread, its own pid.
  ASSERT_TRUE(WaitServes(t.pid()));
  auto parent = ks::ProgramRows(t.pid());
  ASSERT_EQ(parent.size(), 1u);
  EXPECT_EQ(parent.begin()->first, t.pid());
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0);
}

TEST(Fork, FileModeChildGetsItsOwnFileAndForkExecLeavesNone) {
  TempDir d;
  std::string env = "KILLSHIM_SOCKET_DIR=" + d.path;
  ScopedEnv se("KILLSHIM_SOCKET_DIR", d.path);
  {
    Life l({env});
    // fork+exec at once: the child's shim never binds, so no file is left.
    QuiesceForFork(l.t.pid());
    for (int i = 0; i < 20; i++)
      ASSERT_EQ(l.Do("forkexec", "forkexec"), "forkexec status=0");
    EXPECT_EQ(DirEntries(d.path), std::vector<std::string>{"killshim-" + std::to_string(l.t.pid()) + ".sock"});
    QuiesceForFork(l.t.pid());
    pid_t child = FieldInt(l.Do("fork", "forked"), "child");
    ASSERT_TRUE(WaitServes(child));
    EXPECT_TRUE(Exists(d.Sock(child)));
    EXPECT_TRUE(WaitServes(l.t.pid()));
    kill(child, SIGKILL);
    l.t.Send("quit");
    EXPECT_EQ(l.t.Wait(), 0);
    EXPECT_FALSE(Exists(d.Sock(l.t.pid())));
  }
}

// ---- exec ----------------------------------------------------------------

TEST(Exec, NewImageStartsCleanAndServesTheSamePid) {
  Life l;
  ASSERT_EQ(l.Do("threads 2", "threads"), "threads 2");
  RawClient held(l.t.pid());  // a connection open across the exec
  ASSERT_EQ(held.ReadLine().rfind("killshim", 0), 0u);
  l.t.Send("exec");
  std::vector<std::string> sockets;
  for (std::string line; (line = l.t.ReadLine()).rfind("ready", 0) != 0;) {
    ASSERT_FALSE(line.empty()) << "no ready line after exec; stderr: " << l.t.Stderr();
    if (line.find("kind=socket") != std::string::npos) sockets.push_back(line);
  }
  // No socket: neither the old listener nor the held connection leaked
  // through the exec, and the new image serves only once asked.
  EXPECT_TRUE(sockets.empty()) << sockets[0];
  struct pollfd p = {held.fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 5000), 1);
  char b;
  EXPECT_EQ(read(held.fd(), &b, 1), 0) << "the old connection was not closed by exec";
  ASSERT_TRUE(WaitServes(l.t.pid()));
  auto threads = ks::ProgramRows(l.t.pid());
  ASSERT_EQ(threads.size(), 1u);
  EXPECT_EQ(threads.begin()->second["role"], "main");
  l.t.Send("quit");
  EXPECT_EQ(l.t.Wait(), 0);
}

TEST(Exec, FileModeSamePidReplacesItsOwnFile) {
  TempDir d;
  ScopedEnv se("KILLSHIM_SOCKET_DIR", d.path);
  Life l({"KILLSHIM_SOCKET_DIR=" + d.path});
  l.t.Send("exec");
  ASSERT_EQ(l.t.WaitFor("ready").rfind("ready", 0), 0u);
  EXPECT_TRUE(WaitServes(l.t.pid())) << l.t.Stderr();
  l.t.Send("quit");
  EXPECT_EQ(l.t.Wait(), 0);
  EXPECT_TRUE(DirEntries(d.path).empty());
}

// ---- every way to end ----------------------------------------------------

struct Ending {
  const char* name;
  const char* cmd;      // nullptr: the test sends SIGKILL
  int status;           // exit code, or 128+signal
  bool file_may_stay;   // no exit handler runs: the file stays, stale
};

class Endings : public ::testing::TestWithParam<Ending> {};

int Status(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

TEST_P(Endings, LeaveNoSocketOrOneTheNextProcessReplaces) {
  const Ending& e = GetParam();
  TempDir d;
  std::string env = "KILLSHIM_SOCKET_DIR=" + d.path;
  ScopedEnv se("KILLSHIM_SOCKET_DIR", d.path);
  std::string path;
  pid_t dead;
  {
    std::vector<std::string> envs = DefaultFatalSignals();
    envs.push_back(env);
    Life l(envs);
    dead = l.t.pid();
    path = d.Sock(dead);
    ASSERT_TRUE(Exists(path));
    ASSERT_EQ(l.Do("threads 3", "threads"), "threads 3");
    if (e.cmd)
      l.t.Send(e.cmd);
    else
      kill(l.t.pid(), SIGKILL);
    int st = l.t.Wait();
    ASSERT_NE(st, -1);
    EXPECT_EQ(Status(st), e.status) << l.t.Stderr();
  }
  if (!e.file_may_stay) {
    EXPECT_FALSE(Exists(path)) << e.name << " left " << path;
  }
  if (Exists(path)) {
    EXPECT_EQ(ConnectFile(path), ECONNREFUSED);
    ks::Result r = ks::Inject({std::to_string(dead)}, 10000, {env});
    EXPECT_EQ(r.code, 4) << r.err;  // no such process: the file misleads nobody
    // The next process under that pid replaces it: simulate the pid's reuse
    // by renaming the real leftover to the next process's name.
    Target next(ks::ProgPath("lifecycle"), {}, {env}, true, /*hold=*/true);
    ASSERT_EQ(rename(path.c_str(), d.Sock(next.pid()).c_str()), 0);
    next.Release();
    ASSERT_EQ(next.WaitFor("ready").rfind("ready", 0), 0u);
    EXPECT_TRUE(WaitServes(next.pid())) << next.Stderr();
    next.Send("quit");
    EXPECT_EQ(next.Wait(), 0);
    EXPECT_FALSE(Exists(d.Sock(next.pid())));
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllWays, Endings,
    ::testing::Values(Ending{"exit", "exit 3", 3, false}, Ending{"_exit", "_exit 4", 4, false},
                      Ending{"return", "return", 0, false},
                      Ending{"threadexit", "threadexit 5", 5, false},
                      Ending{"segv", "segv", 128 + SIGSEGV, true},
                      Ending{"sigkill", nullptr, 128 + SIGKILL, true}),
    [](const auto& info) { return std::string(info.param.name[0] == '_' ? "underscore_exit" : info.param.name); });

TEST(Endings, AbstractNameIsFreedBySigkill) {
  pid_t dead;
  {
    Life l;
    dead = l.t.pid();
    kill(dead, SIGKILL);
    ASSERT_NE(l.t.Wait(), -1);
  }
  RawClient c(dead);
  EXPECT_FALSE(c.ok());
  EXPECT_EQ(ks::Inject({std::to_string(dead)}).code, 4);
}

// ---- a program that closes the shim's fds ----------------------------------

class ClosesFds : public ::testing::TestWithParam<const char*> {};

// Under ThreadSanitizer, TSAN_OPTIONS for the program with a suppressions
// file: the program closes or replaces every fd (close_loop, dup2null), the
// ones the shim's threads made and use included, which by TSan's rules races
// with those threads. That hostility is what these tests are about; reports
// naming any other function still fail them. Empty in other builds.
std::vector<std::string> TsanFdHostilityEnv() {
#ifdef __SANITIZE_THREAD__
  static std::string path;
  if (path.empty()) {
    // Bazel's per-test directory, removed with the test's outputs.
    const char* dir = getenv("TEST_TMPDIR");
    std::string p = std::string(dir ? dir : "/tmp") + "/lifecycle-tsan.supp";
    FILE* f = fopen(p.c_str(), "w");
    if (!f) return {};
    fputs("race:close_loop\nrace:dup2null\n", f);
    if (fclose(f) != 0) return {};
    path = p;
  }
  const char* inherited = getenv("TSAN_OPTIONS");
  return {std::string("TSAN_OPTIONS=") + (inherited ? inherited : "") + ":suppressions=" + path};
#else
  return {};
#endif
}

TEST_P(ClosesFds, ControlSocketComesBackWithOneWarning) {
  std::string how = GetParam();
  Life l(TsanFdHostilityEnv());
  ASSERT_EQ(l.Do("threads 2", "threads"), "threads 2");
  std::string ack = how == "dup2null" ? "dup2" : "closed";
  for (int round = 0; round < 2; round++) {
    std::string r = l.Do(how, ack);
    ASSERT_EQ(r.rfind(ack, 0), 0u) << r << l.t.Stderr();
    // The first client may still reach the old socket (a blocked accept
    // keeps it alive); the shim notices after it and binds anew.
    for (int i = 0; i < 3; i++) {
      ks::Result inj = ks::Inject({std::to_string(l.t.pid())});
      EXPECT_EQ(inj.code, 0) << how << " round " << round << ": " << inj.err << l.t.Stderr();
    }
    EXPECT_EQ(ks::ProgramRows(l.t.pid()).size(), 3u);
    if (how == "dup2null") {
      // The numbers the program took over are still its /dev/null.
      std::string fds = r.substr(r.find("fds=") + 4);
      ASSERT_FALSE(fds.empty());
      for (size_t p = 0; p < fds.size();) {
        int fd = atoi(fds.c_str() + p);
        EXPECT_EQ(l.Do("checkfd " + std::to_string(fd), "fd "),
                  "fd " + std::to_string(fd) + " kind=file name=/dev/null");
        p = fds.find(',', p);
        if (p == std::string::npos) break;
        p++;
      }
    }
  }
  std::string err = l.t.Stderr();
  EXPECT_EQ(CountOf(err, "closed or replaced the control socket"), 1u) << err;
  EXPECT_EQ(CountOf(err, "\n"), 1u) << err;
  l.t.Send("quit");
  EXPECT_EQ(l.t.Wait(), 0);
}

INSTANTIATE_TEST_SUITE_P(AllWays, ClosesFds,
                         ::testing::Values("closefrom", "closerange", "closeloop", "dup2null"));

// ---- the control thread's start --------------------------------------------

// A process started under the shim starts serving at its first
// pthread_create, and that call returns only once the accept thread has
// mapped what serving needs (libunwind): the program's first thread stack
// is mapped after those libraries, which keeps every later create+join of
// it at full speed (shim/control/control.c, docs/bench.md). Checked in the
// program right after its first pthread_create returns, before anything
// else runs there.
TEST(ControlStart, FirstThreadIsCreatedAfterServingsLibrariesAreMapped) {
  Target t(ks::ProgPath("lifecycle"));
  ASSERT_EQ(t.WaitFor("ready").rfind("ready pid=", 0), 0u) << t.Stderr();
  t.Send("firstthread libunwind.so");
  EXPECT_EQ(t.WaitFor("firstthread"), "firstthread mapped=1") << t.Stderr();
  EXPECT_TRUE(WaitServes(t.pid()));
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0);
}

// The program's first thread created by a library constructor inside
// dlopen: the creator holds the loader's lock the accept thread's dlopen
// waits for, so the creator's wait must give up (it is bounded) rather than
// deadlock; the load then runs once the program's dlopen returns, and the
// process serves, the constructor's thread tracked.
TEST(ControlStart, FirstThreadFromAConstructorInsideDlopenDoesNotDeadlock) {
  Target t(ks::ProgPath("lifecycle"));
  ASSERT_EQ(t.WaitFor("ready").rfind("ready pid=", 0), 0u) << t.Stderr();
  t.Send("load " + ks::ProgPath("liblatelib.so"));
  std::string r = t.WaitFor("load");
  ASSERT_EQ(r.rfind("load ok=1", 0), 0u) << r << t.Stderr();
  EXPECT_LT(FieldInt(r, "ms"), 2000) << r;
  ASSERT_TRUE(WaitServes(t.pid()));
  EXPECT_EQ(ks::ProgramRows(t.pid()).size(), 2u);   // main, the constructor's thread
  ks::Result st = ks::Inject({"--stack", std::to_string(t.pid())});
  EXPECT_EQ(st.code, 0) << st.err;
  EXPECT_NE(st.out.find("late_worker"), std::string::npos) << st.out;
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0);
}

// ---- threads the shim did not see start ------------------------------------

TEST(Foreign, RawCloneThreadIsListedAsForeign) {
  Life l;
  ASSERT_EQ(l.Do("threads 1", "threads"), "threads 1");
  pid_t tid = FieldInt(l.Do("clone", "clone"), "tid");
  ASSERT_GT(tid, 0);
  auto rows = ks::ListRows(l.t.pid());
  ASSERT_TRUE(rows.count(tid));
  EXPECT_EQ(rows[tid]["role"], "foreign");
  EXPECT_EQ(rows[tid]["registered"], "0");
  EXPECT_EQ(rows[tid].count("id"), 0u);
  ks::Result r = ks::Inject({"--json", std::to_string(l.t.pid())});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("\"foreign\""), std::string::npos) << r.out;
  EXPECT_EQ(ks::ProgramRows(l.t.pid()).size(), 3u);
  l.t.Send("quit");
  EXPECT_EQ(l.t.Wait(), 0);
}

// A library whose constructor runs before the shim's (preloaded after it)
// starts a thread: the pthread_create hook initialises the shim first, so the
// thread is tracked like any other, with its start routine.
TEST(Foreign, ThreadStartedBeforeTheShimsConstructorIsTracked) {
  Target t(ks::ProgPath("threads_basic"), {"2"},
           {"LD_PRELOAD=" + ks::Preload() + ":" + ks::ProgPath("libearly.so")}, /*preload=*/false);
  ASSERT_EQ(t.WaitFor("ready"), "ready") << t.Stderr();
  ASSERT_TRUE(t.WaitSocket());
  auto rows = ks::ProgramRows(t.pid());
  std::map<std::string, Row> by_name;
  for (auto& [tid, r] : rows) by_name[r["name"]] = r;
  ASSERT_TRUE(by_name.count("early")) << rows.size() << " threads";
  EXPECT_EQ(by_name["early"]["role"], "app");
  EXPECT_EQ(by_name["early"]["registered"], "1");
  ks::Result r = ks::Inject({std::to_string(t.pid())});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("early_main"), std::string::npos) << r.out;
  EXPECT_EQ(rows.size(), 4u);   // main, two workers, early
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0);
}

}  // namespace

#include "tests/e2e/harness.h"

#include <dirent.h>
#include <link.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <gtest/gtest.h>
#include <json-c/json.h>

#include "shim/common/proto.h"
#include "shim/common/doorbell.h"
#include "shim/common/proof.h"
#include "shim/common/sockaddr.h"

namespace ks {

// A test must fail with a message, not die of SIGPIPE writing to a program
// that has exited.
static const bool kIgnoreSigpipe = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

long NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

std::string Runfile(const std::string& rel) {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* ws = getenv("TEST_WORKSPACE");
  std::string base = srcdir ? std::string(srcdir) + "/" + (ws ? ws : "killshim") : ".";
  std::string p = base + "/" + rel;
  char real[PATH_MAX];
  if (realpath(p.c_str(), real)) return real;
  return p;
}

std::string ShimPath() { return Runfile("shim/libkillshim.so"); }
std::string InjectorPath() { return Runfile("injector/killshim-inject"); }
std::string ProgPath(const std::string& name) { return Runfile("tests/progs/" + name); }

void CopyFile(const std::string& from, const std::string& to, mode_t mode) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream out(to, std::ios::binary);
  out << in.rdbuf();
  out.close();
  ASSERT_EQ(chmod(to.c_str(), mode), 0) << to;
}

static std::vector<char*> CStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// This process's environment without LD_PRELOAD and without the variables
// EXTRA ("K=V") sets, then EXTRA: a test's value wins over an inherited one
// (e.g. ASAN_OPTIONS from --config=asan).
static std::vector<std::string> ChildEnv(const std::vector<std::string>& extra) {
  std::vector<std::string> envv;
  for (char** e = environ; *e; e++) {
    std::string kv = *e;
    std::string key = kv.substr(0, kv.find('=') + 1);
    bool replaced = key == "LD_PRELOAD=";
    for (const auto& x : extra) replaced = replaced || x.compare(0, key.size(), key) == 0;
    if (!replaced) envv.push_back(kv);
  }
  envv.insert(envv.end(), extra.begin(), extra.end());
  return envv;
}

Target::Target(const std::string& prog, const std::vector<std::string>& args,
               const std::vector<std::string>& env, bool preload, bool hold) {
  int in[2], out[2], h[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(h, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe");
  char tmpl[] = "/tmp/ks-target-err-XXXXXX";
  int efd = mkstemp(tmpl);
  err_path_ = tmpl;
  prog_ = prog;
  std::vector<std::string> argv = {prog};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> extra = env;
  if (preload) extra.push_back("LD_PRELOAD=" + Preload());
  std::vector<std::string> envv = ChildEnv(extra);
  auto cargv = CStrings(argv);
  auto cenv = CStrings(envv);
  pid_ = fork();
  if (pid_ == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(efd, 2);
    if (hold) {
      close(h[1]);
      char b;
      while (read(h[0], &b, 1) < 0 && errno == EINTR) {
      }
    }
    execve(prog.c_str(), cargv.data(), cenv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(efd);
  close(h[0]);
  hold_ = h[1];
  if (!hold) Release();
  in_ = in[1];
  out_ = out[0];
}

void Target::Release() {
  if (hold_ >= 0) {
    ssize_t w = write(hold_, "g", 1);
    (void)w;
    close(hold_);
    hold_ = -1;
  }
}

std::string SanitizerReport(const std::string& text) {
  // Plain searches, not a regex: a program's stderr can be megabytes
  // (LD_DEBUG output), which libstdc++'s regex handles slowly, if at all.
  static const char* const kMarks[] = {
      "ERROR: AddressSanitizer",  "ERROR: LeakSanitizer",         "WARNING: ThreadSanitizer",
      "ERROR: ThreadSanitizer",   "ERROR: MemorySanitizer",       "ERROR: UndefinedBehaviorSanitizer",
      "Sanitizer:DEADLYSIGNAL",   "SUMMARY: AddressSanitizer",    "SUMMARY: LeakSanitizer",
      "SUMMARY: ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer", ": runtime error: ",
      "Sanitizer CHECK failed",   "FATAL: ThreadSanitizer",       "ThreadSanitizer: CHECK",
      "ThreadSanitizer: unexpected"};
  size_t at = std::string::npos;
  for (const char* m : kMarks) at = std::min(at, text.find(m));
  if (at == std::string::npos) return "";
  // From the start of that line, at most 40 lines: enough to read it.
  size_t from = at == 0 ? std::string::npos : text.rfind('\n', at - 1);
  from = from == std::string::npos ? 0 : from + 1;
  size_t to = from;
  for (int i = 0; i < 40 && to != std::string::npos; i++) to = text.find('\n', to + 1);
  return text.substr(from, to == std::string::npos ? std::string::npos : to - from);
}

// A sanitizer's report in WHAT's output fails the running test, and goes
// into the test's log (CI reads every attempt's log for reports).
static void FailOnSanitizerReport(const std::string& what, const std::string& output) {
  std::string rep = SanitizerReport(output);
  if (rep.empty()) return;
  fprintf(stderr, "[harness] sanitizer report from %s:\n%s\n", what.c_str(), rep.c_str());
  ADD_FAILURE() << "sanitizer report from " << what << ":\n" << rep;
}

Target::~Target() {
  Release();
  if (pid_ > 0 && status_ == -1) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  FailOnSanitizerReport("program " + prog_ + " (pid " + std::to_string(pid_) + ")", Stderr());
  if (in_ >= 0) close(in_);
  if (out_ >= 0) close(out_);
  unlink(err_path_.c_str());
}

// The next line from FD (buffered in *BUF), without its '\n'; "" on timeout
// or EOF. Target and RawClient read their peers the same way.
static std::string ReadLineFrom(int fd, std::string* buf, int timeout_ms) {
  long deadline = NowMs() + timeout_ms;
  for (;;) {
    size_t nl = buf->find('\n');
    if (nl != std::string::npos) {
      std::string line = buf->substr(0, nl);
      buf->erase(0, nl + 1);
      return line;
    }
    long left = deadline - NowMs();
    if (left <= 0 || fd < 0) return "";
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, (int)left) <= 0) continue;
    char tmp[65536];
    ssize_t r = read(fd, tmp, sizeof tmp);
    if (r <= 0) return "";
    buf->append(tmp, (size_t)r);
  }
}

std::string Target::ReadLine(int timeout_ms) { return ReadLineFrom(out_, &buf_, timeout_ms); }

std::string Target::WaitFor(const std::string& prefix, int timeout_ms) {
  long deadline = NowMs() + timeout_ms;
  for (;;) {
    long left = deadline - NowMs();
    if (left <= 0) return "";
    std::string l = ReadLine((int)left);
    if (l.compare(0, prefix.size(), prefix) == 0) return l;
    if (l.empty() && NowMs() >= deadline) return "";
  }
}

void Target::Send(const std::string& line) {
  std::string s = line + "\n";
  ssize_t w = write(in_, s.data(), s.size());
  (void)w;
}

int Target::Wait(int timeout_ms) {
  if (status_ != -1) return status_;
  long deadline = NowMs() + timeout_ms;
  do {
    int st;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = st;
      return st;
    }
    usleep(5000);
  } while (NowMs() < deadline);
  return -1;
}

bool Target::Alive() { return Wait(0) == -1; }

static std::string FirstLine(const std::string& path) {
  std::ifstream f(path);
  std::string l;
  std::getline(f, l);
  return l;
}

bool Target::WaitSocket(int timeout_ms) {
  long deadline = NowMs() + timeout_ms;
  int connected = 0;
  while (NowMs() < deadline) {
    RawClient c(pid_);
    connected += c.ok();
    if (c.ok() && c.ReadLine(1000).rfind("killshim", 0) == 0) return true;
    usleep(10000);
  }
  // What the program was doing, for the failure's report: its tasks, each
  // with its name and system call, and what it wrote to stderr.
  std::string proc = "/proc/" + std::to_string(pid_);
  std::string state;
  std::ifstream st(proc + "/status");
  for (std::string l; std::getline(st, l);)
    if (l.rfind("State:", 0) == 0) state = l;
  fprintf(stderr, "[harness] no banner from pid %d in %d ms (%d connects); %s\n", pid_,
          timeout_ms, connected, state.empty() ? "gone" : state.c_str());
  for (pid_t t : Tasks(pid_)) {
    std::string task = proc + "/task/" + std::to_string(t);
    fprintf(stderr, "[harness]   task %d %s: syscall %s; wchan %s\n", t,
            FirstLine(task + "/comm").c_str(), FirstLine(task + "/syscall").c_str(),
            FirstLine(task + "/wchan").c_str());
  }
  std::string err = Stderr();
  if (err.size() > 2000) err = err.substr(err.size() - 2000);
  fprintf(stderr, "[harness]   its stderr: %s\n", err.empty() ? "(empty)" : err.c_str());
  return false;
}

std::string Target::Stderr() const {
  std::ifstream f(err_path_);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int Target::Quit(const std::string& line, int timeout_ms) {
  if (status_ == -1) Send(line);
  return Wait(timeout_ms);
}

void Target::ExpectCleanExit(const std::string& line, const std::vector<std::string>& allowed,
                             int timeout_ms) {
  int st = Quit(line, timeout_ms);
  std::string err = Stderr(), unexpected;
  std::istringstream in(err);
  for (std::string l; std::getline(in, l);) {
    bool ok = false;
    for (const auto& a : allowed) ok = ok || l.compare(0, a.size(), a) == 0;
    if (!ok) unexpected += l + "\n";
  }
  EXPECT_TRUE(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
      << prog_ << " did not exit 0 after \"" << line << "\": "
      << (st == -1 ? "still running"
                   : WIFEXITED(st) ? "exit " + std::to_string(WEXITSTATUS(st))
                                   : "signal " + std::to_string(WTERMSIG(st)));
  EXPECT_EQ(unexpected, "") << prog_ << ": unexpected lines on stderr";
}

std::string LeakSuppressions(const std::vector<std::string>& funcs) {
  const char* dir = getenv("TEST_TMPDIR");
  std::string path = std::string(dir ? dir : "/tmp") + "/ks-lsan-" + std::to_string(getpid()) +
                     "-" + std::to_string(NowMs()) + ".supp";
  std::ofstream f(path);
  for (const auto& fn : funcs) f << "leak:" << fn << "\n";
  const char* inherited = getenv("LSAN_OPTIONS");
  return std::string("LSAN_OPTIONS=") + (inherited ? std::string(inherited) + ":" : "") +
         "print_suppressions=0:suppressions=" + path;
}

static std::string Slurp(int fd) {
  std::string s;
  char tmp[65536];
  ssize_t r;
  while ((r = read(fd, tmp, sizeof tmp)) > 0) s.append(tmp, (size_t)r);
  return s;
}

Result Run(const std::vector<std::string>& argv, int timeout_ms,
           const std::vector<std::string>& env) {
  Result res;
  char o[] = "/tmp/ks-run-out-XXXXXX", e[] = "/tmp/ks-run-err-XXXXXX";
  int ofd = mkstemp(o), efd = mkstemp(e);
  std::vector<std::string> envv = ChildEnv(env);
  auto cargv = CStrings(argv);
  auto cenv = CStrings(envv);
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    dup2(ofd, 1);
    dup2(efd, 2);
    execve(argv[0].c_str(), cargv.data(), cenv.data());
    _exit(127);
  }
  long deadline = NowMs() + timeout_ms;
  int st = 0;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) break;
    if (NowMs() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      res.err = "[harness: timed out]\n";
      break;
    }
    usleep(2000);
  }
  res.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  lseek(ofd, 0, SEEK_SET);
  lseek(efd, 0, SEEK_SET);
  res.out = Slurp(ofd);
  res.err += Slurp(efd);
  FailOnSanitizerReport(argv[0], res.err);
  close(ofd);
  close(efd);
  unlink(o);
  unlink(e);
  return res;
}

Result Inject(const std::vector<std::string>& args, int timeout_ms,
              const std::vector<std::string>& env) {
  std::vector<std::string> argv = {InjectorPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(argv, timeout_ms, env);
}

// A process starts serving when first asked (shim/control/control.h): this rings.
RawClient::RawClient(pid_t pid) : pid_(pid) { fd_ = ks_control_connect(pid, 2000, nullptr); }

RawClient::~RawClient() {
  if (fd_ >= 0) close(fd_);
}

void RawClient::SendRaw(const std::string& bytes) {
  ssize_t w = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  (void)w;
}

void RawClient::ShutdownWrite() { shutdown(fd_, SHUT_WR); }

std::string RawClient::ReadLine(int timeout_ms) { return ReadLineFrom(fd_, &buf_, timeout_ms); }

std::vector<std::string> RawClient::RequestBare(const std::string& line, int timeout_ms) {
  SendRaw(line + "\n");
  std::vector<std::string> out;
  for (;;) {
    std::string l = ReadLine(timeout_ms);
    if (l.empty()) break;
    out.push_back(l);
    if (l.rfind("ok", 0) == 0 || l.rfind("err", 0) == 0) break;
  }
  return out;
}

std::string RawClient::Proof() {
  if (!proof_.empty() && NowMs() < proof_until_) return proof_;
  auto r = RequestBare("challenge");
  auto m = r.empty() ? Row{} : ParseLine(r.back());
  if (m["verb"] != "ok") return "";
  struct ks_proof p;
  if (ks_proof_make(pid_, strtoull(m["gen"].c_str(), nullptr, 10), &p) == 0) return "";
  proof_ = p.text;
  proof_until_ = NowMs() + atol(m["valid_ms"].c_str()) / 2;
  return proof_;
}

std::vector<std::string> RawClient::Request(const std::string& line, int timeout_ms) {
  std::string verb = line.substr(0, line.find(' '));
  if (verb == "hello" || verb == "help" || verb == "challenge" || verb == "quit" ||
      line.find(" proof=") != std::string::npos)
    return RequestBare(line, timeout_ms);
  return RequestBare(line + " proof=" + Proof(), timeout_ms);
}

std::map<std::string, std::string> ParseLine(const std::string& line) {
  std::map<std::string, std::string> m;
  struct ks_msg msg;
  const char* err = nullptr;
  if (ks_proto_parse(line.data(), line.size(), &msg, &err) != 0) {
    m["parse_error"] = err ? err : "?";
    return m;
  }
  m["verb"] = msg.verb;
  for (int i = 0; i < msg.nfields; i++) m[msg.f[i].key] = msg.f[i].val;
  return m;
}

std::map<pid_t, Row> ListRows(pid_t pid, std::string* final) {
  std::map<pid_t, Row> rows;
  RawClient c(pid);
  if (!c.ok() || c.ReadLine().rfind("killshim", 0) != 0) return rows;
  auto reply = c.Request("list");
  if (final && !reply.empty()) *final = reply.back();
  for (const auto& l : reply) {
    Row r = ParseLine(l);
    if (r["verb"] == "thread") rows[atoi(r["tid"].c_str())] = r;
  }
  return rows;
}

std::map<pid_t, Row> ProgramRows(pid_t pid) {
  std::map<pid_t, Row> out;
  for (auto& [tid, r] : ListRows(pid))
    if (r["role"] != "shim" && !(r["role"] == "foreign" && SanitizerThread(pid, tid)))
      out[tid] = r;
  return out;
}

std::map<std::string, std::string> FlatJson(const std::string& out) {
  std::map<std::string, std::string> m;
  json_object* root = json_tokener_parse(out.c_str());
  if (!root) return m;
  json_object_object_foreach(root, k, v) {
    if (!v) continue;
    std::string key = k;
    if (json_object_is_type(v, json_type_object)) {
      json_object_object_foreach(v, k2, v2) {
        if (v2) m[key + "." + k2] = json_object_get_string(v2);
      }
    } else if (json_object_is_type(v, json_type_array)) {
      m[key] = std::to_string(json_object_array_length(v));
      for (size_t i = 0; i < json_object_array_length(v); i++) {
        json_object* e = json_object_array_get_idx(v, i);
        if (!json_object_is_type(e, json_type_object)) continue;
        json_object_object_foreach(e, k2, v2) {
          if (v2) m[key + "." + std::to_string(i) + "." + k2] = json_object_get_string(v2);
        }
      }
    } else {
      m[key] = json_object_get_string(v);
    }
  }
  json_object_put(root);
  return m;
}

std::vector<pid_t> Tasks(pid_t pid) {
  std::vector<pid_t> v;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return v;
  while (struct dirent* e = readdir(d))
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') v.push_back(atoi(e->d_name));
  closedir(d);
  return v;
}

static size_t ProgramTasksOnce(pid_t pid) {
  size_t n = 0;
  for (pid_t tid : Tasks(pid)) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/comm");
    std::string comm;
    if (std::getline(f, comm)) n += comm.rfind("killshim-", 0) != 0;
  }
  return n;
}

size_t ProgramTasks(pid_t pid) {
  size_t last = ProgramTasksOnce(pid);
  for (int i = 0; i < 100; i++) {
    usleep(20000);
    size_t n = ProgramTasksOnce(pid);
    if (n == last) return n;
    last = n;
  }
  return last;
}

bool TaskExists(pid_t pid, pid_t tid) {
  struct stat st;
  std::string p = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid);
  return stat(p.c_str(), &st) == 0;
}

// The PC a thread sleeps at: the last field of /proc/PID/task/TID/syscall
// ("NR args... SP PC", or "-1 SP PC" blocked outside a system call); 0 while
// it runs (retried for up to a second).
static unsigned long SleepingPc(pid_t pid, pid_t tid) {
  std::string path = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/syscall";
  for (int i = 0; i < 200; i++) {
    std::ifstream f(path);
    std::string line;
    if (!std::getline(f, line)) return 0;
    if (line != "running") {
      size_t sp = line.rfind(' ');
      return sp == std::string::npos ? 0 : strtoul(line.c_str() + sp + 1, nullptr, 16);
    }
    usleep(5000);
  }
  return 0;
}

// The path of the loaded object whose file name starts with PREFIX, or "".
static std::string LoadedObject(const char* prefix) {
  struct Want {
    const char* prefix;
    std::string found;
  } w = {prefix, ""};
  dl_iterate_phdr(
      [](struct dl_phdr_info* info, size_t, void* data) {
        auto* w = static_cast<Want*>(data);
        const char* name = info->dlpi_name;
        const char* base = name ? strrchr(name, '/') : nullptr;
        if (base && strncmp(base + 1, w->prefix, strlen(w->prefix)) == 0) w->found = name;
        return 0;
      },
      &w);
  return w.found;
}

std::string SanitizerPreload() {
#ifndef __SANITIZE_THREAD__
  return "";
#else
  return LoadedObject("libtsan.so");
#endif
}

std::string AllocatorPreload(const std::string& lib, AllocAt at) {
  auto join = [](const std::string& a, const std::string& b) {
    return a.empty() ? b : b.empty() ? a : a + ":" + b;
  };
#if defined(__SANITIZE_THREAD__)
  return join(at == AllocAt::kNoShim ? SanitizerPreload() : Preload(), lib);
#else
#if defined(__SANITIZE_ADDRESS__)
  std::string first = LoadedObject("libasan.so");
#else
  std::string first;
#endif
  if (at == AllocAt::kNoShim) return join(first, lib);
  return join(first, at == AllocAt::kBeforeShim ? join(lib, ShimPath()) : join(ShimPath(), lib));
#endif
}

bool Has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

pid_t TidFrom(const std::string& line) {
  size_t p = line.find("tid=");
  return p == std::string::npos ? 0 : atoi(line.c_str() + p + 4);
}

std::string NamespaceUnavailable(const std::string& kind) {
  std::vector<std::string> argv = {"/usr/bin/unshare"};
  if (kind == "user") argv.insert(argv.end(), {"--user", "--map-root-user"});
  else argv.push_back("--" + kind);
  argv.push_back("/bin/true");
  Result r = Run(argv, 30000);
  if (r.code == 0) return "";
  return "unshare --" + kind + " fails here without the shim too (exit " + std::to_string(r.code) +
         "): " + r.err;
}

std::string Preload() {
  std::string rt = SanitizerPreload();
  return rt.empty() ? ShimPath() : ShimPath() + ":" + rt;
}

bool SanitizerThread(pid_t pid, pid_t tid) {
#ifndef KS_SANITIZER
  (void)pid;
  (void)tid;
  return false;
#else
  unsigned long pc = SleepingPc(pid, tid);
  if (!pc) return false;
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    unsigned long lo = 0, hi = 0;
    if (sscanf(line.c_str(), "%lx-%lx", &lo, &hi) != 2 || pc < lo || pc >= hi) continue;
    size_t slash = line.rfind('/');
    if (slash == std::string::npos) return false;
    std::string base = line.substr(slash + 1);
    for (const char* rt : {"libtsan.so", "libasan.so", "libubsan.so", "liblsan.so"})
      if (base.rfind(rt, 0) == 0) return true;
    return false;
  }
  return false;
#endif
}

}  // namespace ks

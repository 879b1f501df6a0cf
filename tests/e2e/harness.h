// End-to-end test harness: starts real programs under the built shim and runs
// the built injector, as a user would.
#ifndef KS_TESTS_HARNESS_H
#define KS_TESTS_HARNESS_H

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace ks {

// Absolute path of a file in the runfiles tree, e.g. "shim/libkillshim.so".
std::string Runfile(const std::string& rel);
std::string ShimPath();
// The LD_PRELOAD value that loads the shim into a program: the shim's path,
// then, in a --config=tsan build, ThreadSanitizer's runtime (SanitizerPreload).
std::string Preload();
// In a --config=tsan build, the path of ThreadSanitizer's runtime as loaded
// in this test: a TSan-built shim in a program not built with TSan needs it
// preloaded (tools/killshim does the same). Empty in other builds.
std::string SanitizerPreload();
// The LD_PRELOAD value for a program that preloads the allocator LIB (none
// if empty) with or without the shim, before or after it. ASan's and TSan's
// runtimes replace malloc, and an allocator loaded ahead of them crashes the
// program at start, with or without the shim. So under ASan its runtime
// comes first; under TSan nothing may precede its runtime but the shim
// (Preload: a TSan-built shim behind it would run before TSan is set up),
// and LIB comes after both whichever side was asked. Plain and UBSan builds
// load exactly what was asked.
enum class AllocAt { kNoShim, kBeforeShim, kAfterShim };
std::string AllocatorPreload(const std::string& lib, AllocAt at);
std::string InjectorPath();
std::string ProgPath(const std::string& name);  // tests/progs/NAME
// Copies FROM to TO with MODE (a program under a name of the test's
// choosing); a fatal failure of the calling test if the mode cannot be set.
void CopyFile(const std::string& from, const std::string& to, mode_t mode);

// A program started under LD_PRELOAD=libkillshim.so, with pipes on its
// stdin and stdout; stderr goes to a file (Stderr() reads it).
class Target {
 public:
  // HOLD: the child waits before exec until Release(), so a test can prepare
  // something that depends on its pid.
  explicit Target(const std::string& prog, const std::vector<std::string>& args = {},
                  const std::vector<std::string>& env = {}, bool preload = true,
                  bool hold = false);
  void Release();
  ~Target();
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;

  pid_t pid() const { return pid_; }
  // Next line of its stdout (without '\n'); "" on timeout or EOF.
  std::string ReadLine(int timeout_ms = 10000);
  // Reads lines until one starts with PREFIX; returns it ("" on timeout).
  std::string WaitFor(const std::string& prefix, int timeout_ms = 10000);
  void Send(const std::string& line);  // a line to its stdin
  // Exit status as from waitpid, or -1 if still running after TIMEOUT_MS.
  int Wait(int timeout_ms = 10000);
  bool Alive();
  // Waits until the control socket answers.
  bool WaitSocket(int timeout_ms = 5000);
  std::string Stderr() const;
  // Asks the program to end as it is meant to (LINE to its stdin) and waits:
  // its exit status as from waitpid, or -1 if it still runs after TIMEOUT_MS.
  int Quit(const std::string& line = "quit", int timeout_ms = 30000);
  // Quit, then expects exit status 0 and nothing on stderr but lines that
  // start with one of ALLOWED: LeakSanitizer's report at exit, or any late
  // report of a sanitizer or of the shim, fails the test.
  void ExpectCleanExit(const std::string& line = "quit",
                       const std::vector<std::string>& allowed = {}, int timeout_ms = 30000);

 private:
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, hold_ = -1;
  std::string prog_, buf_, err_path_;
  int status_ = -1;
};

// The lines of a sanitizer's report in TEXT (a program's stderr): an error
// or warning of ASan, LSan, TSan or UBSan, or a signal or check of their
// runtime. "" if none. A Target whose stderr holds one, and a Run whose
// output does, fail the test that started it, whatever it checked.
std::string SanitizerReport(const std::string& text);

// "LSAN_OPTIONS=...": the inherited options plus a suppressions file for
// blocks allocated under FUNCS, for a program where an ending leaks by design
// (a C victim aborted between its malloc and its free, with no cleanup
// handler to free the block). LeakSanitizer still checks everything else.
std::string LeakSuppressions(const std::vector<std::string>& funcs);

struct Result {
  int code = -1;  // exit code, or 128+signal
  std::string out, err;
};

// S contains PART.
bool Has(const std::string& s, const std::string& part);
// The number after "tid=" in LINE (a test program's "KIND tid=N"), or 0.
pid_t TidFrom(const std::string& line);

// Runs killshim-inject ARGS, with extra environment ENV ("K=V").
Result Inject(const std::vector<std::string>& args, int timeout_ms = 60000,
              const std::vector<std::string>& env = {});
// Runs any command (argv[0] is a path) the same way.
Result Run(const std::vector<std::string>& argv, int timeout_ms = 60000,
           const std::vector<std::string>& env = {});

// "" if this machine lets root make namespaces of KIND ("mount", "user"),
// without the shim; else why not (a chroot's root is no mount point, and
// the kernel refuses user namespaces to a chrooted process: the fresh
// machine of ../shared/fresh-machine is one). Tests that build their
// scenario with a namespace say so and skip; tests of the shim's own
// behaviour compare with a run without the shim instead.
std::string NamespaceUnavailable(const std::string& kind);

// A raw protocol client for tests of the socket itself.
class RawClient {
 public:
  explicit RawClient(pid_t pid);
  ~RawClient();
  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  void SendRaw(const std::string& bytes);
  void ShutdownWrite();
  std::string ReadLine(int timeout_ms = 5000);  // "" on timeout or EOF
  // Sends LINE+'\n' and returns every line of the reply, the last being
  // "ok ..." or "err ...". A request that needs a proof of access gets one
  // (a fresh "challenge" when the last is old), as this process may prove.
  std::vector<std::string> Request(const std::string& line, int timeout_ms = 10000);
  // The same, with no proof added.
  std::vector<std::string> RequestBare(const std::string& line, int timeout_ms = 10000);
  // The value of proof= for the current challenge ("" if none could be made).
  std::string Proof();

 private:
  pid_t pid_ = 0;
  int fd_ = -1;
  std::string buf_;
  std::string proof_;
  long proof_until_ = 0;
};

// key=value fields of one protocol line (values unescaped); "verb" holds the verb.
std::map<std::string, std::string> ParseLine(const std::string& line);

using Row = std::map<std::string, std::string>;

// CLOCK_MONOTONIC in milliseconds.
long NowMs();
// tid -> fields of the "thread" lines of a "list" request, through a raw
// client. Empty on failure; *FINAL gets the reply's last line.
std::map<pid_t, Row> ListRows(pid_t pid, std::string* final = nullptr);
// The same, without the shim's own threads nor a sanitizer runtime's (SanitizerThread).
std::map<pid_t, Row> ProgramRows(pid_t pid);

// A JSON object (e.g. the injector's --json end report) flattened: scalars by
// key, an object's members as "KEY.SUB", an array of objects as "KEY" (its
// length) and "KEY.N.SUB". Null values are absent; {} if OUT is not JSON.
std::map<std::string, std::string> FlatJson(const std::string& out);

// Tids of PID from /proc/PID/task, in its order (the kernel's list of the
// process's threads: creation order, not sorted once tids wrap around).
std::vector<pid_t> Tasks(pid_t pid);
bool TaskExists(pid_t pid, pid_t tid);
// How many tasks of PID are not the shim's own (named "killshim-..."), once
// two reads 20 ms apart agree: a connection thread names itself just after
// it starts, and until then it looks like the program's.
size_t ProgramTasks(pid_t pid);

// True only in a sanitizer build (KS_SANITIZER) and only for a thread that
// the sanitizer's runtime created for itself (ThreadSanitizer's background
// thread: a raw clone the shim rightly lists as "foreign"): one whose
// user-space PC, while it sleeps, lies in libtsan/libasan/... Tests that
// count a program's threads leave it out; in the plain build it is false.
bool SanitizerThread(pid_t pid, pid_t tid);

}  // namespace ks

#endif

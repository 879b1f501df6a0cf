// Helpers shared by the attach tests (attach_test, attach_end_test).
#ifndef KS_TESTS_E2E_ATTACH_UTIL_H
#define KS_TESTS_E2E_ATTACH_UTIL_H

#include <gtest/gtest.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"

namespace ks_attach {

using ks::Has;
using ks::Inject;
using ks::Target;

// "" if this process may ptrace a child of its own; else why not (a
// container without CAP_SYS_PTRACE, Yama at 3, a seccomp'd sandbox). The
// attach needs ptrace once: where the environment forbids it, the tests
// that attach say so and skip.
inline std::string PtraceUnavailable() {
  pid_t c = fork();
  if (c == 0) {
    pause();
    _exit(0);
  }
  std::string why;
  if (ptrace(PTRACE_SEIZE, c, 0, 0) != 0) why = std::string("PTRACE_SEIZE: ") + strerror(errno);
  kill(c, SIGKILL);
  waitpid(c, nullptr, __WALL);
  return why;
}

#define KS_NEED_PTRACE()                                                   \
  do {                                                                     \
    if (std::string why = PtraceUnavailable(); !why.empty())               \
      GTEST_SKIP() << "ptrace is not allowed here, attach needs it once: " << why; \
  } while (0)

inline ks::Result Attach(pid_t pid, const std::vector<std::string>& more = {}) {
  std::vector<std::string> args = {"--attach", "--shim", ks::ShimPath()};
  args.insert(args.end(), more.begin(), more.end());
  args.push_back(std::to_string(pid));
  return Inject(args);
}

// The heartbeat count the program reports ("beat" on its stdin).
inline long Beats(Target& t) {
  t.Send("beat");
  std::string l = t.WaitFor("beats ");
  return l.empty() ? -1 : atol(l.c_str() + 6);
}

// Waits (up to 5 s) until the heartbeat passes AFTER: the program's other
// threads still run.
inline bool BeatsPass(Target& t, long after) {
  long end = ks::NowMs() + 5000;
  while (ks::NowMs() < end) {
    long b = Beats(t);
    if (b > after) return true;
    if (b < 0) return false;
    usleep(20 * 1000);
  }
  return false;
}

// The number after "KEY=" in LINE, or 0.
inline pid_t TidAfter(const std::string& line, const std::string& key) {
  size_t p = line.find(key + "=");
  return p == std::string::npos ? 0 : atoi(line.c_str() + p + key.size() + 1);
}

// Waits (up to 5 s) until TID of PID is gone.
inline bool TaskEnds(pid_t pid, pid_t tid) {
  for (long end = ks::NowMs() + 5000; ks::NowMs() < end; usleep(10 * 1000))
    if (!ks::TaskExists(pid, tid)) return true;
  return false;
}

inline std::vector<std::string> EndArgs(pid_t pid, pid_t tid, std::vector<std::string> mode) {
  mode.push_back(std::to_string(pid));
  mode.push_back(std::to_string(tid));
  return mode;
}

// Under ThreadSanitizer, TSAN_OPTIONS with a suppressions file for a stack
// dump of a pre-attach thread: the attach's thread set libunwind up (its
// signal mask) before the control server existed; a pre-attach thread's dump
// handler (uninstrumented by design, shim/defs.bzl) runs libunwind, whose
// sigprocmask reaches TSan's interceptor, which reads that mask. The order
// is real (the server that sends the dump signal was created after the
// set-up) but TSan gives signals no happens-before, and a thread that
// existed before the attach had no other edge to the attach's thread.
// Reports naming anything but libunwind still fail. Empty in other builds.
inline std::vector<std::string> TsanPreAttachDumpEnv() {
#ifdef __SANITIZE_THREAD__
  const char* dir = getenv("TEST_TMPDIR");
  std::string p = std::string(dir ? dir : "/tmp") + "/attach-tsan.supp";
  FILE* f = fopen(p.c_str(), "w");
  if (!f) return {};
  fputs("race:libunwind.so.8\n", f);
  if (fclose(f) != 0) return {};
  const char* inherited = getenv("TSAN_OPTIONS");
  return {std::string("TSAN_OPTIONS=") + (inherited ? inherited : "") + ":suppressions=" + p};
#else
  return {};
#endif
}

}  // namespace ks_attach

#endif

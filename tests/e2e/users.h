// Running the injector and test programs as other users (setpriv, from
// util-linux): the access tests need a target or a client that is not root.
// The tests run as root (CI does); nobody cannot read the runfiles tree
// under root's home, so the files such a process runs are copied into a
// directory every user can read.
#ifndef KS_TESTS_USERS_H
#define KS_TESTS_USERS_H

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"

namespace ks {

constexpr int kNobody = 65534;   // nobody / nogroup on Debian
constexpr int kOther = 12345;    // a uid with no account: neither root nor nobody

// Copies of the shim, the injector and the named test programs, readable by all.
class Copies {
 public:
  explicit Copies(const std::vector<std::string>& progs) {
    char d[] = "/tmp/ks-users-XXXXXX";
    if (!mkdtemp(d)) return;
    dir_ = d;
    chmod(d, 0755);
    shim_ = Copy(ShimPath(), "libkillshim.so");
    inject_ = Copy(InjectorPath(), "killshim-inject");
    for (const auto& p : progs) Copy(ProgPath(p), p);
  }
  ~Copies() {
    for (const auto& f : files_) unlink(f.c_str());
    if (!dir_.empty()) rmdir(dir_.c_str());
  }
  Copies(const Copies&) = delete;
  Copies& operator=(const Copies&) = delete;

  const std::string& inject() const { return inject_; }
  std::string prog(const std::string& name) const { return dir_ + "/" + name; }
  // LD_PRELOAD for a program started through setpriv: the copied shim (and
  // ThreadSanitizer's runtime in a tsan build, which is readable by all).
  std::string preload() const {
    std::string s = SanitizerPreload();
    return s.empty() ? shim_ : shim_ + ":" + s;
  }

 private:
  std::string Copy(const std::string& from, const std::string& name) {
    std::string to = dir_ + "/" + name;
    {
      std::ifstream src(from, std::ios::binary);
      std::ofstream dst(to, std::ios::binary);
      dst << src.rdbuf();
    }
    chmod(to.c_str(), 0755);
    files_.push_back(to);
    return to;
  }
  std::string dir_, shim_, inject_;
  std::vector<std::string> files_;
};

// ARGV run as UID:GID, with no supplementary groups.
inline std::vector<std::string> AsUser(int uid, const std::vector<std::string>& argv) {
  std::vector<std::string> v = {"/usr/bin/setpriv", "--reuid=" + std::to_string(uid),
                                "--regid=" + std::to_string(uid), "--clear-groups"};
  v.insert(v.end(), argv.begin(), argv.end());
  return v;
}

// The copied injector, run as UID.
inline Result InjectAs(const Copies& c, int uid, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {c.inject()};
  argv.insert(argv.end(), args.begin(), args.end());
  return Run(AsUser(uid, argv));
}

// kernel.yama.ptrace_scope, or -1 on a kernel without Yama.
inline int YamaScope() {
  std::ifstream f("/proc/sys/kernel/yama/ptrace_scope");
  int v = -1;
  if (!(f >> v)) return -1;
  return v;
}

}  // namespace ks

#endif

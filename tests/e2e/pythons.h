// The CPython a Python test runs: Debian 12's /usr/bin/python3 (3.11), or,
// when KS_TEST_PYTHON is 3.9 or 3.13 (the python*_test_39 and _313 variants,
// tests/e2e/BUILD), the one tools/pythons.sh unpacked from Debian 11's or
// 13's packages under /var/cache/killshim/pythons. 3.13 needs glibc 2.38:
// it runs under its own loader and libc (LD_PRELOAD goes through that
// loader as through the system's).
#ifndef KS_TESTS_E2E_PYTHONS_H
#define KS_TESTS_E2E_PYTHONS_H

#include <cstdlib>
#include <string>
#include <vector>

namespace ks {

struct PyCmd {
  std::string prog;               // what to exec
  std::vector<std::string> pre;   // its arguments before the script's
  std::vector<std::string> env;   // for the unpacked ones: PYTHONHOME...
  int minor;                      // 3.MINOR
  std::vector<std::string> Args(const std::vector<std::string>& a) const {
    std::vector<std::string> v = pre;
    v.insert(v.end(), a.begin(), a.end());
    return v;
  }
};

inline PyCmd PythonUnderTest() {
  const char* e = std::getenv("KS_TEST_PYTHON");
  std::string v = e ? e : "";
  const std::string root = "/var/cache/killshim/pythons/" + v;
  if (v == "3.9")
    return {root + "/usr/bin/python3.9",
            {},
            {"PYTHONHOME=" + root + "/usr",   // ctypes: Debian 11's libffi.so.7
             "LD_LIBRARY_PATH=" + root + "/usr/lib/x86_64-linux-gnu"},
            9};
  if (v == "3.13") {
    std::string lib = root + "/usr/lib/x86_64-linux-gnu";
    std::vector<std::string> env = {"PYTHONHOME=" + root + "/usr"};
    // 3.13's threads are joinable (3.11 detaches them at once), and a daemon
    // thread that ends during finalization (pthread_exit when it asks for
    // the GIL) is neither joined nor detached: ThreadSanitizer reports it as
    // a leak at exit, with or without the shim (LD_PRELOAD=libtsan.so.2
    // alone, a daemon thread spinning at exit). Not the shim's to report.
    const char* tsan = std::getenv("TSAN_OPTIONS");
    if (tsan) env.push_back(std::string("TSAN_OPTIONS=") + tsan + ":report_thread_leaks=0");
    return {lib + "/ld-linux-x86-64.so.2",
            {"--library-path", lib, root + "/usr/bin/python3.13"},
            env,
            13};
  }
  return {"/usr/bin/python3", {}, {}, 11};
}

}  // namespace ks

#endif

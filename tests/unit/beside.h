// For unit tests that dlopen a library of their own: the path of NAME in
// the directory of the test's executable (Bazel puts a test's data
// libraries of the same package there).
#ifndef KS_TESTS_UNIT_BESIDE_H
#define KS_TESTS_UNIT_BESIDE_H

#include <unistd.h>

#include <string>

namespace ks::test {

inline std::string Beside(const char* name) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return name;
  self[n] = '\0';
  std::string dir(self);
  return dir.substr(0, dir.rfind('/') + 1) + name;
}

}  // namespace ks::test

#endif

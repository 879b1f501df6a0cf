// What the front-door tests (launcher, demo, installer, man pages) share.
#ifndef KS_TESTS_FRONT_H
#define KS_TESTS_FRONT_H

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

namespace ks {

// A runfile's path as it sits in the runfiles tree, symlinks kept. The
// launcher finds its files relative to where it is invoked, so resolving the
// link (as Runfile does) would point it at the source tree instead.
inline std::string RunfilesPath(const std::string& rel) {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* ws = getenv("TEST_WORKSPACE");
  return std::string(srcdir ? srcdir : ".") + "/" + (ws ? ws : "killshim") + "/" + rel;
}

inline std::string LauncherPath() { return RunfilesPath("tools/killshim"); }

// A fresh directory under TEST_TMPDIR (or /tmp).
inline std::string TempDir(const std::string& tag) {
  const char* t = getenv("TEST_TMPDIR");
  std::string tmpl = std::string(t ? t : "/tmp") + "/ks-" + tag + "-XXXXXX";
  char* d = mkdtemp(&tmpl[0]);
  return d ? std::string(d) : std::string();
}

inline bool Exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

inline bool Contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

}  // namespace ks

#endif

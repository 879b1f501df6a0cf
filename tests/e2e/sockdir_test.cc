// KILLSHIM_SOCKET_DIR (shim/control/sockdir.h): the directory is opened once without
// following a link, must be its user's (or root's) and writable by nobody
// else, and everything after is done through that descriptor: a link
// repointed, or a directory swapped under the path, changes nothing the
// shim does.
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "tests/e2e/harness.h"
#include "tests/e2e/users.h"

namespace {

using ks::Target;

struct TmpDir {
  std::string path;
  TmpDir() {
    char d[] = "/tmp/ks-sockdir-XXXXXX";
    path = mkdtemp(d) ? d : "";
  }
  ~TmpDir() { ks::Run({"/bin/rm", "-rf", path}); }
};

bool Exists(const std::string& p) {
  struct stat st;
  return lstat(p.c_str(), &st) == 0;
}

// Starts threads_basic with KILLSHIM_SOCKET_DIR=DIR; waits for "ready".
struct Started {
  Target t;
  explicit Started(const std::string& dir)
      : t(ks::ProgPath("threads_basic"), {"1"}, {"KILLSHIM_SOCKET_DIR=" + dir}) {
    EXPECT_EQ(t.WaitFor("ready"), "ready");
  }
  std::string Sock(const std::string& dir) const {
    return dir + "/killshim-" + std::to_string(t.pid()) + ".sock";
  }
};

// Waits until the shim has said something on stderr that contains WHAT.
bool StderrSays(const Target& t, const std::string& what) {
  long deadline = ks::NowMs() + 5000;
  while (t.Stderr().find(what) == std::string::npos && ks::NowMs() < deadline) usleep(10000);
  return t.Stderr().find(what) != std::string::npos;
}

// A link, even to a good directory, is refused: whoever owns the link
// could repoint it between any two uses of the path.
TEST(SocketDir, SymbolicLinkIsRefused) {
  TmpDir tmp;
  std::string real = tmp.path + "/real", link = tmp.path + "/link";
  ASSERT_EQ(mkdir(real.c_str(), 0700), 0);
  ASSERT_EQ(symlink(real.c_str(), link.c_str()), 0);
  for (const std::string& dir : {link, link + "/"}) {
    Started s(dir);
    EXPECT_TRUE(StderrSays(s.t, "is a symbolic link")) << s.t.Stderr();
    EXPECT_FALSE(Exists(s.Sock(real))) << "a socket was made through the link";
    ks::Result r = ks::Inject({std::to_string(s.t.pid())}, 10000, {"KILLSHIM_SOCKET_DIR=" + real});
    EXPECT_EQ(r.code, 5) << r.err;
    s.t.Send("exit 0");
    EXPECT_EQ(s.t.WaitFor("exited 0"), "exited 0");   // the program runs on without control
  }
}

// Writable by others (a sticky /tmp-like directory, a group's), or owned by
// another user: refused, with the reason.
TEST(SocketDir, DirectoryOthersCouldWriteIsRefused) {
  TmpDir tmp;
  struct Case {
    mode_t mode;
    int owner;
    const char* says;
  } cases[] = {{01777, 0, "writable by every user"},
               {0770, 0, "writable by its group"},
               {0700, ks::kNobody, "belongs to uid 65534"}};
  int i = 0;
  for (const Case& c : cases) {
    std::string dir = tmp.path + "/d" + std::to_string(i++);
    ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
    ASSERT_EQ(chmod(dir.c_str(), c.mode), 0);
    ASSERT_EQ(chown(dir.c_str(), c.owner, c.owner), 0);
    Started s(dir);
    EXPECT_TRUE(StderrSays(s.t, c.says)) << s.t.Stderr();
    EXPECT_FALSE(Exists(s.Sock(dir)));
  }
}

// The directory is used through the descriptor the shim opened: moved away
// and replaced by another one holding a file of the socket's name, the new
// file is never touched (the shim removes its own socket, in the directory
// it made it in, at exit).
TEST(SocketDir, SwappedDirectoryIsNeverTouched) {
  TmpDir tmp;
  std::string dir = tmp.path + "/d", moved = tmp.path + "/moved";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  Started s(dir);
  // The socket is bound before main runs: it is there at "ready".
  std::string name = s.Sock(dir).substr(dir.size());
  struct stat st;
  ASSERT_EQ(stat(s.Sock(dir).c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(rename(dir.c_str(), moved.c_str()), 0);
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  { std::ofstream(dir + name) << "precious\n"; }
  s.t.Send("quit");
  EXPECT_EQ(s.t.Wait(), 0);
  std::ifstream f(dir + name);
  std::string l;
  EXPECT_TRUE(std::getline(f, l) && l == "precious") << "the replacement was touched";
  EXPECT_FALSE(Exists(moved + name)) << "its own socket was left behind";
}

// The path of the directory no longer has to fit in a socket address (108
// bytes): the shim binds through the directory's descriptor, and the
// injector connects the same way.
TEST(SocketDir, LongDirectoryPathWorks) {
  TmpDir tmp;
  std::string dir = tmp.path;
  while (dir.size() < 150) {
    dir += "/a-rather-long-directory-name";
    ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  }
  Started s(dir);
  ks::Result r = ks::Inject({std::to_string(s.t.pid())}, 10000, {"KILLSHIM_SOCKET_DIR=" + dir});
  EXPECT_EQ(r.code, 0) << r.err << s.t.Stderr();
  EXPECT_NE(r.out.find("worker-0"), std::string::npos) << r.out;
  s.t.Send("quit");
  EXPECT_EQ(s.t.Wait(), 0);
  EXPECT_FALSE(Exists(s.Sock(dir)));
}

}  // namespace

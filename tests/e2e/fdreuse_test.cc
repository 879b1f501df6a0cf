// A program that closes every fd above 2 and opens its own files as 3 and 4
// (what daemons do), dumped in a loop by the real injector while it copies
// one file into the other: the shim never reads or writes those files, owns
// no fd at a low number, and the program's first open() gets 3.
#include <dirent.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"

namespace {

using ks::Target;

const int kRecords = 1500;   // 7-byte records in the input
const int kRounds = 30;      // dumps while the copier works, one per step

std::string TempDir(const std::string& tag) {
  const char* t = getenv("TEST_TMPDIR");
  std::string tmpl = std::string(t ? t : "/tmp") + "/ks-" + tag + "-XXXXXX";
  char* d = mkdtemp(&tmpl[0]);
  return d ? std::string(d) : std::string();
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Printable, varied, and not a multiple of anything libunwind might write.
std::string MakeInput() {
  std::string in;
  unsigned x = 12345;
  for (int i = 0; i < kRecords * 7; i++) {
    x = x * 1103515245u + 12345u;
    in.push_back(static_cast<char>('!' + (x >> 16) % 90));
  }
  return in;
}

// What the copier must write: one "NNNNN:record\n" line per record.
std::string ExpectedLog(const std::string& in) {
  std::string out;
  char num[16];
  for (int i = 0; i < kRecords; i++) {
    snprintf(num, sizeof num, "%05d:", i);
    out += num + in.substr(static_cast<size_t>(i) * 7, 7) + "\n";
  }
  return out;
}

// "" if A == B, else where and how they first differ (the files are too
// long to print whole).
std::string Diff(const std::string& a, const std::string& b) {
  if (a == b) return "";
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) i++;
  size_t from = i < 16 ? 0 : i - 16;
  return "sizes " + std::to_string(a.size()) + " and " + std::to_string(b.size()) +
         ", first difference at byte " + std::to_string(i) + ": \"" + a.substr(from, 40) +
         "\" vs \"" + b.substr(from, 40) + "\"";
}

// The numbers of PID's open fds.
std::vector<int> OpenFds(pid_t pid) {
  std::vector<int> fds;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return fds;
  while (struct dirent* e = readdir(d))
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') fds.push_back(atoi(e->d_name));
  closedir(d);
  return fds;
}

struct CopyRun {
  std::string first, files, stopfd, copied, log, err;
  int dumps_ok = 0, dumps = 0, exit_status = -1;
  std::vector<int> low_fds;   // fds other than 0-4 below 256, seen while dumping
};

int Field(const std::string& line, const std::string& key) {
  size_t p = line.find(key + "=");
  return p == std::string::npos ? -1 : atoi(line.c_str() + p + key.size() + 1);
}

// Runs fdreuse over IN into LOG; with DUMP, one --stack per step while the
// copier works through it.
CopyRun CopyOnce(const std::string& in, const std::string& log, bool dump) {
  CopyRun r;
  Target t(ks::ProgPath("fdreuse"), {in, log, "1000"});
  r.first = t.WaitFor("first-open");
  // The program closes the shim's socket only once the control thread waits
  // in accept: a control thread that finds its socket gone re-creates it,
  // and for the microseconds between socket() and the move up the new socket
  // holds the lowest free number, which an open() of the program's at that
  // very moment would have got (docs/security.md).
  EXPECT_TRUE(t.WaitSocket());
  t.Send("start");
  r.files = t.WaitFor("files");
  r.stopfd = t.WaitFor("stopfd");
  EXPECT_EQ(t.WaitFor("ready"), "ready");
  EXPECT_TRUE(t.WaitSocket());
  int per = kRecords / kRounds;
  for (int i = 0; i < kRounds; i++) {
    t.Send("step " + std::to_string(per));
    if (!dump) continue;
    ks::Result d = ks::Inject({"--stack", std::to_string(t.pid())});
    r.dumps++;
    if (d.code == 0 && d.out.find("fdreuse") != std::string::npos) r.dumps_ok++;
    for (int fd : OpenFds(t.pid()))
      if (fd > 4 && fd < 256) r.low_fds.push_back(fd);
  }
  t.Send("finish");
  r.copied = t.WaitFor("copied", 60000);
  t.Send("quit");
  r.exit_status = t.Wait();
  r.log = Slurp(log);
  r.err = t.Stderr();
  return r;
}

TEST(FdReuse, DumpsNeverTouchTheProgramsFilesAndTheShimHoldsNoLowFd) {
  std::string dir = TempDir("fdreuse");
  ASSERT_FALSE(dir.empty());
  std::string in = MakeInput();
  {
    std::ofstream f(dir + "/in", std::ios::binary);
    f << in;
  }
  CopyRun quiet = CopyOnce(dir + "/in", dir + "/log-quiet", false);
  CopyRun dumped = CopyOnce(dir + "/in", dir + "/log-dumped", true);

  for (const CopyRun* r : {&quiet, &dumped}) {
    // libunwind's pipe used to take 3 and 4: the first open() got 5.
    EXPECT_EQ(r->first, "first-open fd=3");
    EXPECT_EQ(r->files, "files in=3 log=4");
    EXPECT_GE(Field(r->stopfd, "fd"), 256) << r->stopfd;   // the eventfd lives high too
    EXPECT_EQ(r->copied, "copied records=1500 bad_offsets=0 write_errors=0 replaced=0");
    EXPECT_EQ(r->exit_status, 0) << r->err;
  }
  EXPECT_EQ(dumped.dumps, kRounds);
  EXPECT_EQ(dumped.dumps_ok, kRounds) << "every dump works on a program that closed the shim's fds";
  EXPECT_TRUE(dumped.low_fds.empty()) << "the shim held fd " << dumped.low_fds[0];
  EXPECT_EQ(Diff(dumped.log, ExpectedLog(in)), "");
  EXPECT_EQ(Diff(dumped.log, quiet.log), "") << "the log differs from a run without dumps";
  EXPECT_EQ(Diff(Slurp(dir + "/in"), in), "");
}

// A program that put a file of its own on the number of a thread's stop
// fd, a regular file or an eventfd of its own (all eventfds share one
// inode: only kcmp tells them apart): flag mode sets the flag and wakes the
// thread, but never writes the eventfd's 8 bytes into that file.
class StopFdClobbered : public ::testing::TestWithParam<const char*> {};

TEST_P(StopFdClobbered, FlagModeNeverWritesIntoTheProgramsFile) {
  std::string how = GetParam();
  std::string dir = TempDir("fdclobber");
  ASSERT_FALSE(dir.empty());
  std::string in = MakeInput();
  {
    std::ofstream f(dir + "/in", std::ios::binary);
    f << in;
  }
  Target t(ks::ProgPath("fdreuse"), {dir + "/in", dir + "/log", "0"});
  ASSERT_TRUE(t.WaitSocket());
  t.Send("start");
  std::string stopfd = t.WaitFor("stopfd");
  ASSERT_EQ(t.WaitFor("ready"), "ready");
  t.Send("step 100");
  t.Send(how);
  ASSERT_EQ(t.WaitFor("clobbered"), "clobbered");
  // The copier never looks at its flag: the request stands, unanswered.
  ks::Result r = ks::Inject({"--mode", "flag", "--timeout", "0.3", std::to_string(t.pid()),
                             std::to_string(Field(stopfd, "tid"))});
  EXPECT_EQ(r.code, 3) << r.out << r.err;
  t.Send("count");
  EXPECT_EQ(t.WaitFor("count"), "count=0") << "the shim wrote into the program's eventfd";
  t.Send("finish");
  EXPECT_EQ(t.WaitFor("copied", 60000),
            "copied records=1500 bad_offsets=0 write_errors=0 replaced=0");
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0) << t.Stderr();
  EXPECT_EQ(Diff(Slurp(dir + "/log"), ExpectedLog(in)), "");
}

INSTANTIATE_TEST_SUITE_P(Ways, StopFdClobbered, ::testing::Values("clobber", "clobber-eventfd"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           return std::string(i.param) == "clobber" ? "RegularFile" : "Eventfd";
                         });

// The shim's own fds sit at 256 and above from the start: its control
// socket, and the connection it is serving; and no pipe of libunwind's
// appears, even after a stack dump.
TEST(FdReuse, TheShimsSocketsLiveHigh) {
  Target t(ks::ProgPath("threads_basic"));
  ASSERT_EQ(t.WaitFor("ready"), "ready");
  ASSERT_TRUE(t.WaitSocket());
  ks::Result d = ks::Inject({"--stack", std::to_string(t.pid())});
  ASSERT_EQ(d.code, 0) << d.err;
  ks::RawClient c(t.pid());
  ASSERT_TRUE(c.ok());
  ASSERT_NE(c.ReadLine().find("killshim"), std::string::npos);
  int sockets = 0;
  for (int fd : OpenFds(t.pid())) {
    char link[64] = "";
    std::string p = "/proc/" + std::to_string(t.pid()) + "/fd/" + std::to_string(fd);
    ssize_t n = readlink(p.c_str(), link, sizeof link - 1);
    if (n > 0) link[n] = '\0';
    if (std::string(link).rfind("socket:", 0) == 0) {
      sockets++;
      EXPECT_GE(fd, 256) << "a socket of the shim at fd " << fd;
    }
    if (std::string(link).rfind("pipe:", 0) == 0) {
      EXPECT_LE(fd, 2) << "a pipe the program did not make, at fd " << fd;
    }
  }
  EXPECT_EQ(sockets, 2);   // listening + this connection
  t.Send("quit");
  EXPECT_EQ(t.Wait(), 0);
}

}  // namespace

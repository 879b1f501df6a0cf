// /proc parsers, through their C header.
#include "shim/common/procfs.h"

#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string.h>

#include <string>

TEST(Procfs, ParsesStatWithTrickyComm) {
  std::string s =
      "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 3 0 98765 "
      "1000 100 18446744073709551615\n";
  ks_taskstat st;
  ASSERT_EQ(ks_parse_stat(s.data(), s.size(), &st), 0);
  EXPECT_STREQ(st.comm, "a) b (c)");
  EXPECT_EQ(st.state, 'S');
  EXPECT_EQ(st.utime, 250u);
  EXPECT_EQ(st.stime, 30u);
  EXPECT_EQ(st.starttime, 98765u);
}

TEST(Procfs, RejectsTruncatedStat) {
  const char* bad[] = {"", "1234", "1234 (x", "1234 (x) S 1 2 3", "1 (x) SS 1 1 1 1 1 1 1 1 1 1 1 1"};
  for (const char* b : bad) {
    ks_taskstat st;
    EXPECT_EQ(ks_parse_stat(b, strlen(b), &st), -1) << b;
  }
}

// The stat parser as it was (strtok_r and strtoull on a copy), kept here as
// the reference the in-place scanner must agree with.
static int RefParseStat(const char* buf, size_t len, ks_taskstat* out) {
  memset(out, 0, sizeof *out);
  const char* open = static_cast<const char*>(memchr(buf, '(', len));
  const char* close = nullptr;
  for (size_t i = len; i > 0; i--)
    if (buf[i - 1] == ')') { close = buf + i - 1; break; }
  if (!open || !close || close < open) return -1;
  size_t n = static_cast<size_t>(close - open - 1);
  if (n >= sizeof out->comm) n = sizeof out->comm - 1;
  memcpy(out->comm, open + 1, n);
  out->comm[n] = '\0';
  char rest[512];
  size_t rl = len - static_cast<size_t>(close + 1 - buf);
  if (rl >= sizeof rest) rl = sizeof rest - 1;
  memcpy(rest, close + 1, rl);
  rest[rl] = '\0';
  char* save = nullptr;
  int field = 2;
  for (char* tok = strtok_r(rest, " \n", &save); tok; tok = strtok_r(nullptr, " \n", &save)) {
    field++;
    switch (field) {
      case 3: if (tok[1] != '\0') return -1; out->state = tok[0]; break;
      case 14: out->utime = strtoull(tok, nullptr, 10); break;
      case 15: out->stime = strtoull(tok, nullptr, 10); break;
      case 22: out->starttime = strtoull(tok, nullptr, 10); return 0;
      default: break;
    }
  }
  return -1;
}

// 20,000 generated lines: tricky names, one or more blanks or newlines
// between fields, numbers up to 2^64-1, lines cut anywhere, a NUL inside;
// the scanner gives what the reference gives, field for field.
TEST(Procfs, StatScannerAgreesWithStrtokReference) {
  unsigned seed = 15;
  auto rnd = [&seed](unsigned m) { return (seed = seed * 1103515245u + 12345u) / 65536u % m; };
  const char* names[] = {"a", "a) b (c", "x y", "((", "))", "", "worker 1", "0123456789abcde"};
  int parsed = 0;
  for (int iter = 0; iter < 20000; iter++) {
    std::string s = std::to_string(rnd(100000)) + " (" + names[rnd(8)] + ")";
    int fields = 18 + static_cast<int>(rnd(40));
    for (int f = 3; f < 3 + fields; f++) {
      int seps = 1 + static_cast<int>(rnd(3));
      for (int k = 0; k < seps; k++) s += rnd(5) == 0 ? '\n' : ' ';
      if (f == 3) {
        s += rnd(20) == 0 ? "SS" : "S";
      } else {
        unsigned long long v = rnd(4) == 0 ? ~0ull - rnd(1000) : rnd(1000000);
        s += std::to_string(v);
      }
    }
    s += "\n";
    if (rnd(4) == 0) s.resize(rnd(static_cast<unsigned>(s.size()) + 1));
    if (rnd(50) == 0 && !s.empty()) s[rnd(static_cast<unsigned>(s.size()))] = '\0';
    ks_taskstat got, want;
    int rg = ks_parse_stat(s.data(), s.size(), &got);
    int rw = RefParseStat(s.data(), s.size(), &want);
    ASSERT_EQ(rg, rw) << s;
    if (rw != 0) continue;
    parsed++;
    EXPECT_STREQ(got.comm, want.comm);
    EXPECT_EQ(got.state, want.state);
    EXPECT_EQ(got.utime, want.utime);
    EXPECT_EQ(got.stime, want.stime);
    EXPECT_EQ(got.starttime, want.starttime);
  }
  EXPECT_GT(parsed, 10000);  // most lines are whole: the agreement is not only on failures
}

TEST(Procfs, ReadsOwnMainThread) {
  ks_taskstat st;
  ASSERT_EQ(ks_read_task_stat(0, getpid(), &st), 0);
  EXPECT_EQ(st.state, 'R');
  EXPECT_GT(ks_uptime_ms(), 0u);
}

TEST(Procfs, ParsesSyscallLines) {
  ks_syscall sc;
  ASSERT_EQ(ks_parse_syscall("202 0x55d0c0 0x80 0x2 0x0 0x0 0x0 0x7ffc1000 0x7f00aa12\n", &sc), 0);
  EXPECT_EQ(sc.nr, 202);
  EXPECT_EQ(sc.args[0], 0x55d0c0u);
  EXPECT_EQ(sc.args[2], 2u);
  EXPECT_EQ(sc.sp, 0x7ffc1000u);
  EXPECT_EQ(sc.pc, 0x7f00aa12u);
  ASSERT_EQ(ks_parse_syscall("-1 0x7ffc2000 0x401000\n", &sc), 0);
  EXPECT_EQ(sc.nr, KS_SYSCALL_NONE);
  EXPECT_EQ(sc.sp, 0x7ffc2000u);
  EXPECT_EQ(sc.pc, 0x401000u);
  ASSERT_EQ(ks_parse_syscall("running\n", &sc), 0);
  EXPECT_EQ(sc.nr, KS_SYSCALL_RUNNING);
  for (const char* bad : {"", "x", "202 0x1 0x2", "-1 0x1", "-7 0x1 0x2"})
    EXPECT_EQ(ks_parse_syscall(bad, &sc), -1) << bad;
}

TEST(Procfs, ParsesStatusMasks) {
  const char* s =
      "Name:\tworker 1\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t10\n"
      "SigQ:\t0/1000\nSigPnd:\t0000000000000001\nShdPnd:\t0000000000000000\n"
      "SigBlk:\tfffffffe7ffbfeff\nSigIgn:\t0000000000000000\n";
  ks_taskstatus st;
  ASSERT_EQ(ks_parse_status(s, &st), 0);
  EXPECT_STREQ(st.name, "worker 1");
  EXPECT_EQ(st.state, 'S');
  EXPECT_EQ(st.sigblk, 0xfffffffe7ffbfeffull);
  EXPECT_EQ(st.sigpnd, 1u);
  EXPECT_EQ(ks_parse_status("Name:\tx\nState:\tR (running)\n", &st), -1);
}

TEST(Procfs, NspidGivesTheLastIdAndTheLevels) {
  int levels = -1;
  EXPECT_EQ(ks_parse_nspid("Name:\tx\nNSpid:\t4242\t17\t1\nNStgid:\t4242\n", &levels), 1);
  EXPECT_EQ(levels, 3);
  EXPECT_EQ(ks_parse_nspid("Name:\tx\nNSpid:\t4242\n", &levels), 4242);
  EXPECT_EQ(levels, 1);
  EXPECT_EQ(ks_parse_nspid("Name:\tx\nPid:\t4242\n", &levels), -1);  // a kernel before 4.1
  EXPECT_EQ(levels, 0);
  char own[4096];
  ASSERT_GT(ks_read_small_file("/proc/self/status", own, sizeof own), 0);
  EXPECT_GE(ks_parse_nspid(own, &levels), 1);
  EXPECT_GE(levels, 1);
}

TEST(Procfs, ReadsOwnSyscallAndStatus) {
  ks_taskstatus st;
  ASSERT_EQ(ks_read_task_status(gettid(), &st), 0);
  EXPECT_EQ(st.state, 'R');
  ks_syscall sc;
  // The calling thread reads its own file while running the read itself.
  ASSERT_EQ(ks_read_task_syscall(gettid(), &sc), 0);
  EXPECT_EQ(sc.nr, 0);   // read
}

// The listing's reader: the same records as the absolute-path readers, from
// one fd of /proc/self/task.
TEST(Procfs, TaskDirReadsWhatThePathsRead) {
  ks_task_dir d;
  ks_task_dir_open(&d);
  ASSERT_GE(d.fd, 0);
  ks_taskstat a, b;
  ASSERT_EQ(ks_task_dir_stat(&d, gettid(), &a), 0);
  ASSERT_EQ(ks_read_task_stat(0, gettid(), &b), 0);
  EXPECT_STREQ(a.comm, b.comm);
  EXPECT_EQ(a.state, 'R');
  EXPECT_EQ(a.starttime, b.starttime);
  ks_syscall sc;
  ASSERT_EQ(ks_task_dir_syscall(&d, gettid(), &sc), 0);
  EXPECT_EQ(sc.nr, 0);   // its own read
  // A task that is not there: an error, and the directory is kept.
  errno = 0;
  EXPECT_EQ(ks_task_dir_stat(&d, 0x7ffffff0, &a), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_GE(d.fd, 0);
  ks_task_dir_close(&d);
  EXPECT_EQ(d.fd, -1);
}

// The program closes the directory's fd behind the reader and puts a
// directory of its own on the number: the reader notices, never closes the
// program's fd, and goes on with the absolute paths.
TEST(Procfs, TaskDirTakenOverByTheProgram) {
  char tmpl[] = "/tmp/ks_taskdir_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  for (bool with_file : {false, true}) {
    std::string sub = std::string(tmpl) + "/" + std::to_string(gettid());
    if (with_file) {   // even "TID/stat" there: it is not procfs, so unread
      ASSERT_EQ(mkdir(sub.c_str(), 0700), 0);
      int f = open((sub + "/stat").c_str(), O_WRONLY | O_CREAT, 0600);
      ASSERT_GE(f, 0);
      ASSERT_EQ(write(f, "1 (fake) Z", 10), 10);
      close(f);
    }
    ks_task_dir d;
    ks_task_dir_open(&d);
    ASSERT_GE(d.fd, 0);
    int num = d.fd;
    close(num);
    int theirs = open(tmpl, O_RDONLY | O_DIRECTORY);
    ASSERT_EQ(theirs, num);
    ks_taskstat st;
    ASSERT_EQ(ks_task_dir_stat(&d, gettid(), &st), 0);
    EXPECT_EQ(st.state, 'R');   // the real record, through the path
    EXPECT_EQ(d.fd, -1);        // given up
    ks_syscall sc;
    ASSERT_EQ(ks_task_dir_syscall(&d, gettid(), &sc), 0);
    EXPECT_EQ(sc.nr, 0);
    ks_task_dir_close(&d);
    struct stat sb;
    EXPECT_EQ(fstat(theirs, &sb), 0) << "the program's fd was closed";
    close(theirs);
    if (with_file) {
      unlink((sub + "/stat").c_str());
      rmdir(sub.c_str());
    }
  }
  rmdir(tmpl);
}

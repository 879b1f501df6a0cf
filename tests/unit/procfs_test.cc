// /proc parsers, through their C header.
#include "shim/procfs.h"

#include <gtest/gtest.h>
#include <unistd.h>

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

TEST(Procfs, ReadsOwnMainThread) {
  ks_taskstat st;
  ASSERT_EQ(ks_read_task_stat(0, getpid(), &st), 0);
  EXPECT_EQ(st.state, 'R');
  EXPECT_GT(ks_uptime_ms(), 0u);
}

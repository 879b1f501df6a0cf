// The wait-for graph's cycle finder, through its C header.
#include "injector/waitgraph.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

struct Found {
  std::vector<std::vector<long>> cycles;  // tids in wait order
  std::vector<std::string> texts;
};

Found Cycles(const std::vector<ksi_wait_edge>& edges) {
  ksi_cycle* c = nullptr;
  int n = ksi_find_cycles(edges.data(), (int)edges.size(), &c);
  Found f;
  EXPECT_GE(n, 0);
  for (int i = 0; i < n; i++) {
    std::vector<long> tids;
    for (int k = 0; k < c[i].n; k++) tids.push_back(edges[c[i].idx[k]].tid);
    f.cycles.push_back(tids);
    char buf[512];
    ksi_cycle_text(edges.data(), &c[i], buf, sizeof buf);
    f.texts.push_back(buf);
  }
  ksi_cycles_free(c, n);
  return f;
}

TEST(WaitGraph, TwoThreadCycleNamedFromSmallestTid) {
  Found f = Cycles({{102, 101, "mutex", 0x20}, {101, 102, "mutex", 0x10}});
  ASSERT_EQ(f.cycles.size(), 1u);
  EXPECT_EQ(f.cycles[0], (std::vector<long>{101, 102}));
  EXPECT_EQ(f.texts[0], "deadlock: 101 waits for 102 (mutex 0x10), 102 waits for 101 (mutex 0x20)");
}

TEST(WaitGraph, ThreeThreadCycleInWaitOrder) {
  Found f = Cycles({{7, 5, "mutex", 0x5}, {5, 9, "mutex", 0x9}, {9, 7, "rwlock", 0x7}});
  ASSERT_EQ(f.cycles.size(), 1u);
  EXPECT_EQ(f.cycles[0], (std::vector<long>{5, 9, 7}));
  EXPECT_EQ(f.texts[0],
            "deadlock: 5 waits for 9 (mutex 0x9), 9 waits for 7 (rwlock 0x7), 7 waits for 5 (mutex 0x5)");
}

TEST(WaitGraph, SelfWait) {
  Found f = Cycles({{3, 3, "mutex", 0x1}});
  ASSERT_EQ(f.cycles.size(), 1u);
  EXPECT_EQ(f.texts[0], "deadlock: 3 waits for 3 (mutex 0x1)");
}

TEST(WaitGraph, ChainsAndTailsAreNotCycles) {
  // 1 -> 2 -> 3 (3 waits for nobody known); 10 -> 11 -> 12 -> 11 (10 is a
  // tail into the cycle 11 <-> 12, not part of it).
  Found f = Cycles({{1, 2, "mutex", 1}, {2, 3, "mutex", 2}, {10, 11, "mutex", 3},
                    {11, 12, "mutex", 4}, {12, 11, "mutex", 5}});
  ASSERT_EQ(f.cycles.size(), 1u);
  EXPECT_EQ(f.cycles[0], (std::vector<long>{11, 12}));
}

TEST(WaitGraph, SeveralCyclesSortedBySmallestTid) {
  Found f = Cycles({{40, 41, "mutex", 1}, {41, 40, "mutex", 2}, {8, 9, "mutex", 3},
                    {9, 8, "mutex", 4}, {20, 20, "mutex", 5}});
  ASSERT_EQ(f.cycles.size(), 3u);
  EXPECT_EQ(f.cycles[0], (std::vector<long>{8, 9}));
  EXPECT_EQ(f.cycles[1], (std::vector<long>{20}));
  EXPECT_EQ(f.cycles[2], (std::vector<long>{40, 41}));
}

TEST(WaitGraph, EmptyAndLarge) {
  EXPECT_TRUE(Cycles({}).cycles.empty());
  // A ring of 1000 and 1000 chains into it: one cycle of 1000, found once.
  std::vector<ksi_wait_edge> e;
  for (long i = 0; i < 1000; i++) e.push_back({1000 + i, 1000 + (i + 1) % 1000, "mutex", 0});
  for (long i = 0; i < 1000; i++) e.push_back({5000 + i, 1000 + i, "mutex", 0});
  Found f = Cycles(e);
  ASSERT_EQ(f.cycles.size(), 1u);
  EXPECT_EQ(f.cycles[0].size(), 1000u);
  EXPECT_EQ(f.cycles[0][0], 1000);
}

}  // namespace

// 1,000 aborts in a row, each by the injector, into threads doing
// malloc/free/printf/mutex work; the program healthy at the end. Apart from
// abort_test because it takes tens of seconds.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "tests/e2e/abort_util.h"

namespace {

using namespace ks::abort_test;

// 1,000 aborts in a row into threads doing malloc/free/printf/mutex work,
// each by the injector, four at a time.
TEST(AbortC, AThousandAbortsInARow) {
  Prog p("abort_victims");
  const int kLive = 4, kTotal = 1000;
  auto t0 = Clock::now();
  std::vector<double> lat(kTotal);
  for (int done = 0; done < kTotal; done += kLive) {
    std::vector<std::pair<int, pid_t>> round;
    for (int i = 0; i < kLive; i++) round.push_back({p.last() + 1, p.Start("storm")});
    std::vector<Report> reps(kLive);
    std::vector<std::thread> inj;
    for (int i = 0; i < kLive; i++)
      inj.emplace_back([&, i] {
        auto a0 = Clock::now();
        reps[static_cast<size_t>(i)] = InjectAbort(p.t().pid(), round[static_cast<size_t>(i)].second);
        lat[static_cast<size_t>(done + i)] =
            std::chrono::duration<double, std::milli>(Clock::now() - a0).count();
      });
    for (auto& th : inj) th.join();
    for (int i = 0; i < kLive; i++) {
      Report& r = reps[static_cast<size_t>(i)];
      ASSERT_EQ(r.code, 0) << "abort " << done + i << ": " << r.raw;
      ASSERT_EQ(r.top["how"], "aborted") << r.raw;
      ASSERT_EQ(r.top["locks_left"], "0") << r.raw;
      int idx = round[static_cast<size_t>(i)].first;
      ASSERT_EQ(p.Join(idx), "joined " + std::to_string(idx) + " canceled") << "abort " << done + i;
    }
    // locks_left is the shim's own count; the program's view: with the
    // round's victims gone, main takes the mutex they all used.
    ASSERT_EQ(p.TryLock("storm_mu"), "free") << "after abort " << done + kLive - 1;
  }
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::sort(lat.begin(), lat.end());
  std::printf("1000 aborts by killshim-inject in %.2f s (with starts and joins); one injector run: "
              "median %.1f ms, p90 %.1f ms, max %.1f ms\n",
              secs, lat[lat.size() / 2], lat[lat.size() * 9 / 10], lat.back());
  p.ExpectHealthy();
}

}  // namespace

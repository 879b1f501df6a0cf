// The public header, without the shim: it builds as C++ and as strict C99,
// links with nothing but libdl, and says "never requested".
#include "shim/killshim.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

extern "C" int ks_header_probe_c(int* fd);

namespace {

TEST(KillshimHeader, WithoutTheShimNothingIsEverRequested) {
  ASSERT_EQ(dlsym(RTLD_DEFAULT, "killshim_stop_requested_v1"), nullptr)
      << "this test must run without libkillshim.so";
  for (int i = 0; i < 3; i++) {  // the cached answer stays the same
    EXPECT_EQ(killshim_stop_requested(), 0);
    EXPECT_EQ(killshim_stop_fd(), -1);
  }
  int fd = 0;
  EXPECT_EQ(ks_header_probe_c(&fd), 0);
  EXPECT_EQ(fd, -1);
}

TEST(KillshimHeader, ThreadsRacingOnTheFirstCallAgree) {
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  for (int i = 0; i < 8; i++)
    ts.emplace_back([&] {
      for (int k = 0; k < 1000; k++)
        if (killshim_stop_requested() != 0 || killshim_stop_fd() != -1) bad++;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace

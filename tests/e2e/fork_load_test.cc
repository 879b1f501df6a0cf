// A fork child of a process the injector is busy with: whatever shim lock a
// thread of the parent held at the fork (a dump's, the registry's, a
// connection's), the child serves, dumps and ends its own thread. The locks
// are reset in the child (shim/core/lock.h); before, three were not, and a child
// forked at the wrong moment deadlocked at its first cancel or abort.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "tests/e2e/harness.h"

namespace {

TEST(ForkUnderLoad, EveryChildOfABusyParentServesDumpsAndCancels) {
  ks::Target parent(ks::ProgPath("guest"));
  ASSERT_EQ(parent.WaitFor("ready").rfind("ready pid=", 0), 0u);
  parent.Send("threads 400");
  ASSERT_EQ(parent.WaitFor("threads"), "threads 400");
  std::string pid = std::to_string(parent.pid());
  std::atomic<bool> stop{false};
  std::atomic<int> busy_ok{0};
  // Dumps and listings of the parent, back to back, during every fork.
  std::thread load([&] {
    while (!stop) {
      if (ks::Inject({"--stack", pid}, 30000).code == 0) busy_ok++;
      if (ks::Inject({pid}, 30000).code == 0) busy_ok++;
    }
  });
  struct Join {   // also when an ASSERT returns early
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop = true;
      t.join();
    }
  } join{stop, load};
  const int kForks = 20;
  for (int i = 0; i < kForks; i++) {
    parent.Send("forkwork");
    std::string line = parent.WaitFor("forkwork");
    size_t c = line.find("child="), w = line.find("worker=");
    ASSERT_NE(c, std::string::npos) << line;
    pid_t child = atoi(line.c_str() + c + 6), worker = atoi(line.c_str() + w + 7);
    ASSERT_GT(child, 0) << line;
    ASSERT_GT(worker, 0) << line;
    std::string cs = std::to_string(child);
    ks::Result st = ks::Inject({"--stack", cs}, 20000);
    EXPECT_EQ(st.code, 0) << "fork " << i << ": " << st.err;
    ks::Result end = ks::Inject({"-m", "cancel", "--timeout", "10", cs, std::to_string(worker)}, 20000);
    EXPECT_EQ(end.code, 0) << "fork " << i << ": " << end.out << end.err;
    EXPECT_FALSE(ks::TaskExists(child, worker)) << "fork " << i;
    kill(child, SIGKILL);
  }
  stop = true;
  EXPECT_GT(busy_ok.load(), kForks / 2) << "the parent was not kept busy";
  parent.Send("quit");
  EXPECT_EQ(parent.Wait(), 0);
}

}  // namespace

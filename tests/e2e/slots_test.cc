// Connection slots (shim/control/conn.h): slow clients cannot hold the shim. A
// request line has a deadline as a whole, however its bytes trickle in; when
// every slot is taken, the connection that waited on its client longest
// makes room for a newcomer; and other users can never take the slots kept
// for root and the process's own user.
#include <gtest/gtest.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "tests/e2e/harness.h"
#include "tests/e2e/users.h"

namespace {

using ks::RawClient;
using ks::Target;

constexpr int kSlots = 64, kReserved = 16;

struct Started {
  Target t;
  explicit Started(const std::vector<std::string>& env = {})
      : t(ks::ProgPath("threads_basic"), {"2"}, env) {
    EXPECT_EQ(t.WaitFor("ready"), "ready");
    EXPECT_TRUE(t.WaitSocket());
  }
};

// One byte every 200 ms, never a newline: each read comes well within the
// 1 s limit, the line never does.
TEST(Slots, ALineHasADeadlineAsAWhole) {
  Started s({"KILLSHIM_IDLE_TIMEOUT_MS=1000"});
  RawClient c(s.t.pid());
  ASSERT_EQ(c.ReadLine().rfind("killshim", 0), 0u);
  long t0 = ks::NowMs();
  std::string got;
  while (got.empty() && ks::NowMs() - t0 < 5000) {
    c.SendRaw("l");
    got = c.ReadLine(200);
  }
  EXPECT_EQ(ks::ParseLine(got)["code"], "timeout") << got;
  long took = ks::NowMs() - t0;
  EXPECT_GE(took, 900);
  EXPECT_LT(took, 2500);
}

// 64 clients of the process's own user hold every slot, each trickling a
// byte every half second: the owner's injector still gets in, in about the
// eviction delay (1 s), not when their lines time out (30 s here), and the
// program notices nothing.
TEST(Slots, SlowClientsOfTheOwnerDoNotLockItOut) {
  Started s({"KILLSHIM_IDLE_TIMEOUT_MS=30000"});
  std::vector<std::unique_ptr<RawClient>> slow;
  for (int i = 0; i < kSlots; i++) {
    slow.emplace_back(new RawClient(s.t.pid()));
    ASSERT_EQ(slow.back()->ReadLine().rfind("killshim", 0), 0u) << i;
  }
  std::atomic<bool> stop{false};
  std::thread trickle([&] {
    while (!stop) {
      for (auto& c : slow) c->SendRaw("l");
      usleep(500 * 1000);
    }
  });
  long t0 = ks::NowMs();
  ks::Result r = ks::Inject({std::to_string(s.t.pid())}, 30000);
  long took = ks::NowMs() - t0;
  stop = true;
  trickle.join();
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("worker-1"), std::string::npos) << r.out;
  EXPECT_LT(took, 10000) << "the injector waited for the slow clients' own timeout";
  s.t.Send("exit 1");
  EXPECT_EQ(s.t.WaitFor("exited 1"), "exited 1");
}

// As nobody (a child process): opens N connections to PID and reports how
// many were served and how many answered busy; holds them until the
// parent closes HOLD.
void OtherUserConnects(pid_t pid, int n, int report, int hold) {
  if (setgroups(0, nullptr) != 0 || setresgid(ks::kNobody, ks::kNobody, ks::kNobody) != 0 ||
      setresuid(ks::kNobody, ks::kNobody, ks::kNobody) != 0)
    _exit(1);
  std::vector<std::unique_ptr<RawClient>> cs;
  int served = 0, busy = 0;
  for (int i = 0; i < n; i++) {
    cs.emplace_back(new RawClient(pid));
    std::string l = cs.back()->ReadLine();
    served += l.rfind("killshim", 0) == 0;
    busy += ks::ParseLine(l)["code"] == "busy";
  }
  int v[2] = {served, busy};
  if (write(report, v, sizeof v) != sizeof v) _exit(1);
  char b;
  while (read(hold, &b, 1) > 0) {
  }
  _exit(0);
}

// Another user's clients get at most 48 of the 64 slots; the rest wait for
// root and the process's user, who get in at once.
TEST(Slots, OtherUsersCannotTakeTheReservedSlots) {
  Started s;
  int rep[2], hold[2];
  ASSERT_EQ(pipe(rep), 0);
  ASSERT_EQ(pipe(hold), 0);
  pid_t kid = fork();
  if (kid == 0) {
    close(rep[0]);
    close(hold[1]);
    OtherUserConnects(s.t.pid(), kSlots, rep[1], hold[0]);
  }
  close(rep[1]);
  close(hold[0]);
  int v[2] = {0, 0};
  ASSERT_EQ(read(rep[0], v, sizeof v), (ssize_t)sizeof v);
  EXPECT_EQ(v[0], kSlots - kReserved);
  EXPECT_EQ(v[1], kReserved);
  ks::Result r = ks::Inject({std::to_string(s.t.pid())});
  EXPECT_EQ(r.code, 0) << r.err;
  close(hold[1]);
  close(rep[0]);
  waitpid(kid, nullptr, 0);
}

}  // namespace

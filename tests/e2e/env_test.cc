// The shim's environment and surroundings: a KILLSHIM_SIGNAL that is not a
// number in range is reported, not half-read; a program without /proc (a
// chroot that lacks it) is still listed, from the registry.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "tests/e2e/harness.h"

namespace {

using ks::RawClient;
using ks::Target;

// The signal numbers the shim uses, from its handlers: the SigCgt mask of
// the process's status (bit N-1: signal N caught).
unsigned long long Caught(pid_t pid) {
  ks::Result r = ks::Run({"/bin/grep", "SigCgt", "/proc/" + std::to_string(pid) + "/status"});
  return strtoull(r.out.substr(r.out.find(':') + 1).c_str(), nullptr, 16);
}

TEST(Env, BadSignalNumberIsReportedAndTheDefaultUsed) {
  Target good(ks::ProgPath("threads_basic"), {"1"});
  ASSERT_EQ(good.WaitFor("ready"), "ready");
  unsigned long long defaults = Caught(good.pid());
  ASSERT_NE(defaults, 0u);
  // 4294967330 is 34 once truncated to 32 bits; 34junk is 34 to atoi.
  for (const std::string& v : {"34junk", "4294967330", "", "-1", "65"}) {
    Target t(ks::ProgPath("threads_basic"), {"1"}, {"KILLSHIM_SIGNAL=" + v});
    ASSERT_EQ(t.WaitFor("ready"), "ready");
    if (!v.empty()) {
      EXPECT_NE(t.Stderr().find("KILLSHIM_SIGNAL=" + v + " is not a signal number"),
                std::string::npos) << v << ": " << t.Stderr();
    }
    EXPECT_EQ(Caught(t.pid()), defaults) << v;
    EXPECT_TRUE(t.WaitSocket());
    ks::Result r = ks::Inject({"--stack", std::to_string(t.pid())});
    EXPECT_EQ(r.code, 0) << v << r.err;
  }
  Target ok(ks::ProgPath("threads_basic"), {"1"}, {"KILLSHIM_SIGNAL=40"});
  ASSERT_EQ(ok.WaitFor("ready"), "ready");
  EXPECT_EQ(ok.Stderr(), "");
  EXPECT_EQ(Caught(ok.pid()) & (3ull << 39), 3ull << 39);   // 40 and 41
}

// A program that loses /proc once it runs (in a mount namespace of its own,
// as a daemon that chroots itself after start): list answers from the
// registry (procfs=0), the injector fills in what its own /proc shows, and
// stack never signals a thread it cannot check (why=no-procfs) but still
// takes the stacks of threads parked in a wrapped blocking call. (Taken
// away after start: a sanitizer's runtime reads /proc as it starts.)
TEST(Env, WithoutProcTheRegistryAnswers) {
  if (std::string why = ks::NamespaceUnavailable("mount"); !why.empty())
    GTEST_SKIP() << "no mount namespace to take /proc away in: " << why;
  auto spawned = std::chrono::steady_clock::now();
  Target t("/usr/bin/unshare", {"-m", "--propagation", "private", "/usr/bin/env",
                                "LD_PRELOAD=" + ks::Preload(), ks::ProgPath("sleepers")},
           {}, /*preload=*/false);
  ASSERT_EQ(t.WaitFor("ready"), "ready") << t.Stderr();
  auto ready = std::chrono::steady_clock::now();
  ASSERT_TRUE(t.WaitSocket());
  ks::Result um = ks::Run({"/usr/bin/nsenter", "--target", std::to_string(t.pid()), "--mount",
                           "/bin/umount", "-l", "/proc"});
  ASSERT_EQ(um.code, 0) << um.err;
  std::string final;
  auto rows = ks::ListRows(t.pid(), &final);
  EXPECT_NE(final.find("procfs=0"), std::string::npos) << final;
  ASSERT_GE(rows.size(), 3u) << final;
  for (auto& [tid, row] : rows) {
    EXPECT_EQ(row.count("state"), 0u);   // /proc's columns are missing
    EXPECT_FALSE(row["id"].empty());
  }
  ks::Result r = ks::Inject({std::to_string(t.pid())});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find(" ? "), std::string::npos) << r.out;   // filled in by the injector
  // The main thread's age is the process's, which the shim keeps no clock
  // for (its /proc is gone): the injector's /proc gives it, between the
  // time since "ready" and the time since the spawn (10 ms ticks).
  auto ms = [](std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
    return (long long)std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
  };
  usleep(200 * 1000);   // an age the 0 of "unknown" cannot pass for
  auto before = std::chrono::steady_clock::now();
  ks::Result js = ks::Inject({"--json", std::to_string(t.pid())});
  auto after = std::chrono::steady_clock::now();
  auto j = ks::FlatJson(js.out);
  std::string main_age;
  for (int i = 0, n = atoi(j["threads"].c_str()); i < n; i++)
    if (j["threads." + std::to_string(i) + ".tid"] == std::to_string(t.pid()))
      main_age = j["threads." + std::to_string(i) + ".age_ms"];
  ASSERT_FALSE(main_age.empty()) << js.out;
  EXPECT_GE(atoll(main_age.c_str()), ms(ready, before) - 10) << js.out;
  EXPECT_LE(atoll(main_age.c_str()), ms(spawned, after) + 10) << js.out;

  // "ready" comes before the sleepers start: on a loaded machine none may
  // sit in a call yet at the first look. They wait 99% of their 9 s.
  RawClient c(t.pid());
  c.ReadLine();
  int call = 0, none = 0;
  for (int attempt = 0; attempt < 50 && (call == 0 || none == 0); attempt++) {
    if (attempt) usleep(100 * 1000);
    call = none = 0;
    for (const auto& l : c.Request("stack")) {
      auto m = ks::ParseLine(l);
      if (m["verb"] != "stack") continue;
      call += m["via"] == "call";
      none += m["via"] == "none" && m["why"] == "no-procfs";
      EXPECT_NE(m["via"], "signal") << l;
    }
  }
  EXPECT_GT(call, 0);
  EXPECT_GT(none, 0);
}

}  // namespace

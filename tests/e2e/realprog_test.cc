// Programs nobody here wrote, under the shim: xz with two threads and sort
// --parallel give byte-identical results with and without it, while the
// injector lists them. (tools/realprogs.sh runs more of them, bigger.)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <json-c/json.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "tests/e2e/harness.h"

namespace {

std::string TmpDir() {
  const char* t = getenv("TEST_TMPDIR");
  return t ? t : "/tmp";
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Half sortable text, half pseudo-random bytes (compressible and not).
std::string MakeInput(size_t bytes) {
  std::string s;
  s.reserve(bytes);
  for (unsigned i = 1; s.size() < bytes / 2; i++)
    s += std::to_string(i * 7919u % 1000003u) + " line " + std::to_string(i) + "\n";
  unsigned long x = 88172645463325252UL;
  while (s.size() < bytes) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s.push_back((char)(x >> 24));
  }
  return s;
}

void Write(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
}

std::string Preload() { return "LD_PRELOAD=" + ks::Preload(); }

// Lists PID until it exits; returns the number of successful listings and
// the most application threads one of them showed.
std::pair<int, int> ListUntilExit(ks::Target& t) {
  int ok = 0, most_app = 0;
  while (t.Alive()) {
    ks::Result r = ks::Inject({"--json", std::to_string(t.pid())});
    if (r.code != 0) {
      // Only acceptable before it serves, or as it exits: its memory (the
      // access proof's page) goes before its socket does, and it is reaped
      // a moment later.
      EXPECT_TRUE(ok == 0 || t.Wait(2000) != -1) << r.err;
      continue;
    }
    ok++;
    json_object* root = json_tokener_parse(r.out.c_str());
    json_object* arr;
    int app = 0;
    if (root && json_object_object_get_ex(root, "threads", &arr))
      for (size_t i = 0; i < json_object_array_length(arr); i++) {
        json_object* role;
        if (json_object_object_get_ex(json_object_array_get_idx(arr, i), "role", &role))
          app += std::string(json_object_get_string(role)) == "app";
      }
    if (root) json_object_put(root);
    most_app = std::max(most_app, app);
  }
  return {ok, most_app};
}

TEST(RealPrograms, XzWithTwoThreadsRoundTripsWhileListed) {
  ASSERT_EQ(access("/usr/bin/xz", X_OK), 0) << "xz-utils missing: tools/setup.sh installs it";
  std::string dir = TmpDir();
  std::string input = MakeInput(8 << 20);
  Write(dir + "/plain", input);
  Write(dir + "/shim", input);
  ks::Result plain = ks::Run({"/usr/bin/xz", "-T2", "-1", "--block-size=1MiB", "-f", dir + "/plain"});
  ASSERT_EQ(plain.code, 0) << plain.err;
  ks::Target t("/usr/bin/xz", {"-T2", "-1", "--block-size=1MiB", "-f", dir + "/shim"});
  auto [lists, most_app] = ListUntilExit(t);
  EXPECT_EQ(t.Wait(), 0) << t.Stderr();
  EXPECT_EQ(t.Stderr(), "");
  EXPECT_GT(lists, 0);
  EXPECT_GE(most_app, 1);  // xz's compression threads were seen, tracked
  std::string a = Slurp(dir + "/plain.xz"), b = Slurp(dir + "/shim.xz");
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(a == b) << "compressed output differs under the shim";
  ks::Result back = ks::Run({"/usr/bin/xz", "-d", "-T2", "-c", dir + "/shim.xz"}, 60000, {Preload()});
  EXPECT_EQ(back.code, 0) << back.err;
  EXPECT_TRUE(back.out == input) << "round trip under the shim changed the data";
}

TEST(RealPrograms, SortParallelGivesTheSameOutput) {
  std::string dir = TmpDir();
  std::string input = MakeInput(8 << 20);
  input.resize(input.find('\n', 4 << 20) + 1);  // the text half only
  Write(dir + "/lines", input);
  std::vector<std::string> sort = {"/usr/bin/sort", "--parallel=2", "-S", "4M", "-T", dir,
                                   dir + "/lines"};
  ks::Result plain = ks::Run(sort);
  ks::Result shim = ks::Run(sort, 60000, {Preload()});
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_EQ(shim.code, 0) << shim.err;
  EXPECT_EQ(shim.err, "");
  EXPECT_EQ(shim.out.size(), input.size());
  EXPECT_TRUE(plain.out == shim.out);
}

}  // namespace

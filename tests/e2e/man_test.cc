// The man pages: groff and man render them without a warning, and they
// document what the built programs actually offer.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "tests/e2e/front.h"
#include "tests/e2e/harness.h"

namespace {

using ks::Contains;

const char* const kPages[] = {"man/killshim.1", "man/killshim-inject.1", "man/libkillshim.7"};

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The page as a reader sees it: formatted, with hyphens and spaces plain.
std::string Rendered(const std::string& page) {
  ks::Result r = ks::Run({"/usr/bin/man", "-l", "-Tutf8", ks::Runfile(page)}, 60000,
                         {"MANWIDTH=200", "LC_ALL=C.UTF-8"});
  std::string s = std::regex_replace(r.out, std::regex(".\x08"), "");   // overstrike
  s = std::regex_replace(s, std::regex("\xe2\x80\x90"), "-");         // U+2010 hyphen
  return std::regex_replace(s, std::regex("[ \t\n]+"), " ");
}

TEST(Man, GroffFindsNoProblem) {
  for (const char* page : kPages) {
    ks::Result r = ks::Run({"/usr/bin/groff", "-ww", "-z", "-man", ks::Runfile(page)});
    EXPECT_EQ(r.code, 0) << page;
    EXPECT_EQ(r.err, "") << page;
  }
}

TEST(Man, ManRendersWithoutWarnings) {
  for (const char* page : kPages) {
    ks::Result r = ks::Run({"/usr/bin/man", "--warnings", "-l", ks::Runfile(page)}, 60000,
                           {"MANWIDTH=80", "LC_ALL=C.UTF-8"});
    EXPECT_EQ(r.code, 0) << page << r.err;
    EXPECT_EQ(r.err, "") << page;
    EXPECT_TRUE(Contains(r.out, "NAME")) << page;
  }
}

// Every KILLSHIM_* variable the shim reads: the names are in the library's
// read-only data, next to the getenv calls that use them.
std::set<std::string> ShimVariables() {
  std::string so = Slurp(ks::ShimPath());
  std::set<std::string> vars;
  std::regex re("KILLSHIM_[A-Z_]+[A-Z]");
  for (auto it = std::sregex_iterator(so.begin(), so.end(), re); it != std::sregex_iterator(); ++it)
    vars.insert(it->str());
  return vars;
}

TEST(Man, LibkillshimDocumentsEveryVariableTheShimReads) {
  std::set<std::string> vars = ShimVariables();
  ASSERT_GE(vars.size(), 5u);   // DEBUG, DISABLE, SOCKET_DIR, IDLE_TIMEOUT_MS, SIGNAL at least
  std::string page = Rendered("man/libkillshim.7");
  std::string env = page.substr(page.find("ENVIRONMENT"));
  for (const auto& v : vars) EXPECT_TRUE(Contains(env, v)) << v << " is not in ENVIRONMENT";
}

TEST(Man, LibkillshimNamesTheSignalsAndTheProtocol) {
  std::string page = Rendered("man/libkillshim.7");
  for (const char* s : {"SIGRTMAX-3", "SIGRTMAX-2", "SA_RESTART", "killshim proto=2 pid=",
                        "@killshim-pid", "SO_PEERCRED", "SAFETY RULES"})
    EXPECT_TRUE(Contains(page, s)) << s;
}

// Every long option and exit code in `killshim-inject --help` is in its page.
TEST(Man, KillshimInjectDocumentsEveryOptionAndExitCode) {
  ks::Result help = ks::Inject({"--help"});
  ASSERT_EQ(help.code, 0);
  std::string page = Rendered("man/killshim-inject.1");
  std::regex opt("--[a-z][a-z-]+");
  int n = 0;
  for (auto it = std::sregex_iterator(help.out.begin(), help.out.end(), opt);
       it != std::sregex_iterator(); ++it, n++)
    EXPECT_TRUE(Contains(page, it->str())) << it->str();
  EXPECT_GE(n, 10);
  size_t from = page.find("EXIT STATUS"), to = page.find("ENVIRONMENT", from);
  ASSERT_NE(to, std::string::npos) << page;
  std::string status = page.substr(from, to - from);
  size_t hf = help.out.find("Exit codes:"), ht = help.out.find("Examples:", hf);
  ASSERT_NE(ht, std::string::npos) << help.out;
  std::string help_codes = help.out.substr(hf, ht - hf);
  std::regex code("\\b([0-9]+) [a-z]");
  int codes = 0;
  for (auto it = std::sregex_iterator(help_codes.begin(), help_codes.end(), code);
       it != std::sregex_iterator(); ++it, codes++)
    EXPECT_TRUE(Contains(status, " " + (*it)[1].str() + " ")) << "exit code " << (*it)[1];
  EXPECT_EQ(codes, 11) << help.out;
}

TEST(Man, KillshimDocumentsItsCommandsAndExitCodes) {
  std::string page = Rendered("man/killshim.1");
  for (const char* s : {"run [--] cmd", "inject args", "demo [--step]", "lib", "--version", "126",
                        "127", "Environment=LD_PRELOAD="})
    EXPECT_TRUE(Contains(page, s)) << s;
}

}  // namespace

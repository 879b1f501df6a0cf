// The protocol as docs/PROTOCOL.md writes it, against the shim as it answers.
// The rest of the suite decodes replies with the shim's own parser
// (shim/common/proto.c), and the fuzzer round-trips that parser with its own writer:
// a change to both would pass them. Here the document is the reference:
//
// - a parser written from the document's grammar (not shim/common/proto.c) must
//   accept every example line of the document, and read it as the shim's
//   parser does;
// - the document's example session is replayed against a live program (its
//   pid, tid and thread id put in for 4242, 4250 and 4): every reply must
//   have the documented verb and fields, in the documented order, with the
//   documented values (numbers that vary by nature only by their form);
// - the records (thread, stack) carry only fields the document's tables
//   name, and at least those of its examples;
// - hello, help, and the refusal forms of end answer as documented.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/e2e/harness.h"

namespace {

// ---- The document ------------------------------------------------------

std::string ReadDoc() {
  std::ifstream f(ks::Runfile("docs/PROTOCOL.md"));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The document's indented code lines (four blanks), by the heading ("##" or
// "###") they stand under, without the indent. Shell commands ("$ ...") are
// left out, and so is the rest of their block (their output), but for socat:
// what follows it is the protocol session it opened.
std::map<std::string, std::vector<std::string>> CodeBySection(const std::string& doc) {
  std::map<std::string, std::vector<std::string>> out;
  std::istringstream in(doc);
  std::string section;
  bool shell = false;
  for (std::string l; std::getline(in, l);) {
    bool code = l.rfind("    ", 0) == 0 && l.size() > 4;
    if (!code) shell = false;
    if (l.rfind("## ", 0) == 0 || l.rfind("### ", 0) == 0) {
      section = l.substr(l.find(' ') + 1);
    } else if (code) {
      bool cmd = l.compare(4, 2, "$ ") == 0;
      if (cmd) shell = l.find("socat") == std::string::npos;
      if (!cmd && !shell) out[section].push_back(l.substr(4));
    }
  }
  return out;
}

// The document's field tables under SECTION: the first column's `key`s
// (a cell may name several: "`cpu_ms`, `age_ms`").
std::set<std::string> TableKeys(const std::string& doc, const std::string& section) {
  std::set<std::string> keys;
  std::istringstream in(doc);
  bool inside = false;
  std::regex key("`([a-z][a-z0-9_]*)`");
  for (std::string l; std::getline(in, l);) {
    if (l.rfind("## ", 0) == 0 || l.rfind("### ", 0) == 0) inside = l.substr(l.find(' ') + 1) == section;
    if (!inside || l.rfind("| ", 0) != 0 || l.rfind("| field", 0) == 0) continue;
    std::string cell = l.substr(1, l.find('|', 1) - 1);
    for (std::sregex_iterator it(cell.begin(), cell.end(), key), end; it != end; ++it)
      keys.insert((*it)[1]);
  }
  return keys;
}

// ---- The document's grammar, read independently of shim/common/proto.c --------

struct Line {
  std::string verb, error;
  std::vector<std::pair<std::string, std::string>> fields;
  std::vector<std::string> Keys() const {
    std::vector<std::string> k;
    for (auto& f : fields) k.push_back(f.first);
    return k;
  }
  std::string Get(const std::string& key) const {
    for (auto& f : fields)
      if (f.first == key) return f.second;
    return "";
  }
};

bool Lower(char c) { return c >= 'a' && c <= 'z'; }
bool Digit(char c) { return c >= '0' && c <= '9'; }
int Hex(char c) {
  return Digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
}

// A quoted value at S[*I] (the opening quote), escapes undone; false if
// it breaks the grammar.
bool Quoted(const std::string& s, size_t* i, std::string* out) {
  for (size_t p = *i + 1; p < s.size(); p++) {
    if (s[p] == '"') {
      *i = p + 1;
      return true;
    }
    if (s[p] != '\\') {
      out->push_back(s[p]);
      continue;
    }
    if (++p >= s.size()) return false;
    switch (s[p]) {
      case '"': out->push_back('"'); break;
      case '\\': out->push_back('\\'); break;
      case 'n': out->push_back('\n'); break;
      case 't': out->push_back('\t'); break;
      case 'r': out->push_back('\r'); break;
      case 'x': {
        if (p + 2 >= s.size() || Hex(s[p + 1]) < 0 || Hex(s[p + 2]) < 0) return false;
        char c = (char)(Hex(s[p + 1]) * 16 + Hex(s[p + 2]));
        if (c == 0) return false;
        out->push_back(c);
        p += 2;
        break;
      }
      default: return false;
    }
  }
  return false;
}

Line Grammar(std::string s) {
  Line l;
  if (!s.empty() && s.back() == '\r') s.pop_back();
  if (s.size() > 4096) return l.error = "over 4096 bytes", l;
  size_t i = 0;
  if (s.empty() || !Lower(s[0])) return l.error = "no verb", l;
  while (i < s.size() && (Lower(s[i]) || Digit(s[i]) || s[i] == '_' || s[i] == '-')) l.verb += s[i++];
  std::set<std::string> seen;
  while (i < s.size()) {
    if (s[i] != ' ') return l.error = "no blank before a field at " + std::to_string(i), l;
    while (i < s.size() && s[i] == ' ') i++;
    if (i == s.size()) break;
    std::string key, val;
    if (!Lower(s[i])) return l.error = "bad key at " + std::to_string(i), l;
    while (i < s.size() && (Lower(s[i]) || Digit(s[i]) || s[i] == '_')) key += s[i++];
    if (i >= s.size() || s[i] != '=') return l.error = "no '=' after " + key, l;
    i++;
    if (i < s.size() && s[i] == '"') {
      if (!Quoted(s, &i, &val)) return l.error = "bad quoted value of " + key, l;
    } else {
      while (i < s.size() && s[i] > ' ' && s[i] < 0x7f && s[i] != '"' && s[i] != '\\' && s[i] != '=')
        val += s[i++];
      if (val.empty()) return l.error = "empty value of " + key, l;
    }
    if (!seen.insert(key).second) return l.error = "key twice: " + key, l;
    l.fields.push_back({key, val});
  }
  if (l.fields.size() > 32) l.error = "over 32 fields";
  return l;
}

// Usage synopses and annotated answers in the document are not protocol
// lines: they hold [optional] parts, alternatives, an ellipsis or a comment.
bool IsExample(const std::string& l) {
  std::string bare = std::regex_replace(l, std::regex("\"([^\"\\\\]|\\\\.)*\""), "\"\"");
  return bare.find('[') == std::string::npos && bare.find("...") == std::string::npos &&
         bare.find('|') == std::string::npos && bare.find('(') == std::string::npos &&
         l.rfind("$ ", 0) != 0;
}

TEST(ProtocolDoc, EveryExampleLineFollowsTheGrammarAndTheShimReadsItAlike) {
  std::string doc = ReadDoc();
  ASSERT_FALSE(doc.empty()) << ks::Runfile("docs/PROTOCOL.md");
  int checked = 0;
  for (auto& [section, lines] : CodeBySection(doc)) {
    if (section == "Line grammar") continue;  // the grammar itself
    for (const std::string& text : lines) {
      if (!IsExample(text)) continue;
      checked++;
      Line g = Grammar(text);
      EXPECT_EQ(g.error, "") << section << ": " << text;
      auto shim = ks::ParseLine(text);
      EXPECT_EQ(shim.count("parse_error"), 0u) << section << ": " << text;
      EXPECT_EQ(shim["verb"], g.verb) << text;
      for (auto& [k, v] : g.fields) EXPECT_EQ(shim[k], v) << text << ": " << k;
      EXPECT_EQ(shim.size(), g.fields.size() + 1) << text;
    }
  }
  EXPECT_GE(checked, 25) << "the document's examples were not found";
}

// ---- Live ----------------------------------------------------------------

// Keys whose values vary by nature (addresses, durations, counters): compared
// by their form only.
const std::set<std::string> kVarying = {"site", "start", "lived_ms", "ended_ms_ago", "cpu_ms",
                                        "age_ms", "frame", "us", "gen", "valid_ms"};

std::string Form(const std::string& v) {
  if (std::regex_match(v, std::regex("0x[0-9a-f]+"))) return "hex";
  if (std::regex_match(v, std::regex("[0-9]+"))) return "decimal";
  return "text";
}

// LIVE answers as the document's DOC line says: same verb, same fields in
// the same order, same values (kVarying: same form).
void ExpectAsDocumented(const std::string& doc, const std::string& live) {
  Line d = Grammar(doc), l = Grammar(live);
  ASSERT_EQ(l.error, "") << live;
  EXPECT_EQ(l.verb, d.verb) << "documented: " << doc << "\nlive:       " << live;
  EXPECT_EQ(l.Keys(), d.Keys()) << "documented: " << doc << "\nlive:       " << live;
  for (auto& [k, v] : d.fields) {
    if (kVarying.count(k)) EXPECT_EQ(Form(l.Get(k)), Form(v)) << k << " in " << live;
    else EXPECT_EQ(l.Get(k), v) << k << "\ndocumented: " << doc << "\nlive:       " << live;
  }
}

// Puts the live pid, tid and thread id in for the document's 4242, 4250, 4,
// and, with a client, a live proof of access for the document's.
std::string Substitute(std::string s, pid_t pid, pid_t tid, const std::string& id,
                       ks::RawClient* c = nullptr) {
  s = std::regex_replace(s, std::regex("\\b4242\\b"), std::to_string(pid));
  s = std::regex_replace(s, std::regex("\\b4250\\b"), std::to_string(tid));
  s = std::regex_replace(s, std::regex("\\bid=4\\b"), "id=" + id);
  if (c) s = std::regex_replace(s, std::regex("proof=[0-9]+-[0-9a-f]+"), "proof=" + c->Proof());
  return s;
}

struct Victims {
  ks::Target t;
  Victims() : t(ks::ProgPath("end_victims")) {
    EXPECT_EQ(t.WaitFor("ready"), "ready");
    EXPECT_TRUE(t.WaitSocket());
  }
  ~Victims() {
    if (!::testing::Test::HasFatalFailure()) t.ExpectCleanExit();
  }
  // A thread blocked in read that retries on EINTR: a flag leaves it alive,
  // a cancel ends it.
  pid_t SpawnRead() {
    t.Send("spawn read");
    std::string l = t.WaitFor("started 0 read");
    return atoi(l.substr(l.find("tid=") + 4).c_str());
  }
};

TEST(ProtocolDoc, TheExampleSessionReplaysLive) {
  std::string doc = ReadDoc();
  std::vector<std::string> session = CodeBySection(doc)["Example session"];
  ASSERT_GE(session.size(), 8u);
  Victims v;
  pid_t pid = v.t.pid(), tid = v.SpawnRead();
  ASSERT_GT(tid, 0);
  std::string id;
  {
    ks::RawClient c(pid);
    c.ReadLine();
    id = Grammar(c.Request("status tid=" + std::to_string(tid)).back()).Get("id");
  }
  ASSERT_FALSE(id.empty());
  ks::RawClient c(pid);
  ASSERT_TRUE(c.ok());
  size_t i = 0;
  while (i < session.size() && session[i].rfind("killshim proto=", 0) != 0) i++;
  ASSERT_LT(i, session.size()) << "no banner in the example session";
  ExpectAsDocumented(Substitute(session[i++], pid, tid, id), c.ReadLine());
  int requests = 0;
  while (i < session.size()) {
    std::string req = Substitute(session[i++], pid, tid, id, &c);
    requests++;
    std::vector<std::string> want;
    while (i < session.size()) {
      want.push_back(Substitute(session[i++], pid, tid, id));
      if (want.back().rfind("ok", 0) == 0 || want.back().rfind("err", 0) == 0) break;
    }
    std::vector<std::string> got = c.Request(req);
    // "The answer comes at once; the thread ends in its own time": a status
    // asked right after a cancel waits for the ending the document shows.
    for (long end = ks::NowMs() + 10000;
         req.rfind("status", 0) == 0 && Grammar(want.back()).Get("state") == "ended" &&
         !got.empty() && Grammar(got.back()).Get("state") == "alive" && ks::NowMs() < end;)
      got = c.Request(req);
    ASSERT_EQ(got.size(), want.size()) << req;
    for (size_t k = 0; k < want.size(); k++) {
      // The cancel's answer may already see the thread ended ("same fields
      // as status"): then it is the document's ended status line.
      if (Grammar(got[k]).Get("state") == "ended" && Grammar(want[k]).Get("state") == "alive") {
        for (auto& l : session)
          if (l.find("state=ended") != std::string::npos) want[k] = Substitute(l, pid, tid, id);
      }
      SCOPED_TRACE(req);
      ExpectAsDocumented(want[k], got[k]);
    }
  }
  EXPECT_GE(requests, 5);
}

// A record's fields: at least those of the document's example, and only
// those its table names.
void ExpectDocumentedFields(const std::string& example, const std::set<std::string>& table,
                            const std::string& live) {
  Line l = Grammar(live);
  ASSERT_EQ(l.error, "") << live;
  std::set<std::string> have;
  for (auto& k : l.Keys()) {
    have.insert(k);
    EXPECT_TRUE(table.count(k)) << "field " << k << " is not in the document's table: " << live;
  }
  for (auto& k : Grammar(example).Keys())
    EXPECT_TRUE(have.count(k)) << "the document's example has " << k << ", the shim not: " << live;
}

TEST(ProtocolDoc, RecordsCarryTheDocumentedFields) {
  std::string doc = ReadDoc();
  auto code = CodeBySection(doc);
  std::string thread_ex, stack_ex;
  for (auto& l : code["list"])
    if (l.rfind("thread ", 0) == 0) thread_ex = l;
  for (auto& l : code["stack"])
    if (l.rfind("stack tid=", 0) == 0) stack_ex = l;
  ASSERT_FALSE(thread_ex.empty());
  ASSERT_FALSE(stack_ex.empty());
  std::set<std::string> list_keys = TableKeys(doc, "list"), stack_keys = TableKeys(doc, "stack");
  ASSERT_GT(list_keys.size(), 10u);
  ASSERT_GT(stack_keys.size(), 10u);
  Victims v;
  pid_t tid = v.SpawnRead();
  ks::RawClient c(v.t.pid());
  c.ReadLine();
  int threads = 0, stacks = 0;
  for (auto& l : c.Request("list")) {
    if (l.rfind("thread ", 0) != 0) continue;
    threads++;
    if (Grammar(l).Get("role") == "app") ExpectDocumentedFields(thread_ex, list_keys, l);
    else for (auto& k : Grammar(l).Keys()) EXPECT_TRUE(list_keys.count(k)) << k << ": " << l;
  }
  for (auto& l : c.Request("stack")) {
    if (l.rfind("stack ", 0) != 0) continue;
    stacks++;
    for (auto& k : Grammar(l).Keys()) EXPECT_TRUE(stack_keys.count(k)) << k << ": " << l;
  }
  // One thread's stack: the others come as selected=0 records.
  for (auto& l : c.Request("stack tid=" + std::to_string(tid))) {
    if (l.rfind("stack ", 0) != 0) continue;
    for (auto& k : Grammar(l).Keys()) EXPECT_TRUE(stack_keys.count(k)) << k << ": " << l;
  }
  EXPECT_GE(threads, 3);
  EXPECT_GE(stacks, 3);
  // The documented example's own fields all exist in the table too.
  for (auto& k : Grammar(stack_ex).Keys()) EXPECT_TRUE(stack_keys.count(k)) << k;
  for (auto& k : Grammar(thread_ex).Keys()) EXPECT_TRUE(list_keys.count(k)) << k;
}

TEST(ProtocolDoc, HelloHelpAndEndsAnswersAsDocumented) {
  std::string doc = ReadDoc();
  auto code = CodeBySection(doc);
  Victims v;
  pid_t pid = v.t.pid(), tid = v.SpawnRead();
  ks::RawClient c(pid);
  c.ReadLine();
  // hello: exactly (the version too: the document is of this shim).
  ASSERT_EQ(code["hello"].size(), 2u);
  auto got = c.Request(code["hello"][0]);
  ASSERT_EQ(got.size(), 1u);
  ExpectAsDocumented(Substitute(code["hello"][1], pid, tid, "0"), got[0]);
  EXPECT_EQ(got[0], Substitute(code["hello"][1], pid, tid, "0"));
  // help: the documented record comes first, then ok.
  got = c.Request("help");
  ASSERT_GE(got.size(), 2u);
  EXPECT_EQ(got[0], code["help"][1]);
  EXPECT_EQ(got.back(), "ok");
  // end's answers: a thread that is not there, and the forms of "ok".
  std::string no_thread;
  for (auto& l : code["end"])
    if (l.find("code=no-thread") != std::string::npos) no_thread = l;
  ASSERT_FALSE(no_thread.empty());
  got = c.Request("end tid=4194300 mode=flag");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], std::regex_replace(Substitute(no_thread, pid, 4194300, "0"),
                                       std::regex(" +\\(.*\\)$"), ""));
}

// A cancel refused for a frame: msg names the frame as frame_text, and the
// fields are the documented ones.
TEST(ProtocolDoc, ARefusedCancelNamesTheFrameAsDocumented) {
  std::string doc = ReadDoc();
  std::string ex;
  auto code = CodeBySection(doc);
  for (auto& l : code["end"])
    if (l.find("frame_text=") != std::string::npos) ex = l;
  ASSERT_FALSE(ex.empty());
  Line d = Grammar(ex);
  ASSERT_EQ(d.error, "") << ex;
  std::string suffix = d.Get("msg").substr(d.Get("frame_text").size());
  ks::Target t(ks::ProgPath("end_cxx"));
  ASSERT_EQ(t.WaitFor("ready"), "ready");
  ASSERT_TRUE(t.WaitSocket());
  t.Send("spawn noexcept-read");
  std::string started = t.WaitFor("started 0 noexcept-read");
  pid_t tid = atoi(started.substr(started.find("tid=") + 4).c_str());
  ASSERT_GT(tid, 0);
  ks::RawClient c(t.pid());
  c.ReadLine();
  Line l;
  for (long end = ks::NowMs() + 10000; ks::NowMs() < end;) {
    l = Grammar(c.Request("end tid=" + std::to_string(tid) + " mode=cancel").back());
    if (l.Get("code") == "refused" && !l.Get("frame").empty()) break;
  }
  EXPECT_EQ(l.verb, "err");
  EXPECT_EQ(l.Keys(), d.Keys());
  EXPECT_EQ(l.Get("code"), "refused");
  EXPECT_EQ(Form(l.Get("frame")), "hex");
  EXPECT_TRUE(std::regex_match(l.Get("frame_text"), std::regex("end_cxx\\+0x[0-9a-f]+")))
      << l.Get("frame_text");
  EXPECT_EQ(l.Get("msg"), l.Get("frame_text") + suffix);
  t.Send("poke 0");
  EXPECT_EQ(t.WaitFor("got 0"), "got 0");  // refused: it serves on
  t.ExpectCleanExit();
}

}  // namespace

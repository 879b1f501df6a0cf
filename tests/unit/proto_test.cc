// The protocol's line parser and writer, through their C header.
#include "shim/common/proto.h"

#include <gtest/gtest.h>

#include <string>

namespace {

struct Parsed {
  int rc;
  ks_msg m;
  const char* err = nullptr;
};

Parsed Parse(const std::string& s) {
  Parsed p;
  p.rc = ks_proto_parse(s.data(), s.size(), &p.m, &p.err);
  return p;
}

TEST(Proto, VerbAndFields) {
  Parsed p = Parse("stop tid=42 mode=abort");
  ASSERT_EQ(p.rc, 0) << p.err;
  EXPECT_STREQ(p.m.verb, "stop");
  ASSERT_EQ(p.m.nfields, 2);
  EXPECT_STREQ(ks_msg_get(&p.m, "tid"), "42");
  EXPECT_STREQ(ks_msg_get(&p.m, "mode"), "abort");
  EXPECT_EQ(ks_msg_get(&p.m, "nope"), nullptr);
}

TEST(Proto, QuotedValuesAndEscapes) {
  Parsed p = Parse(R"(thread name="a b\"c\\d\n\x01" empty="")");
  ASSERT_EQ(p.rc, 0) << p.err;
  EXPECT_STREQ(ks_msg_get(&p.m, "name"), "a b\"c\\d\n\x01");
  EXPECT_STREQ(ks_msg_get(&p.m, "empty"), "");
}

TEST(Proto, ToleratesExtraBlanksAndCrlf) {
  Parsed p = Parse("  list   all=1  \r");
  ASSERT_EQ(p.rc, 0) << p.err;
  EXPECT_STREQ(p.m.verb, "list");
  EXPECT_STREQ(ks_msg_get(&p.m, "all"), "1");
}

TEST(Proto, RejectsMalformedLines) {
  const char* bad[] = {
      "",             "   ",           "LIST",          "9list",      "list tid",
      "list tid=\"x", "list =3",       "list a=1 a=2",  "list a=\"x\"y",
      "li\x01st",     "list a=\\",     "list a=\"\\q\"", "list a=\"\\x0\"",
      "list a=\"\\x00\"", "list a=b=c", "list a=\"\x02\"",
  };
  for (const char* b : bad) {
    Parsed p = Parse(b);
    EXPECT_EQ(p.rc, -1) << "accepted: " << b;
    EXPECT_NE(p.err, nullptr);
  }
}

TEST(Proto, LimitsLengthAndFieldCount) {
  std::string longline = "list v=" + std::string(KS_PROTO_MAX_LINE, 'x');
  EXPECT_EQ(Parse(longline).rc, -1);
  std::string many = "list";
  for (int i = 0; i <= KS_PROTO_MAX_FIELDS; i++) many += " k" + std::to_string(i) + "=1";
  EXPECT_EQ(Parse(many).rc, -1);
  std::string ok = "list";
  for (int i = 0; i < KS_PROTO_MAX_FIELDS; i++) ok += " k" + std::to_string(i) + "=1";
  EXPECT_EQ(Parse(ok).rc, 0);
}

TEST(Proto, EmbeddedNulIsRejected) {
  std::string s("list a=b\0c", 10);
  EXPECT_EQ(Parse(s).rc, -1);
}

TEST(Proto, Integers) {
  Parsed p = Parse("x a=12 b=-3 c=0x1f d=zz e= f=99999999999999999999");
  ASSERT_EQ(p.rc, 0);
  int64_t v;
  uint64_t u;
  EXPECT_EQ(ks_msg_get_i64(&p.m, "a", 0, 100, &v), 0);
  EXPECT_EQ(v, 12);
  EXPECT_EQ(ks_msg_get_i64(&p.m, "b", 0, 100, &v), EINVAL);
  EXPECT_EQ(ks_msg_get_i64(&p.m, "b", -10, 100, &v), 0);
  EXPECT_EQ(ks_msg_get_u64(&p.m, "c", &u), 0);
  EXPECT_EQ(u, 0x1fu);
  EXPECT_EQ(ks_msg_get_u64(&p.m, "b", &u), EINVAL);
  EXPECT_EQ(ks_msg_get_i64(&p.m, "d", 0, 100, &v), EINVAL);
  EXPECT_EQ(ks_msg_get_i64(&p.m, "e", 0, 100, &v), EINVAL);
  EXPECT_EQ(ks_msg_get_i64(&p.m, "f", INT64_MIN, INT64_MAX, &v), EINVAL);
  EXPECT_EQ(ks_msg_get_i64(&p.m, "missing", 0, 100, &v), ENOENT);
}

// Whatever the writer produces, the parser reads back to the same values.
TEST(Proto, WriterRoundTrips) {
  const char* values[] = {"plain", "", "two words", "quote\"back\\slash", "nl\nand\ttab",
                          "\x01\x7f ctl", "a=b", "ünï"};
  for (const char* v : values) {
    ks_out o;
    ks_out_init(&o);
    ks_out_word(&o, "rec");
    ks_out_str(&o, "k", v);
    ks_out_i64(&o, "n", -7);
    ks_out_hex(&o, "h", 0xabc);
    ks_out_eol(&o);
    ASSERT_FALSE(o.oom);
    std::string line(o.buf, o.len - 1);
    Parsed p = Parse(line);
    ASSERT_EQ(p.rc, 0) << line << ": " << p.err;
    EXPECT_STREQ(ks_msg_get(&p.m, "k"), v);
    EXPECT_STREQ(ks_msg_get(&p.m, "n"), "-7");
    EXPECT_STREQ(ks_msg_get(&p.m, "h"), "0xabc");
    ks_out_free(&o);
  }
}

TEST(Proto, ErrLine) {
  ks_out o;
  ks_out_init(&o);
  ks_out_err(&o, "no-thread", "thread %d is gone", 7);
  EXPECT_EQ(std::string(o.buf), "err code=no-thread msg=\"thread 7 is gone\"\n");
  ks_out_free(&o);
}

}  // namespace

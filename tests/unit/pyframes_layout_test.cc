// The shim's table of CPython's private offsets (shim/control/
// pyframes_layout.c) against each version's own headers: Debian 12's
// python3.11-dev, and the 3.9 (Debian 11) and 3.13 (Debian 13) -dev headers
// tools/pythons.sh unpacks. Each row must match field by field.
#include <gtest/gtest.h>

#include <errno.h>
#include <string.h>

#include <string>

#include "shim/control/pyframes_dbg.h"
#include "tests/unit/pyframes_layout_c.h"

namespace {

class PyLayout : public ::testing::TestWithParam<const ks_pyl_probe*> {};

TEST_P(PyLayout, RowMatchesTheHeaders) {
  const ks_pyl_probe* p = GetParam();
  struct ks_pyl want;
  p->fill(&want);
  const struct ks_pyl* got = ks_pyl_for(want.minor);
  ASSERT_NE(got, nullptr) << "no row for CPython " << p->version;
#define KS_FIELD(f) EXPECT_EQ(got->f, want.f) << #f " (CPython " << p->version << ")"
  KS_FIELD(minor);
  KS_FIELD(rt_interp_main);
  KS_FIELD(rt_gil);
  KS_FIELD(is_gil);
  KS_FIELD(gil_holder);
  KS_FIELD(gil_locked);
  KS_FIELD(gil_cond);
  KS_FIELD(gil_mutex);
  KS_FIELD(is_threads_head);
  KS_FIELD(ts_next);
  KS_FIELD(ts_interp);
  KS_FIELD(ts_ident);
  KS_FIELD(ts_native_id);
  KS_FIELD(ts_async_exc);
  KS_FIELD(ts_cframe);
  KS_FIELD(ts_frame);
  KS_FIELD(fr_code);
  KS_FIELD(fr_previous);
  KS_FIELD(fr_size);
  KS_FIELD(fr_instr);
  KS_FIELD(fr_lasti);
  KS_FIELD(fr_owner);
  KS_FIELD(fr_owner_cstack);
  KS_FIELD(co_lnotab);
  KS_FIELD(co_filename);
  KS_FIELD(co_name);
  KS_FIELD(co_firstlineno);
  KS_FIELD(co_linetable);
  KS_FIELD(co_code);
  KS_FIELD(str_state);
  KS_FIELD(str_length);
  KS_FIELD(str_ascii_data);
  KS_FIELD(str_compact_data);
  KS_FIELD(bytes_size);
  KS_FIELD(bytes_data);
#undef KS_FIELD
  // The reader copies co_size bytes of a code object: every field it takes,
  // and no more than its buffer (256).
  EXPECT_GE(got->co_size, want.co_code + 2);
  EXPECT_GE(got->co_size, want.co_linetable + 8);
  EXPECT_GE(got->co_size, want.co_filename + 8);
  EXPECT_GE(got->co_size, want.co_name + 8);
  EXPECT_LE(got->co_size, 256);
  EXPECT_LE(got->fr_size, 128);
}

// The reader decodes the str's state word by hand: kind at bit 2, compact at
// bit 5, ascii at bit 6, in every version.
TEST_P(PyLayout, StrStateBits) {
  const ks_pyl_probe* p = GetParam();
  EXPECT_EQ(p->state_bits(1, 0, 0), 1u << 2) << p->version;
  EXPECT_EQ(p->state_bits(4, 0, 0), 4u << 2) << p->version;
  EXPECT_EQ(p->state_bits(0, 1, 0), 1u << 5) << p->version;
  EXPECT_EQ(p->state_bits(0, 0, 1), 1u << 6) << p->version;
}

INSTANTIATE_TEST_SUITE_P(Versions, PyLayout,
                         ::testing::Values(&ks_pyl_probe_39, &ks_pyl_probe_311,
                                           &ks_pyl_probe_313));

// 3.13's published offsets (_PyRuntime.debug_offsets) are read into the
// shim's copy of their header: its fields where 3.13's header has them.
TEST(PyLayout313, DebugOffsetsCopyMatchesTheHeader) {
  ASSERT_NE(ks_pyl_probe_313.dbg, nullptr);
  const char* bad = ks_pyl_probe_313.dbg();
  EXPECT_EQ(bad, nullptr) << bad;
}

// 3.8, 3.10, 3.12 and 3.14 have no row: not verified here, not guessed.
TEST(PyLayoutRows, OnlyVerifiedVersions) {
  EXPECT_NE(ks_pyl_for(9), nullptr);
  EXPECT_NE(ks_pyl_for(11), nullptr);
  EXPECT_NE(ks_pyl_for(13), nullptr);
  for (int minor : {8, 10, 12, 14}) EXPECT_EQ(ks_pyl_for(minor), nullptr) << minor;
}

}  // namespace

namespace {

// A 3.13 debug offsets header that says what the 3.13 row says.
ks_pydbg313 HeaderOfRow(const ks_pyl* l) {
  ks_pydbg313 d;
  memset(&d, 0, sizeof d);
  memcpy(d.cookie, "xdebugpy", 8);
  d.version = 0x030d05f0;  // 3.13.5 final
  d.is_threads_head = l->is_threads_head;
  d.is_ceval_gil = l->is_gil;
  d.is_gil_runtime_state = 4000;
  d.is_gil_holder = 4000 + l->gil_holder;
  d.is_gil_locked = 4000 + l->gil_locked;
  d.ts_next = l->ts_next;
  d.ts_interp = l->ts_interp;
  d.ts_current_frame = l->ts_frame;
  d.ts_thread_id = l->ts_ident;
  d.ts_native_thread_id = l->ts_native_id;
  d.fr_size = l->fr_size;
  d.fr_previous = l->fr_previous;
  d.fr_executable = l->fr_code;
  d.fr_instr_ptr = l->fr_instr;
  d.fr_owner = l->fr_owner;
  d.co_filename = l->co_filename;
  d.co_name = l->co_name;
  d.co_firstlineno = l->co_firstlineno;
  d.co_linetable = l->co_linetable;
  d.co_code_adaptive = l->co_code;
  d.bytes_ob_size = l->bytes_size;
  d.bytes_ob_sval = l->bytes_data;
  d.str_state = l->str_state;
  d.str_length = l->str_length;
  d.str_asciiobject_size = l->str_ascii_data;
  return d;
}

// What a 3.13 process publishes decides whether its frames are read: the
// row's offsets, yes; any other header, cookie, version or a free-threaded
// build, no, and the reason names the field.
TEST(PyLayout313, PublishedOffsetsMustBeTheRows) {
  const ks_pyl* l = ks_pyl_for(13);
  ASSERT_NE(l, nullptr);
  char why[256] = "";
  ks_pydbg313 d = HeaderOfRow(l);
  EXPECT_EQ(ks_pyf_dbg_check(l, &d, why, sizeof why), 0) << why;
  EXPECT_EQ(ks_pyf_dbg_check(l, nullptr, why, sizeof why), ENOTSUP);
  EXPECT_NE(std::string(why).find("(the cookie)"), std::string::npos) << why;
  struct Bad {
    uint64_t ks_pydbg313::*field;
    const char* name;
  } bad[] = {
      {&ks_pydbg313::version, "(the version)"},
      {&ks_pydbg313::free_threaded, "(free_threaded)"},
      {&ks_pydbg313::ts_current_frame, "(thread_state.current_frame)"},
      {&ks_pydbg313::fr_owner, "(interpreter_frame.owner)"},
      {&ks_pydbg313::co_code_adaptive, "(code_object.co_code_adaptive)"},
      {&ks_pydbg313::is_gil_holder, "(interpreter_state.gil_runtime_state_holder)"},
      {&ks_pydbg313::str_asciiobject_size, "(unicode_object.asciiobject_size)"},
  };
  for (const Bad& b : bad) {
    ks_pydbg313 e = d;
    e.*b.field += b.field == &ks_pydbg313::version ? (1u << 16) : 8u;
    EXPECT_EQ(ks_pyf_dbg_check(l, &e, why, sizeof why), ENOTSUP) << b.name;
    EXPECT_NE(std::string(why).find(b.name), std::string::npos) << why;
    EXPECT_NE(std::string(why).find("Python frames are not read"), std::string::npos) << why;
  }
  memcpy(d.cookie, "xdebugpz", 8);
  EXPECT_EQ(ks_pyf_dbg_check(l, &d, why, sizeof why), ENOTSUP);
}

}  // namespace

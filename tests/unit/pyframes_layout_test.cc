// The shim's table of CPython's private offsets (shim/control/
// pyframes_layout.c) against each version's own headers: Debian 12's
// python3.11-dev, and the 3.9 (Debian 11) and 3.13 (Debian 13) -dev headers
// tools/pythons.sh unpacks. Each row must match field by field.
#include <gtest/gtest.h>

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

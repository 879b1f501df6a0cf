// The shim's table of CPython's private offsets (shim/control/
// pyframes_layout.c) against the installed CPython's own headers
// (python3.11-dev): the row for that version must match field by field.
#include <gtest/gtest.h>

#include "tests/unit/pyframes_layout_c.h"

namespace {

TEST(PyLayout, RowMatchesTheInstalledHeaders) {
  struct ks_pyl want;
  ks_pyl_from_headers(&want);
  const struct ks_pyl* got = ks_pyl_for(ks_pyl_minor_of_headers());
  ASSERT_NE(got, nullptr) << "no row for CPython " << ks_pyl_version_of_headers();
#define KS_FIELD(f) EXPECT_EQ(got->f, want.f) << #f " (CPython " << ks_pyl_version_of_headers() << ")"
  KS_FIELD(minor);
  KS_FIELD(rt_interp_main);
  KS_FIELD(rt_gil_holder);
  KS_FIELD(rt_gil_locked);
  KS_FIELD(rt_gil_cond);
  KS_FIELD(rt_gil_mutex);
  KS_FIELD(is_threads_head);
  KS_FIELD(ts_next);
  KS_FIELD(ts_interp);
  KS_FIELD(ts_native_id);
  KS_FIELD(ts_ident);
  KS_FIELD(ts_cframe);
  KS_FIELD(ts_frame);
  KS_FIELD(fr_code);
  KS_FIELD(fr_previous);
  KS_FIELD(fr_instr);
  KS_FIELD(fr_size);
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
  // The reader copies co_size bytes of a code object: every field it takes.
  EXPECT_GE(got->co_size, want.co_code);
  EXPECT_GE(got->co_size, want.co_linetable + 8);
}

// The reader decodes the str's state word by hand: kind at bit 2, compact at
// bit 5, ascii at bit 6.
TEST(PyLayout, StrStateBits) {
  EXPECT_EQ(ks_pyl_state_bits(1, 0, 0), 1u << 2);
  EXPECT_EQ(ks_pyl_state_bits(4, 0, 0), 4u << 2);
  EXPECT_EQ(ks_pyl_state_bits(0, 1, 0), 1u << 5);
  EXPECT_EQ(ks_pyl_state_bits(0, 0, 1), 1u << 6);
}

}  // namespace

// The bounded DWARF reader the CFI stepper and the LSDA parser share
// (shim/safepoint/dwarf_rd.h): values, LEB128 limits, and refusals. The
// bytes end at a guard page, so a read past them faults here rather than
// going unseen (the reader is not instrumented by ASan in the shim).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>

#include "shim/safepoint/dwarf_rd.h"

namespace {

class Bytes {
 public:
  Bytes(std::initializer_list<uint8_t> b) {
    page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void *m = mmap(nullptr, 2 * page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(m, MAP_FAILED);
    map_ = static_cast<uint8_t *>(m);
    EXPECT_EQ(mprotect(map_ + page_, page_, PROT_NONE), 0);
    uint8_t *at = map_ + page_ - b.size();
    std::memcpy(at, b.begin(), b.size());
    r = ks_rd{reinterpret_cast<uintptr_t>(at), reinterpret_cast<uintptr_t>(at),
              reinterpret_cast<uintptr_t>(map_ + page_), 0};
  }
  ~Bytes() { munmap(map_, 2 * page_); }
  size_t Used() const { return r.p - r.lo; }
  ks_rd r;

 private:
  uint8_t *map_;
  size_t page_;
};

TEST(DwarfRd, Uleb) {
  Bytes a{0xe5, 0x8e, 0x26};   // DWARF 4's example: 624485
  EXPECT_EQ(ks_rd_uleb(&a.r), 624485u);
  EXPECT_EQ(a.r.bad, 0);
  EXPECT_EQ(a.Used(), 3u);
  Bytes max{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  EXPECT_EQ(ks_rd_uleb(&max.r), UINT64_MAX);
  EXPECT_EQ(max.r.bad, 0);
  EXPECT_EQ(max.Used(), 10u);
}

// Ten bytes hold any 64-bit value: an eleventh is refused, padding or not.
TEST(DwarfRd, LebLongerThanTenBytesIsRefused) {
  Bytes u{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
  EXPECT_EQ(ks_rd_uleb(&u.r), 0u);
  EXPECT_EQ(u.r.bad, 1);
  Bytes s{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
  EXPECT_EQ(ks_rd_sleb(&s.r), 0);
  EXPECT_EQ(s.r.bad, 1);
}

TEST(DwarfRd, Sleb) {
  Bytes m1{0x7f};
  EXPECT_EQ(ks_rd_sleb(&m1.r), -1);
  Bytes b{0xc0, 0xbb, 0x78};   // DWARF 4's example: -123456
  EXPECT_EQ(ks_rd_sleb(&b.r), -123456);
  Bytes p{0x3f};
  EXPECT_EQ(ks_rd_sleb(&p.r), 63);
  Bytes min{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f};
  EXPECT_EQ(ks_rd_sleb(&min.r), INT64_MIN);
  EXPECT_EQ(min.r.bad, 0);
}

// A read that would cross the end sets bad and reads nothing past it (the
// guard page), nor anything after. A LEB128 cut short yields 0, a fixed
// size the bytes before the end (lsda.c's verdicts depend on them).
TEST(DwarfRd, CutShortIsRefused) {
  Bytes leb{0x81, 0x80};
  EXPECT_EQ(ks_rd_uleb(&leb.r), 0u);
  EXPECT_EQ(leb.r.bad, 1);
  Bytes fixed{0x01, 0x02, 0x03};
  EXPECT_EQ(ks_rd_u32(&fixed.r), 0x030201u);
  EXPECT_EQ(fixed.r.bad, 1);
  EXPECT_EQ(fixed.Used(), 0u);
  EXPECT_EQ(ks_rd_u8(&fixed.r), 0);   // bad stays: no later read
  EXPECT_EQ(fixed.Used(), 0u);
  Bytes before{0x01};
  before.r.p = before.r.lo - 1;
  EXPECT_EQ(ks_rd_u8(&before.r), 0);
  EXPECT_EQ(before.r.bad, 1);
}

TEST(DwarfRd, EncodedValues) {
  Bytes b{0xfe, 0xff, 0x78, 0x56, 0x34, 0x12, 0xfc, 0xff, 0xff, 0xff, 0x7e};
  uint64_t v = 1;
  EXPECT_EQ(ks_rd_enc_value(&b.r, 0x1a, &v), 0);   // pcrel|sdata2: format only
  EXPECT_EQ(v, static_cast<uint64_t>(-2));
  EXPECT_EQ(ks_rd_enc_value(&b.r, 0x03, &v), 0);   // udata4
  EXPECT_EQ(v, 0x12345678u);
  EXPECT_EQ(ks_rd_enc_value(&b.r, 0x0b, &v), 0);   // sdata4
  EXPECT_EQ(v, static_cast<uint64_t>(-4));
  size_t used = b.Used();
  EXPECT_EQ(ks_rd_enc_value(&b.r, 0x05, &v), -1);  // no such format: nothing read
  EXPECT_EQ(v, 0u);
  EXPECT_EQ(b.Used(), used);
  EXPECT_EQ(b.r.bad, 0);
  EXPECT_EQ(ks_rd_enc_value(&b.r, 0x09, &v), 0);   // sleb128
  EXPECT_EQ(v, static_cast<uint64_t>(-2));
  EXPECT_EQ(ks_rd_enc_value(&b.r, 0x00, &v), 0);   // absptr: past the end
  EXPECT_EQ(v, 0u);
  EXPECT_EQ(b.r.bad, 1);
}

}  // namespace

// The module table's GOT slots for the landing pad scan (safepoint.h) are
// read only when an abort or a cancel check asks (ks_safepoint_refresh_pads),
// not by the table every process builds at start; until then a slot of an
// application module reads as std::terminate's, so that a scan refuses
// rather than guess; a table rebuilt after a dlopen keeps what was read.
#include "shim/safepoint/safepoint.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <link.h>
#include <unistd.h>

#include <string>

#include "shim/safepoint/gotsym.h"
#include "shim/safepoint/lpad.h"
#include "tests/unit/beside.h"

namespace {

// The library's GOT slot for the first function of KIND, or 0.
struct Find {
  uintptr_t fn;
  int kind;
  uintptr_t slot;
};

int InLibrary(struct dl_phdr_info* info, size_t, void* arg) {
  Find* f = static_cast<Find*>(arg);
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type != PT_LOAD || f->fn < lo || f->fn >= lo + ph.p_memsz) continue;
    static ks_gotsym g;
    ks_gotsym_collect(info, &g);
    for (int k = 0; k < g.n; k++)
      if (g.kind[k] == f->kind) f->slot = g.base + g.off[k];
    return 1;
  }
  return 0;
}

uintptr_t SlotOf(void* fn, int kind) {
  Find f = {reinterpret_cast<uintptr_t>(fn), kind, 0};
  dl_iterate_phdr(InLibrary, &f);
  return f.slot;
}

// The library is application code (the test's executable holds the shim's
// own code here, so it is the shim's module).
TEST(SafepointGot, ReadOnlyWhenAskedAndKeptAcrossARebuild) {
  void* lib = dlopen(ks::test::Beside("libgot_lib.so").c_str(), RTLD_NOW);
  ASSERT_NE(lib, nullptr) << dlerror();
  void* fn = dlsym(lib, "got_lib_throw");
  ASSERT_NE(fn, nullptr);
  uintptr_t resume = SlotOf(fn, KS_LP_UNWINDS);
  ASSERT_NE(resume, 0u) << "no _Unwind_Resume slot in libgot_lib.so";
  ASSERT_EQ(ks_safepoint_refresh(), 0);
  ks_pc_info pi;
  ASSERT_EQ(ks_safepoint_lookup(resume, &pi), KS_MOD_APP) << pi.name;
  EXPECT_EQ(ks_safepoint_got_kind(resume), KS_LP_TERMINATE) << "read at the table's build";
  ASSERT_EQ(ks_safepoint_refresh_pads(), 0);
  EXPECT_EQ(ks_safepoint_got_kind(resume), KS_LP_UNWINDS);
  EXPECT_EQ(ks_safepoint_got_kind(resume + sizeof(uintptr_t) * 4096), KS_LP_OTHER);
  // Another library loaded since: the next refresh builds the table anew;
  // the first library's GOT comes along.
  void* other = dlopen(ks::test::Beside("libdefs_lib_a.so").c_str(), RTLD_NOW);
  ASSERT_NE(other, nullptr) << dlerror();
  ASSERT_EQ(ks_safepoint_refresh(), 0);
  EXPECT_EQ(ks_safepoint_got_kind(resume), KS_LP_UNWINDS);
  ASSERT_EQ(ks_safepoint_refresh_pads(), 0);
  EXPECT_EQ(ks_safepoint_got_kind(resume), KS_LP_UNWINDS);
  dlclose(other);
  dlclose(lib);
}

}  // namespace

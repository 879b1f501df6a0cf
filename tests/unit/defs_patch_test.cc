// ks_defs_patch (shim/core/defs_patch.c): after a definition is led to a
// hook, every later lookup of its name gives the hook: dlsym, and the
// relocation of an object loaded afterwards, which its constructor already
// sees; ks_defs_original gives back what it was. Definitions that give
// another address are left alone. The test libraries are linked by
// Bazel's toolchain without separate code pages: their symbol table lies
// in an executable segment, which stays executable (defs_patch.c).
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "shim/core/attach.h"
#include "tests/unit/beside.h"

namespace {

extern "C" int defs_hook(void) { return 2; }

TEST(DefsPatch, LaterLookupsAndLoadsGetTheHook) {
  void* a = dlopen(ks::test::Beside("libdefs_lib_a.so").c_str(), RTLD_NOW | RTLD_GLOBAL);
  ASSERT_NE(a, nullptr) << dlerror();
  void* real = dlsym(a, "defs_value");
  ASSERT_NE(real, nullptr);
  // Another address than the definition's: nothing changes.
  EXPECT_EQ(ks_defs_patch("defs_value", reinterpret_cast<void*>(&defs_hook),
                          reinterpret_cast<void*>(&defs_hook)), 0);
  EXPECT_EQ(dlsym(a, "defs_value"), real);

  EXPECT_EQ(ks_defs_patch("defs_value", real, reinterpret_cast<void*>(&defs_hook)), 1);
  EXPECT_EQ(dlsym(a, "defs_value"), reinterpret_cast<void*>(&defs_hook));
  EXPECT_EQ(dlsym(RTLD_DEFAULT, "defs_value"), reinterpret_cast<void*>(&defs_hook));
  EXPECT_EQ(ks_defs_original("defs_value", reinterpret_cast<void*>(&defs_hook)), real);
  EXPECT_EQ(ks_defs_original("other", reinterpret_cast<void*>(&defs_hook)),
            reinterpret_cast<void*>(&defs_hook));
  // Again: the definition no longer gives REAL, so nothing is changed twice.
  EXPECT_EQ(ks_defs_patch("defs_value", real, reinterpret_cast<void*>(&defs_hook)), 0);

  void* b = dlopen(ks::test::Beside("libdefs_lib_b.so").c_str(), RTLD_NOW);
  ASSERT_NE(b, nullptr) << dlerror();
  auto* saw = static_cast<int*>(dlsym(b, "defs_ctor_saw"));
  auto call = reinterpret_cast<int (*)(void)>(dlsym(b, "defs_call"));
  ASSERT_TRUE(saw && call);
  EXPECT_EQ(*saw, 2);     // its constructor, inside the dlopen
  EXPECT_EQ(call(), 2);   // after it
  // The object that defines it still calls its own code when asked directly.
  EXPECT_EQ(reinterpret_cast<int (*)(void)>(real)(), 1);
}

}  // namespace

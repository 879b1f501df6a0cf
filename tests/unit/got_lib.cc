// For safepoint_got_test: a library that calls _Unwind_Resume through its
// GOT (a destructor on the way out of a call that may throw).
#include <stdexcept>

namespace {
struct Noisy {
  __attribute__((noinline)) ~Noisy() { asm volatile("" ::: "memory"); }
};
}  // namespace

extern "C" __attribute__((noinline, visibility("default"))) void got_lib_throw(int x) {
  Noisy n;
  if (x == 42) throw std::runtime_error("never");
}

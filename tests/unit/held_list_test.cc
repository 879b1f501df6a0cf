// The held-lock list the mutex hooks keep (shim/core/held.h), through the
// hooks linked into this test's executable (as in mutex_fast_test): the
// unlock's inline pop of the newest remembered lock (ks_held_pop) and the
// search it leaves out of line must keep the same count and list, and fire
// the abort's last-unlock hook at the same moment.
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>

#include "shim/core/held.h"
#include "shim/core/mutex_fast.h"
#include "shim/core/registry.h"
#include "shim/deliver/deliver.h"

// The abort's unlock hook, which the shim's deliver room defines: here it
// counts its calls (the last unlock of a thread with an abort pending).
static std::atomic<int> g_released_calls{0};
extern "C" void ks_on_locks_released(struct ks_thread*) { g_released_calls++; }

namespace {

// This thread's record, through an empty asm (see mutex_fast_test: GCC's
// UBSan misreads a C++ access to an initial-exec TLS member).
struct ks_thread* Self() {
  struct ks_thread* p = ks_self();
  __asm__("" : "+r"(p));
  return p;
}

int Held() { return Self()->locks_held; }

// The unlock's inline pop (held.h: ks_held_pop, the newest remembered lock)
// and its search (any other, or more held than remembered) keep the same
// count and list: in order, out of order, beyond KS_HELD_MAX, and a lock
// never counted; the abort's hook fires only at the last release, by either.
TEST(HeldList, PopAndSearchAgree) {
  ks_mutex_fast_init();
  struct ks_thread* self = Self();
  ASSERT_EQ(Held(), 0);
  const int kN = KS_HELD_MAX + 2;
  pthread_mutex_t m[kN];
  for (auto& x : m) pthread_mutex_init(&x, NULL);
  int before = g_released_calls.load();
  __atomic_store_n(&self->abort.state, KS_ABORT_PENDING, __ATOMIC_RELEASE);

  // Newest first: the pop while the top is remembered, the search above it.
  for (int i = 0; i < kN; i++) ASSERT_EQ(pthread_mutex_lock(&m[i]), 0);
  EXPECT_EQ(Held(), kN);
  for (int i = 0; i < KS_HELD_MAX; i++) EXPECT_EQ(self->held[i], (void*)&m[i]);
  for (int i = kN - 1; i >= 0; i--) {
    ASSERT_EQ(pthread_mutex_unlock(&m[i]), 0);
    EXPECT_EQ(Held(), i);
    for (int j = 0; j < i && j < KS_HELD_MAX; j++) EXPECT_EQ(self->held[j], (void*)&m[j]);
    EXPECT_EQ(g_released_calls.load(), before + (i == 0));
  }

  // Oldest first: every release but the last is a search; the remembered
  // ones stay the ones still held.
  for (int i = 0; i < KS_HELD_MAX; i++) ASSERT_EQ(pthread_mutex_lock(&m[i]), 0);
  for (int i = 0; i < KS_HELD_MAX; i++) {
    ASSERT_EQ(pthread_mutex_unlock(&m[i]), 0);
    EXPECT_EQ(Held(), KS_HELD_MAX - 1 - i);
    for (int j = 0; j < Held(); j++) {
      void* h = self->held[j];
      EXPECT_TRUE(h > (void*)&m[i] && h <= (void*)&m[KS_HELD_MAX - 1]) << "slot " << j;
    }
  }
  EXPECT_EQ(g_released_calls.load(), before + 2);

  // A lock taken uncounted (the shim's own) and released counted, with
  // nothing counted: neither the pop nor the search goes below zero.
  self->shim_depth++;
  ASSERT_EQ(pthread_mutex_lock(&m[0]), 0);
  self->shim_depth--;
  ASSERT_EQ(pthread_mutex_unlock(&m[0]), 0);
  EXPECT_EQ(Held(), 0);
  __atomic_store_n(&self->abort.state, KS_ABORT_NONE, __ATOMIC_RELEASE);
  for (auto& x : m) EXPECT_EQ(pthread_mutex_destroy(&x), 0);
}

}  // namespace

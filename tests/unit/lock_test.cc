// The shim's own locks (shim/core/lock.h): every one is listed, and a fork child
// gets every one back unlocked whatever the parent's threads held at fork.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "shim/core/lock.h"
#include "shim/core/registry.h"

KS_LOCK_DEFINE(static, lock_a);
KS_LOCK_DEFINE(, lock_b);
KS_LOCK_DEFINE(static, lock_c);

namespace {

void Collect(struct ks_lock* l, void* arg) { static_cast<std::set<std::string>*>(arg)->insert(l->name); }

TEST(Locks, EveryDefinedLockIsListed) {
  ks_registry_lock();   // links registry.c in, with its lock
  ks_registry_unlock();
  std::set<std::string> names;
  int n = ks_locks_each(Collect, &names);
  EXPECT_EQ(n, (int)names.size());
  // This file's three, and the registry's from //shim:core.
  for (const char* want : {"lock_a", "lock_b", "lock_c", "ks_reg_mu"}) EXPECT_TRUE(names.count(want)) << want;
}

struct Held {
  pthread_mutex_t ready_mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t ready_cv = PTHREAD_COND_INITIALIZER;
  bool ready = false, release = false;
};

void HoldAll(struct ks_lock* l, void*) { ks_lock(l); }
void DropAll(struct ks_lock* l, void*) { ks_unlock(l); }

void* Holder(void* p) {
  Held* h = static_cast<Held*>(p);
  ks_locks_each(HoldAll, nullptr);
  pthread_mutex_lock(&h->ready_mu);
  h->ready = true;
  pthread_cond_broadcast(&h->ready_cv);
  while (!h->release) pthread_cond_wait(&h->ready_cv, &h->ready_mu);
  pthread_mutex_unlock(&h->ready_mu);
  ks_locks_each(DropAll, nullptr);
  return nullptr;
}

int busy;
void TryEach(struct ks_lock* l, void*) {
  if (ks_trylock(l) != 0)
    busy++;
  else
    ks_unlock(l);
}

// Another thread holds every shim lock at fork: in the child (where that
// thread does not exist) each is free after the reset, and was not before.
TEST(Locks, ForkChildGetsEveryLockBackUnlocked) {
  Held h;
  pthread_t t;
  ASSERT_EQ(pthread_create(&t, nullptr, Holder, &h), 0);
  pthread_mutex_lock(&h.ready_mu);
  while (!h.ready) pthread_cond_wait(&h.ready_cv, &h.ready_mu);
  pthread_mutex_unlock(&h.ready_mu);
  pid_t c = fork();
  if (c == 0) {
    busy = 0;
    int n = ks_locks_each(TryEach, nullptr);
    if (busy != n) _exit(10);   // held before the reset, as in the parent
    ks_locks_after_fork();
    busy = 0;
    ks_locks_each(TryEach, nullptr);
    _exit(busy == 0 ? 0 : 11);
  }
  int st = 0;
  ASSERT_EQ(waitpid(c, &st, 0), c);
  EXPECT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0) << "10: a lock was free at fork; 11: still held after the reset";
  pthread_mutex_lock(&h.ready_mu);
  h.release = true;
  pthread_cond_broadcast(&h.ready_cv);
  pthread_mutex_unlock(&h.ready_mu);
  pthread_join(t, nullptr);
}

// The shim's sources define no mutex of their own outside lock.h's list: a
// plain pthread_mutex_t would be missed by the fork child's reset.
TEST(Locks, NoShimSourceDefinesAPlainMutex) {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* ws = getenv("TEST_WORKSPACE");
  std::string dir = std::string(srcdir ? srcdir : ".") + "/" + (ws ? ws : "killshim") + "/shim";
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  std::regex plain(R"(pthread_mutex_t\s+\w+\s*(=|;))");
  int files = 0;
  std::set<std::string> rooms;
  // Every room's folder (shim/core, shim/control...): the runfiles hold
  // links to the sources, which the walk follows.
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    std::string name = e.path().string().substr(dir.size() + 1);
    if (name.size() < 3 || name.substr(name.size() - 2) != ".c") continue;
    rooms.insert(e.path().parent_path().string());
    std::ifstream f(e.path());
    std::stringstream ss;
    ss << f.rdbuf();
    files++;
    std::string text = ss.str();
    for (std::sregex_iterator m(text.begin(), text.end(), plain), end; m != end; ++m) {
      // A local of a function (one fresh copy, no lifetime across a fork) is
      // indented; a file-scope definition starts its line.
      size_t bol = text.rfind('\n', m->position()) + 1;
      bool file_scope = m->position() == (long)bol || text.compare(bol, 7, "static ") == 0;
      EXPECT_FALSE(file_scope) << name << ": " << m->str();
    }
  }
  EXPECT_GE(files, 59);   // every .c of the shim today
  EXPECT_GE(rooms.size(), 8u);   // shim/ itself and its seven rooms
}

}  // namespace

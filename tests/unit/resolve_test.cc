// The resolver of the shim's real functions (shim/core/resolve.c, shim/core/elf_sym.c),
// linked into this test, which thus plays the shim's part: "after self" are
// the objects after this executable. glibc's own loader (dlsym, dlvsym) is
// the oracle: every entry must be what the old dlsym-based rules gave. A
// library (resolve_interposer.c) sits between this test and libc the way a
// sanitizer's runtime sits between the shim and libc.
#include <dlfcn.h>
#include <elf.h>
#include <gtest/gtest.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "shim/core/elf_sym.h"
#include "shim/core/real.h"

extern "C" {
extern void (*ks_resolve_visit_hook)(void);
void ks_real_forget(void);
}

namespace {

struct Entry {
  const char* field;
  const char* symbol;
  const char* version;
  ks_real_where where;
};

const Entry kEntries[] = {
#define KS_X(field, sym, ver, wh, ret, params) {#field, sym, ver, wh},
    KS_REAL_TABLE(KS_X)
#undef KS_X
};

void* Libc() {
  static void* h = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
  return h;
}

std::string ObjectOf(void* p) {
  Dl_info di;
  if (!p || !dladdr(p, &di) || !di.dli_fname) return "";
  return di.dli_fname;
}

bool InLibc(void* p) { return ObjectOf(p).find("/libc.so.6") != std::string::npos; }

// What the shim's rules were, spelled with the loader's own functions.
void* Expected(const Entry& e) {
  if (e.where == KS_LIBC)
    return *e.version ? dlvsym(Libc(), e.symbol, e.version) : dlsym(Libc(), e.symbol);
  void* first = dlsym(RTLD_NEXT, e.symbol);
  if (first && !InLibc(first)) return first;  // an interposer
  if (*e.version) {  // "": the default version
    void* p = dlvsym(RTLD_NEXT, e.symbol, e.version);
    if (p) return p;
  }
  return first;
}

void* Resolved(int f) { return ks_real_get(static_cast<ks_real_id>(f)); }

class Resolve : public ::testing::Test {
 protected:
  void SetUp() override { ks_real_forget(); }
  void TearDown() override {
    ks_resolve_visit_hook = nullptr;
    ks_real_resolve_all();
  }
};

TEST_F(Resolve, EveryEntryFollowsItsRule) {
  ks_real_resolve_all();
  for (int f = 0; f < KS_FN_COUNT; f++) {
    const Entry& e = kEntries[f];
    void* want = Expected(e);
    ASSERT_NE(want, nullptr) << e.symbol << ": the oracle found nothing";
    EXPECT_EQ(ks_real_fn[f], want) << e.field << " (" << e.symbol << "): got "
                                   << ObjectOf(ks_real_fn[f]) << ", want " << ObjectOf(want);
  }
}

TEST_F(Resolve, FirstUseResolvesLazily) {
  void* p = reinterpret_cast<void*>(KS_REAL(pthread_mutex_trylock));
  EXPECT_NE(p, nullptr);
  EXPECT_EQ(p, dlsym(RTLD_NEXT, "pthread_mutex_trylock"));
}

// An interposer's unversioned definition wins over libc's, even where the
// rule names a version; the kernel-facing sigaction goes around it. (In a
// sanitizer build its runtime comes first and is the interposer of what it
// intercepts, sigaction and, under TSan, pthread_cond_timedwait: the first
// definition after us all the same.)
TEST_F(Resolve, AnInterposerBeforeLibcIsHonoured) {
  void* semtimedop_p = reinterpret_cast<void*>(KS_REAL(semtimedop));
  EXPECT_NE(ObjectOf(semtimedop_p).find("resolve_interposer"), std::string::npos)
      << ObjectOf(semtimedop_p);
  void* cond = reinterpret_cast<void*>(KS_REAL(pthread_cond_timedwait));
  EXPECT_EQ(cond, dlsym(RTLD_NEXT, "pthread_cond_timedwait"));
  EXPECT_FALSE(InLibc(cond)) << ObjectOf(cond);
  void* sa = reinterpret_cast<void*>(KS_REAL(sigaction));
  EXPECT_EQ(sa, dlsym(RTLD_NEXT, "sigaction"));
  EXPECT_FALSE(InLibc(sa)) << ObjectOf(sa);
  void* libc_sa = reinterpret_cast<void*>(KS_REAL(libc_sigaction));
  EXPECT_TRUE(InLibc(libc_sa)) << ObjectOf(libc_sa);
  EXPECT_EQ(libc_sa, dlsym(Libc(), "sigaction"));
  // What the walk says of each (the mutex probe's check that the lock
  // functions are glibc's): the interposers' are not libc's, libc's is.
  EXPECT_FALSE(ks_real_is_libcs(KS_FN_semtimedop));
  EXPECT_FALSE(ks_real_is_libcs(KS_FN_sigaction));
  EXPECT_FALSE(ks_real_is_libcs(KS_FN_pthread_cond_timedwait));
  EXPECT_TRUE(ks_real_is_libcs(KS_FN_libc_sigaction));
}

// pthread_create & co: the newest version, the one a program linked today
// gets. pthread_cond_wait: GLIBC_2.3.2, not the 2.2.5 compatibility one.
// Where a sanitizer's runtime intercepts one, it is taken instead (above);
// at least one of these is libc's in every build.
TEST_F(Resolve, VersionPolicy) {
  void* new_wait = dlvsym(RTLD_NEXT, "pthread_cond_wait", "GLIBC_2.3.2");
  void* old_wait = dlvsym(RTLD_NEXT, "pthread_cond_wait", "GLIBC_2.2.5");
  ASSERT_NE(new_wait, nullptr);
  ASSERT_NE(old_wait, nullptr);
  ASSERT_NE(new_wait, old_wait);
  struct {
    void* got;
    enum ks_real_id id;
    const char* symbol;
    const char* version;
  } cases[] = {
      {reinterpret_cast<void*>(KS_REAL(pthread_create)), KS_FN_pthread_create, "pthread_create",
       "GLIBC_2.34"},
      {reinterpret_cast<void*>(KS_REAL(pthread_cond_wait)), KS_FN_pthread_cond_wait,
       "pthread_cond_wait", "GLIBC_2.3.2"},
      {reinterpret_cast<void*>(KS_REAL(pthread_mutex_clocklock)), KS_FN_pthread_mutex_clocklock,
       "pthread_mutex_clocklock", "GLIBC_2.34"},
  };
  int in_libc = 0;
  for (const auto& c : cases) {
    void* first = dlsym(RTLD_NEXT, c.symbol);
    ASSERT_NE(c.got, nullptr) << c.symbol;
    if (!InLibc(first)) {
      EXPECT_EQ(c.got, first) << c.symbol << ": the interposer " << ObjectOf(first);
      continue;
    }
    in_libc++;
    EXPECT_EQ(c.got, dlvsym(RTLD_NEXT, c.symbol, c.version)) << c.symbol << "@" << c.version;
    EXPECT_TRUE(ks_real_is_libcs(c.id)) << c.symbol;
  }
  EXPECT_GT(in_libc, 0);
}

// A hook entered while a resolution is in progress on the same thread (an
// allocator's initialisation called from inside it, a signal handler, an
// indirect function's resolver): the nested call gets the right pointer and
// the outer one finishes.
std::atomic<int> g_depth{0}, g_max_depth{0}, g_calls{0}, g_nulls{0}, g_wrong{0};
bool g_always = false;
void* g_want = nullptr;

void Reenter() {
  if (!g_always && g_calls > 0) return;
  g_calls++;
  int d = ++g_depth;
  if (d > g_max_depth) g_max_depth = d;
  void* p = reinterpret_cast<void*>(KS_REAL(pthread_mutex_lock));
  if (!p)
    g_nulls++;
  else if (p != g_want)
    g_wrong++;
  g_depth--;
}

void ResetCounters(bool always) {
  g_depth = g_max_depth = g_calls = g_nulls = g_wrong = 0;
  g_always = always;
  g_want = dlsym(RTLD_NEXT, "pthread_mutex_lock");
}

TEST_F(Resolve, ReenteredOnceOnTheSameThread) {
  ResetCounters(false);
  ks_resolve_visit_hook = Reenter;
  void* p = reinterpret_cast<void*>(KS_REAL(pthread_mutex_lock));
  ks_resolve_visit_hook = nullptr;
  EXPECT_EQ(p, g_want);
  EXPECT_EQ(g_calls, 1);
  EXPECT_EQ(g_nulls, 0);
  EXPECT_EQ(g_wrong, 0);
}

// Every walk re-enters: the depth limit ends it. Only the innermost calls,
// past the limit, get NULL (a hook then fails with its error); the rest get
// the right pointer, and the whole table can still be resolved after.
TEST_F(Resolve, ReenteredWithoutEndStopsAtTheDepthLimit) {
  ResetCounters(true);
  ks_resolve_visit_hook = Reenter;
  void* p = reinterpret_cast<void*>(KS_REAL(pthread_mutex_lock));
  ks_resolve_visit_hook = nullptr;
  EXPECT_EQ(p, g_want);
  EXPECT_EQ(g_wrong, 0);
  EXPECT_GT(g_nulls, 0);
  EXPECT_EQ(g_max_depth, 3);
  ks_real_resolve_all();
  EXPECT_EQ(ks_real_table_complete(), 1);
  for (int f = 0; f < KS_FN_COUNT; f++) EXPECT_EQ(ks_real_fn[f], Expected(kEntries[f])) << kEntries[f].field;
}

// The first use of an entry looks up that entry alone (a process under the
// shim that starts no thread pays for the few it uses), and only once.
TEST_F(Resolve, FirstUseLooksUpThatEntryAlone) {
  std::atomic<int> visits{0};
  static std::atomic<int>* counter;
  counter = &visits;
  ks_resolve_visit_hook = [] { (*counter)++; };
  void* p = reinterpret_cast<void*>(KS_REAL(nanosleep));
  int first = visits.load();
  void* again = reinterpret_cast<void*>(KS_REAL(nanosleep));
  ks_resolve_visit_hook = nullptr;
  EXPECT_EQ(p, dlsym(RTLD_NEXT, "nanosleep"));
  EXPECT_EQ(again, p);
  EXPECT_GT(first, 0);
  EXPECT_EQ(visits.load(), first) << "the second use looked up again";
  EXPECT_EQ(ks_real_table_complete(), 0);
  for (int f = 0; f < KS_FN_COUNT; f++)
    if (f != KS_FN_nanosleep) {
      EXPECT_EQ(ks_real_fn[f], nullptr) << kEntries[f].field;
    }
}

// The first use of pthread_create fills the whole table: a process with
// threads, and every fork child of it, never looks one up again (the walk
// takes the loader's list lock, which a fork child may find held forever).
TEST_F(Resolve, FirstPthreadCreateResolvesEveryEntry) {
  void* p = reinterpret_cast<void*>(KS_REAL(pthread_create));
  EXPECT_EQ(p, Expected(kEntries[KS_FN_pthread_create]));
  EXPECT_EQ(ks_real_table_complete(), 1);
  for (int f = 0; f < KS_FN_COUNT; f++) EXPECT_EQ(ks_real_fn[f], Expected(kEntries[f])) << kEntries[f].field;
}

// The same through a real signal: its handler calls a hooked function
// (sigprocmask is async-signal-safe, so a handler may).
std::atomic<void*> g_in_handler{nullptr};
std::atomic<bool> g_raised{false};
void Handler(int) { g_in_handler = reinterpret_cast<void*>(KS_REAL(sigprocmask)); }
void RaiseOnce() {
  if (!g_raised.exchange(true)) raise(SIGUSR1);
}

TEST_F(Resolve, SignalHandlerDuringResolution) {
  struct sigaction sa = {}, old;
  sa.sa_handler = Handler;
  ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
  g_raised = false;
  g_in_handler = nullptr;
  ks_resolve_visit_hook = RaiseOnce;
  void* p = reinterpret_cast<void*>(KS_REAL(nanosleep));
  ks_resolve_visit_hook = nullptr;
  sigaction(SIGUSR1, &old, nullptr);
  EXPECT_TRUE(g_raised);
  EXPECT_EQ(g_in_handler.load(), dlsym(RTLD_NEXT, "sigprocmask"));
  EXPECT_EQ(p, dlsym(RTLD_NEXT, "nanosleep"));
}

// Threads that all make their first call at once store the same values.
TEST_F(Resolve, ConcurrentFirstUse) {
  std::vector<void*> want(KS_FN_COUNT);
  for (int f = 0; f < KS_FN_COUNT; f++) want[f] = Expected(kEntries[f]);
  ks_real_forget();
  std::atomic<int> ready{0}, wrong{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 8; i++)
    ts.emplace_back([&, i] {
      ready++;
      while (ready < 8) {
      }
      for (int k = 0; k < KS_FN_COUNT; k++) {
        int f = (k + i * 7) % KS_FN_COUNT;
        if (Resolved(f) != want[f]) wrong++;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong, 0);
}

// ---- The lookup itself, against the loader, on every symbol of libc ------

struct Found {
  uintptr_t base = 0;
  const ElfW(Phdr)* phdr = nullptr;
  size_t phnum = 0;
};

int FindLibc(dl_phdr_info* info, size_t, void* arg) {
  if (info->dlpi_name && strstr(info->dlpi_name, "/libc.so.6")) {
    auto* f = static_cast<Found*>(arg);
    f->base = info->dlpi_addr;
    f->phdr = info->dlpi_phdr;
    f->phnum = info->dlpi_phnum;
    return 1;
  }
  return 0;
}

// Number of entries in the symbol table: DT_HASH says it; with only
// DT_GNU_HASH, the end of the last chain does.
size_t SymbolCount(const ks_elf_obj& o) {
  if (o.sysv_hash) return o.sysv_hash[1];
  const uint32_t* h = o.gnu_hash;
  uint32_t nb = h[0], symoff = h[1], bloom = h[2];
  const uint32_t* buckets = reinterpret_cast<const uint32_t*>(
      reinterpret_cast<const ElfW(Addr)*>(h + 4) + bloom);
  const uint32_t* chain = buckets + nb;
  uint32_t last = 0;
  for (uint32_t b = 0; b < nb; b++) last = std::max(last, buckets[b]);
  if (last < symoff) return symoff;
  while (!(chain[last - symoff] & 1)) last++;
  return last + 1;
}

const char* VersionName(const ks_elf_obj& o, unsigned ndx) {
  for (auto* d = o.verdef; d;
       d = d->vd_next ? reinterpret_cast<const ElfW(Verdef)*>(reinterpret_cast<const char*>(d) + d->vd_next)
                      : nullptr)
    if (d->vd_ndx == ndx)
      return o.strtab + reinterpret_cast<const ElfW(Verdaux)*>(reinterpret_cast<const char*>(d) + d->vd_aux)->vda_name;
  return nullptr;
}

TEST(ElfSym, AgreesWithTheLoaderOnEveryLibcSymbol) {
  Found lc;
  dl_iterate_phdr(FindLibc, &lc);
  ASSERT_NE(lc.phdr, nullptr);
  ks_elf_obj o;
  ASSERT_EQ(ks_elf_open(&o, lc.base, lc.phdr, lc.phnum), 0);
  EXPECT_STREQ(o.soname, "libc.so.6");
  ASSERT_NE(o.versym, nullptr);
  size_t n = SymbolCount(o), checked = 0, versioned = 0;
  ASSERT_GT(n, 1000u);
  for (size_t i = 1; i < n; i++) {
    const ElfW(Sym)& s = o.symtab[i];
    if (s.st_shndx == SHN_UNDEF || s.st_value == 0 || ELF64_ST_TYPE(s.st_info) == STT_TLS) continue;
    const char* name = o.strtab + s.st_name;
    uint32_t hash = ks_elf_gnu_hash(name);
    // Unversioned, as dlsym: libc's definition (an indirect function's
    // target may lie in the vDSO), or none where libc has only hidden
    // (compatibility) versions and the loader went on to ld.so.
    void* want = dlsym(Libc(), name);
    const ElfW(Sym)* got = ks_elf_find(&o, name, hash, nullptr);
    if (got)
      EXPECT_EQ(ks_elf_addr(&o, got), want) << name;
    else
      EXPECT_FALSE(InLibc(want)) << name;
    checked++;
    const char* ver = VersionName(o, o.versym[i] & 0x7fff);
    if (!ver || (o.versym[i] & 0x7fff) <= 1) continue;
    const ElfW(Sym)* gv = ks_elf_find(&o, name, hash, ver);
    ASSERT_NE(gv, nullptr) << name << "@" << ver;
    EXPECT_EQ(ks_elf_addr(&o, gv), dlvsym(Libc(), name, ver)) << name << "@" << ver;
    versioned++;
  }
  EXPECT_GT(checked, 1000u);
  EXPECT_GT(versioned, 1000u);
  EXPECT_EQ(ks_elf_find(&o, "pthread_create", ks_elf_gnu_hash("pthread_create"), "GLIBC_9.99"), nullptr);
  EXPECT_EQ(ks_elf_find(&o, "no_such_function_here", ks_elf_gnu_hash("no_such_function_here"), nullptr),
            nullptr);
}

// ks_elf_each visits every definition of a name, of any version: as many as
// a scan of the whole table finds (pthread_cond_wait has two in glibc 2.36,
// the old condition ABI and the current one).
int CountOne(const ElfW(Sym)*, void* arg) {
  ++*static_cast<int*>(arg);
  return 1;
}

TEST(ElfSym, EachVisitsEveryVersionOfAName) {
  Found lc;
  dl_iterate_phdr(FindLibc, &lc);
  ASSERT_NE(lc.phdr, nullptr);
  ks_elf_obj o;
  ASSERT_EQ(ks_elf_open(&o, lc.base, lc.phdr, lc.phnum), 0);
  std::map<std::string, int> scan;
  size_t n = SymbolCount(o);
  for (size_t i = 1; i < n; i++) {
    const ElfW(Sym)& s = o.symtab[i];
    unsigned bind = ELF64_ST_BIND(s.st_info);
    if (s.st_shndx == SHN_UNDEF || s.st_value == 0 || ELF64_ST_TYPE(s.st_info) == STT_TLS ||
        bind == STB_LOCAL)
      continue;
    scan[o.strtab + s.st_name]++;
  }
  ASSERT_GT(scan.size(), 1000u);
  int multi = 0;
  for (const auto& [name, count] : scan) {
    int visits = 0;
    int sum = ks_elf_each(&o, name.c_str(), ks_elf_gnu_hash(name.c_str()), CountOne, &visits);
    EXPECT_EQ(visits, count) << name;
    EXPECT_EQ(sum, count) << name;
    multi += count > 1;
  }
  EXPECT_GT(multi, 10);
  EXPECT_EQ(scan["pthread_cond_wait"], 2);
  int none = 0;
  EXPECT_EQ(ks_elf_each(&o, "no_such_function_here", ks_elf_gnu_hash("no_such_function_here"),
                        CountOne, &none), 0);
}

}  // namespace

// The listing's table rows (injector/list_row.c) are written without printf:
// they must be the bytes the printf they replaced wrote, for every kind of
// row and every time the CPU and AGE columns can show.
#include "injector/list.h"
#include "injector/syscalls.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace {

// The code before (list.c up to the listing's speed4 work), as the reference.
std::string RefSecs(long long ms) {
  char buf[32];
  if (ms < 60 * 1000)
    snprintf(buf, sizeof buf, "%.2fs", (double)ms / 1000.0);
  else if (ms < 3600 * 1000)
    snprintf(buf, sizeof buf, "%lldm%02llds", ms / 60000, ms / 1000 % 60);
  else
    snprintf(buf, sizeof buf, "%lldh%02lldm", ms / 3600000, ms / 60000 % 60);
  return buf;
}

std::string RefRow(const ksi_row& rr) {
  const ksi_row* r = &rr;
  std::string cpu = RefSecs(r->cpu_ms), age = RefSecs(r->age_ms);
  char note[128] = "";
  size_t nl = 0;
#define KSI_NOTE(...)                                                                  \
  do {                                                                                 \
    if (nl < sizeof note)                                                              \
      nl += (size_t)snprintf(note + nl, sizeof note - nl, "%s", nl ? "; " : "");       \
    if (nl < sizeof note) nl += (size_t)snprintf(note + nl, sizeof note - nl, __VA_ARGS__); \
  } while (0)
  if (r->py_name[0]) KSI_NOTE("'%s'", r->py_name);
  if (strcmp(r->py_gil, "held") == 0)
    KSI_NOTE("holds the GIL");
  else if (strcmp(r->py_gil, "waits") == 0)
    KSI_NOTE("waits for the GIL");
  if (strcmp(r->role, "pre-attach") == 0)
    KSI_NOTE("locks unknown");
  else if (r->locks)
    KSI_NOTE("holds %lld lock%s", r->locks, r->locks == 1 ? "" : "s");
  if (r->wait_mutex && r->wait_owner > 0)
    KSI_NOTE("waits for mutex 0x%llx held by %lld", r->wait_mutex, r->wait_owner);
  else if (r->wait_mutex)
    KSI_NOTE("waits for mutex 0x%llx", r->wait_mutex);
  else if (r->syscall >= 0 && ksi_syscall_name(r->syscall))
    KSI_NOTE("in %s", ksi_syscall_name(r->syscall));
#undef KSI_NOTE
  const char* kind = strcmp(r->role, "foreign") == 0 ? "unregistered"
                     : r->python && strcmp(r->role, "app") == 0 ? "python"
                                                                 : r->role;
  char line[2048];
  snprintf(line, sizeof line, "%-8lld %-16s %-24.*s %-5s %9s %9s  %-10s %s\n", r->tid, r->name,
           r->start_whole ? (int)strlen(r->start) : 24, r->start[0] ? r->start : "?", r->state,
           cpu.c_str(), age.c_str(), kind, note);
  return line;
}

std::string Secs(long long ms) {
  char buf[32];
  ksi_fmt_secs(buf, sizeof buf, ms);
  return buf;
}

std::string Row(const ksi_row& r) {
  ksi_line l;
  ksi_row_text(&r, &l);
  return std::string(l.b, l.n);
}

TEST(ListRow, SecondsAsPrintfWroteThem) {
  // Every millisecond of the %.2f range and past it (the ties at x.xx5
  // included), every 997 ms to 3 h, then larger steps.
  for (long long ms = 0; ms < 120 * 1000; ms++) ASSERT_EQ(Secs(ms), RefSecs(ms)) << ms;
  for (long long ms = 120 * 1000; ms < 3LL * 3600 * 1000; ms += 997)
    ASSERT_EQ(Secs(ms), RefSecs(ms)) << ms;
  for (long long ms = 3LL * 3600 * 1000; ms < (1LL << 42); ms = ms * 3 / 2 + 7)
    ASSERT_EQ(Secs(ms), RefSecs(ms)) << ms;
}

ksi_row Base() {
  ksi_row r;
  memset(&r, 0, sizeof r);
  r.tid = 1234;
  snprintf(r.name, sizeof r.name, "worker");
  snprintf(r.role, sizeof r.role, "app");
  snprintf(r.state, sizeof r.state, "S");
  snprintf(r.start, sizeof r.start, "run_worker");
  r.syscall = -1;
  return r;
}

TEST(ListRow, RowsAsPrintfWroteThem) {
  const char* names[] = {"", "w", "exactly16chars!!", "a-name-longer-than-sixteen"};
  const char* starts[] = {"", "main", "exactly_twenty_four_byte",
                          "a_start_routine_name_well_past_twenty_four_bytes",
                          "libfoo.so+0x1234567890abcdef"};
  const char* roles[] = {"app", "main", "shim", "foreign", "pre-attach"};
  const char* gils[] = {"", "held", "waits", "released"};
  const long long syscalls[] = {-1, 0, 7, 34, 202, 99999};
  const long long locks[] = {0, 1, 3};
  int n = 0;
  for (const char* name : names)
    for (const char* start : starts)
      for (int whole = 0; whole < 2; whole++)
        for (const char* role : roles)
          for (int py = 0; py < 2; py++)
            for (const char* gil : gils)
              for (long long sc : syscalls)
                for (long long lk : locks)
                  for (int wait = 0; wait < 3; wait++) {
                    ksi_row r = Base();
                    r.tid = 1000 + n * 7919LL % 4000000;
                    snprintf(r.name, sizeof r.name, "%s", name);
                    snprintf(r.start, sizeof r.start, "%s", start);
                    r.start_whole = whole;
                    snprintf(r.role, sizeof r.role, "%s", role);
                    r.python = py;
                    if (py) snprintf(r.py_name, sizeof r.py_name, "Thread-%d (target)", n % 97);
                    snprintf(r.py_gil, sizeof r.py_gil, "%s", gil);
                    r.syscall = sc;
                    r.locks = lk;
                    r.wait_mutex = wait ? 0x7f1234567890ULL : 0;
                    r.wait_owner = wait == 2 ? 4321 : 0;
                    r.cpu_ms = n * 37LL % 5000000;
                    r.age_ms = n * 1013LL % 90000000;
                    ASSERT_EQ(Row(r), RefRow(r)) << n;
                    n++;
                  }
  EXPECT_GT(n, 10000);
}

// A note longer than its column's 127 bytes is cut where snprintf cut it.
TEST(ListRow, LongNoteCutAsBefore) {
  ksi_row r = Base();
  r.python = 1;
  memset(r.py_name, 'n', sizeof r.py_name - 1);
  r.py_name[sizeof r.py_name - 1] = '\0';
  snprintf(r.py_gil, sizeof r.py_gil, "waits");
  r.locks = 12;
  r.wait_mutex = 0xdeadbeefcafeULL;
  r.wait_owner = 99;
  std::string got = Row(r);
  EXPECT_EQ(got, RefRow(r));
  EXPECT_NE(got.find("; holds 12 locks; waits for mu"), std::string::npos) << got;
}

}  // namespace

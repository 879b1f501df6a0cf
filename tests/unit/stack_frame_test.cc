// A dump's frame lines (injector/stack_print.c) are written without printf:
// they must be the bytes the printf calls they replaced wrote.
extern "C" {
#include "injector/stack.h"
}

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace {

// The code before (stack_print.c up to branch list10k), as the reference.
std::string RefFrame(int i, const ksi_frame* f) {
  char buf[2048];
  size_t n = 0;
  const ksi_symbol* s = f->sym;
  n += snprintf(buf + n, sizeof buf - n, "  #%-2d 0x%016llx", i, f->pc);
  if (s && s->name[0])
    n += snprintf(buf + n, sizeof buf - n, " %s+0x%llx", s->name, (unsigned long long)s->offset);
  else if (s && s->module[0])
    n += snprintf(buf + n, sizeof buf - n, " %s+0x%llx", s->module,
                  (unsigned long long)s->module_offset);
  else
    n += snprintf(buf + n, sizeof buf - n, " ??");
  if (s && s->name[0] && s->module[0]) n += snprintf(buf + n, sizeof buf - n, " (%s)", s->module);
  if (s && s->file[0]) n += snprintf(buf + n, sizeof buf - n, " %s:%d", s->file, s->line);
  snprintf(buf + n, sizeof buf - n, "\n");
  return buf;
}

std::string Frame(int i, const ksi_frame* f) {
  ksi_line l;
  ksi_frame_text(i, f, &l);
  return std::string(l.b, l.n);
}

TEST(StackFrame, FramesAsPrintfWroteThem) {
  const char* names[] = {"", "main", "a_rather_long_function_name_from_a_cxx_program(int, char**)"};
  const char* modules[] = {"", "libc.so.6", "bench_target"};
  const char* files[] = {"", "../sysdeps/unix/sysv/linux/pause.c", "x.c"};
  const unsigned long long pcs[] = {0, 1, 0x7f, 0x401000, 0x7fffdeadbeefULL, ~0ULL};
  const unsigned long long offs[] = {0, 5, 0x1a2b, 0xffffffffULL, ~0ULL};
  const int lines[] = {0, 1, 29, 123456, -1};
  const int idx[] = {0, 1, 9, 10, 99, 100, 12345};
  int n = 0;
  for (int i : idx)
    for (unsigned long long pc : pcs)
      for (int withsym = 0; withsym < 2; withsym++)
        for (const char* name : names)
          for (const char* mod : modules)
            for (const char* file : files)
              for (unsigned long long off : offs)
                for (int line : lines) {
                  ksi_symbol s;
                  memset(&s, 0, sizeof s);
                  snprintf(s.name, sizeof s.name, "%s", name);
                  snprintf(s.module, sizeof s.module, "%s", mod);
                  snprintf(s.file, sizeof s.file, "%s", file);
                  s.offset = off;
                  s.module_offset = off ^ 0x1000;
                  s.line = line;
                  ksi_frame f = {pc, 0, withsym ? &s : nullptr};
                  ASSERT_EQ(Frame(i, &f), RefFrame(i, &f)) << n;
                  n++;
                }
  EXPECT_GT(n, 10000);
}

}  // namespace

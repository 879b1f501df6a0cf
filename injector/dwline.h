/* file:line for one address, read from a debug file's .debug_aranges and
 * .debug_line only, and of those only as much as the lookup needs.
 *
 * Why not libdw for this: elfutils 0.188 (Debian 12) decompresses every
 * compressed .debug_* section of a file when it opens its DWARF. libc6-dbg's
 * are compressed (SHF_COMPRESSED, zlib): 10 MB inflated, about 80 ms, for
 * the one line the report prints. Here only .debug_aranges (100 KB), which
 * names the unit that holds the address, and .debug_line (1.3 MB) are
 * inflated (with their strings), and of the line programs only that unit's
 * (found by its first DW_LNE_set_address lying in the unit's ranges) is
 * run: 5.5 ms for libc here.
 *
 * The answer is libdw's (dwfl_module_getsrc + dwfl_lineinfo): the same row
 * choice (the last row at the highest address <= ADDR, an end_sequence row
 * never), the same file name (the entry's path, prefixed with its
 * directory's unless absolute). Whatever this reader does not handle the
 * way libdw would (DWARF before 5 naming the unit's directory, forms it
 * does not know, dwz, VLIW) makes it return -1, and the caller asks libdw:
 * slower, never different (tests/unit/dwline_test compares both on libc). */
#ifndef KSI_DWLINE_H
#define KSI_DWLINE_H

#include <gelf.h>
#include <stddef.h>
#include <stdint.h>

struct ksi_dwline;

/* ELF holds the DWARF (the separate debug file, or the object); it must
 * outlive the handle. Returns NULL if it has no .debug_aranges and
 * .debug_line this reader can use. What was inflated is kept for the
 * next lookups. */
struct ksi_dwline *ksi_dwline_open(Elf *elf);
void ksi_dwline_close(struct ksi_dwline *d);

/* ADDR is the object's own address (a run-time address minus the load
 * bias). Returns 0 with FILE (NUL-terminated, truncated to CAP) and LINE;
 * 1 if there is no line for ADDR (libdw would find none either); -1 if
 * this reader cannot tell: ask libdw. */
int ksi_dwline_find(struct ksi_dwline *d, uint64_t addr, char *file, size_t cap, int *line);

#endif

/* Addresses of a target process to names, read from the files it maps (no
 * ptrace): elfutils' libdw finds static functions through .symtab and
 * file:line through DWARF where debug info exists. The files are opened as
 * findfiles.h and safefile.h say: a target chooses every path and byte. */
#ifndef KSI_SYMBOLIZE_H
#define KSI_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ksi_sym;

struct ksi_symbol {
    char name[256];       /* demangled; "" if unknown */
    uint64_t offset;      /* from the symbol's start */
    char module[256];     /* basename of the object; "" if unknown */
    uint64_t module_offset;   /* ADDR as the object's own address (what addr2line
                                 takes): ADDR minus its load bias; valid if module */
    char file[256];       /* source file; "" if no debug info */
    int line;             /* 0 if no debug info */
};

/* Reads PID's memory map. Returns NULL if the process cannot be read. */
struct ksi_sym *ksi_sym_open(pid_t pid);
/* The same for the modules of PID's files only (no vdso), read faster
 * from a map of many anonymous mappings (thread stacks): the listing's.
 * MAPS: PID's map text of LEN bytes, already read (the access proof's,
 * client.h), which this overwrites; NULL: read it here. */
struct ksi_sym *ksi_sym_open_files(pid_t pid, char *maps, size_t len);
void ksi_sym_close(struct ksi_sym *s);
/* Fills OUT for ADDR (fields are "" / 0 where unknown). Returns 0 if a symbol
 * was found; the module is filled in whenever ADDR lies in one, symbol or
 * not. WANT_LINE: also look up file:line (slower). */
int ksi_sym_lookup(struct ksi_sym *s, uint64_t addr, int want_line, struct ksi_symbol *out);

/* Finds a symbol by NAME (data or TLS) in every object PID maps; a C++ NAME
 * with "::" (app::running) also matches its mangled form. */
struct ksi_symdef {
    uint64_t addr;        /* run-time address (for TLS: offset in the module's block) */
    uint64_t size;
    int is_tls;
    char module_path[512];
    uint64_t module_base;
};
int ksi_sym_find(struct ksi_sym *s, const char *name, struct ksi_symdef *out);

/* Replaces, in place, the bytes of S that a terminal would act on (C0 and
 * C1 control characters, DEL) with '?': text from the target is printed. */
void ksi_sanitize(char *s);

#endif

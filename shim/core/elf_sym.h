/* Finding a symbol in a loaded object's dynamic symbol table, the way the
 * dynamic loader would, without asking it: no allocation, no lock, no call
 * into code the program could interpose. The resolver (resolve.c) runs this
 * from inside an allocator's initialisation, before any constructor, and
 * from signal handlers, where dlsym cannot go (it allocates its error
 * message with the program's malloc).
 *
 * Matching follows glibc's check_match (elf/dl-lookup.c): undefined, local,
 * TLS and zero-valued symbols never match; an object without version
 * information matches any lookup. */
#ifndef KS_ELF_SYM_H
#define KS_ELF_SYM_H

#include <link.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a lookup needs of one object, read from its PT_DYNAMIC. Points into
 * the object's own mapping: valid while the object stays loaded. */
struct ks_elf_obj {
    uintptr_t base;                  /* load bias (dl_phdr_info.dlpi_addr) */
    const ElfW(Sym) *symtab;
    const char *strtab;
    size_t strsz;
    const uint32_t *gnu_hash;        /* DT_GNU_HASH, or NULL */
    const uint32_t *sysv_hash;       /* DT_HASH, or NULL */
    const ElfW(Half) *versym;        /* DT_VERSYM, or NULL: unversioned object */
    const ElfW(Verdef) *verdef;      /* DT_VERDEF, or NULL */
    const char *soname;              /* DT_SONAME, or "" */
    const ElfW(Verneed) *verneed;    /* DT_VERNEED, or NULL */
    const ElfW(Rela) *rela;          /* DT_RELA (GOT slots of data references) */
    size_t nrela;
    const ElfW(Rela) *jmprel;        /* DT_JMPREL (the PLT's slots) */
    size_t njmprel;
};

/* Fills O from the program headers of a loaded object (BASE: its load bias).
 * Returns 0, or ENOENT if the object has no symbol table or hash table to
 * search (it then defines nothing a lookup can find). */
int ks_elf_open(struct ks_elf_obj *o, uintptr_t base, const ElfW(Phdr) *phdr, size_t phnum);

/* The GNU hash of NAME (DT_GNU_HASH's function; computed once per name). */
uint32_t ks_elf_gnu_hash(const char *name);

/* NAME's definition in O, or NULL. VERSION NULL: the one dlsym would return
 * (an unversioned definition, else the default version "@@"). Otherwise
 * exactly VERSION, default or not, as dlvsym. GNU_HASH: ks_elf_gnu_hash(NAME). */
const ElfW(Sym) *ks_elf_find(const struct ks_elf_obj *o, const char *name, uint32_t gnu_hash,
                             const char *version);

/* FN(symbol, ARG) for every definition of NAME in O, of any version (the
 * compatibility ones too), in the hash chain's order. Returns the sum of
 * what FN returned. GNU_HASH: ks_elf_gnu_hash(NAME). */
int ks_elf_each(const struct ks_elf_obj *o, const char *name, uint32_t gnu_hash,
                int (*fn)(const ElfW(Sym) *sym, void *arg), void *arg);

/* NAME's definition in O as the loader binds a reference to it (glibc's
 * check_match for a relocation): VERSION NULL as ks_elf_find; otherwise
 * exactly VERSION, or else a definition without a version (a program's own
 * malloc, which a reference to malloc@GLIBC_2.2.5 binds to). */
const ElfW(Sym) *ks_elf_find_ref(const struct ks_elf_obj *o, const char *name, uint32_t gnu_hash,
                                 const char *version);

/* The index in O's symbol table of its reference to NAME (an undefined
 * symbol), through DT_HASH, which lists every dynamic symbol (DT_GNU_HASH
 * only the definitions); 0 if there is none, or O has no DT_HASH. */
uint32_t ks_elf_ref_index(const struct ks_elf_obj *o, const char *name);

/* The address SYM of O stands for: its value, or what its resolver returns
 * for an indirect function (STT_GNU_IFUNC), as the loader would bind it. */
void *ks_elf_addr(const struct ks_elf_obj *o, const ElfW(Sym) *sym);

/* 1 if ADDR lies in one of the PT_LOAD segments of the object INFO
 * describes (a dl_iterate_phdr entry), else 0. */
int ks_elf_info_contains(const struct dl_phdr_info *info, uintptr_t addr);

/* 1 if the loaded object whose code holds PC defines NAME (as ks_elf_find
 * with VERSION NULL), else 0. Through glibc's lock-free _dl_find_object,
 * without allocating: callable in a signal handler. */
int ks_elf_defined_beside(uintptr_t pc, const char *name);

/* A loaded object found by ks_elf_find_loaded. Points into the object's own
 * mapping and the loader's list: valid while the object stays loaded. */
struct ks_elf_loaded {
    struct ks_elf_obj obj;
    const ElfW(Sym) *sym;            /* the definition it was found by */
    const ElfW(Phdr) *phdr;          /* its program headers */
    size_t phnum;
};

/* The first loaded object, in the loader's order (dl_iterate_phdr), that
 * defines NAME (as ks_elf_find with VERSION NULL) and, if FILE is not NULL,
 * whose path ends in "/FILE". Returns 0 and fills L, or ENOENT. Takes the
 * loader's list lock (dl_iterate_phdr's): not from a signal handler. */
int ks_elf_find_loaded(const char *name, const char *file, struct ks_elf_loaded *l);

#ifdef __cplusplus
}
#endif
#endif

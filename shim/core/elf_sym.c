/* See elf_sym.h. Reads only memory the loader mapped and relocated; calls
 * nothing outside this file but an indirect function's resolver and, for
 * ks_elf_find_loaded, dl_iterate_phdr (_dl_find_object for
 * ks_elf_defined_beside). */
#include "elf_sym.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "ks.h"

/* A d_ptr of PT_DYNAMIC. glibc relocates them in place when it loads an
 * object, except where the section is read-only (the vDSO): there the value
 * is still an offset from the load bias. A relocated pointer is never below
 * the bias, an offset is (unless the bias is 0, when both are the same). */
KS_START_PATH static uintptr_t ks_dyn_ptr(uintptr_t v, uintptr_t base)
{
    return v < base ? v + base : v;
}

KS_START_PATH int ks_elf_open(struct ks_elf_obj *o, uintptr_t base, const ElfW(Phdr) *phdr, size_t phnum)
{
    const ElfW(Dyn) *dyn = NULL;
    for (size_t i = 0; i < phnum; i++)
        if (phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(base + phdr[i].p_vaddr);
    *o = (struct ks_elf_obj){.base = base, .soname = ""};
    if (!dyn)
        return ENOENT;
    size_t soname = (size_t)-1, relasz = 0, pltsz = 0;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        uintptr_t p = ks_dyn_ptr(dyn->d_un.d_ptr, base);
        switch (dyn->d_tag) {
        case DT_SYMTAB: o->symtab = (const ElfW(Sym) *)p; break;
        case DT_STRTAB: o->strtab = (const char *)p; break;
        case DT_STRSZ: o->strsz = dyn->d_un.d_val; break;
        case DT_GNU_HASH: o->gnu_hash = (const uint32_t *)p; break;
        case DT_HASH: o->sysv_hash = (const uint32_t *)p; break;
        case DT_VERSYM: o->versym = (const ElfW(Half) *)p; break;
        case DT_VERDEF: o->verdef = (const ElfW(Verdef) *)p; break;
        case DT_SONAME: soname = dyn->d_un.d_val; break;
        case DT_VERNEED: o->verneed = (const ElfW(Verneed) *)p; break;
        case DT_RELA: o->rela = (const ElfW(Rela) *)p; break;
        case DT_RELASZ: relasz = dyn->d_un.d_val; break;
        case DT_JMPREL: o->jmprel = (const ElfW(Rela) *)p; break;
        case DT_PLTRELSZ: pltsz = dyn->d_un.d_val; break;
        default: break;
        }
    }
    o->nrela = o->rela ? relasz / sizeof(ElfW(Rela)) : 0;
    o->njmprel = o->jmprel ? pltsz / sizeof(ElfW(Rela)) : 0;
    if (!o->symtab || !o->strtab || (!o->gnu_hash && !o->sysv_hash))
        return ENOENT;
    if (soname < o->strsz)
        o->soname = o->strtab + soname;
    return 0;
}

KS_START_PATH uint32_t ks_elf_gnu_hash(const char *name)
{
    uint32_t h = 5381;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = h * 33 + *p;
    return h;
}

KS_START_PATH static uint32_t ks_sysv_hash(const char *name)
{
    uint32_t h = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h = (h << 4) + *p;
        uint32_t g = h & 0xf0000000u;
        if (g)
            h ^= g >> 24;
        h &= ~g;
    }
    return h;
}

KS_START_PATH static const char *ks_str(const struct ks_elf_obj *o, size_t off)
{
    return off < o->strsz ? o->strtab + off : NULL;
}

/* The name of version index NDX among O's definitions, or NULL. */
KS_START_PATH static const char *ks_version_name(const struct ks_elf_obj *o, unsigned ndx)
{
    const ElfW(Verdef) *d = o->verdef;
    for (int guard = 0; d && guard < 0x8000; guard++) {
        if (d->vd_ndx == ndx) {
            const ElfW(Verdaux) *a = (const ElfW(Verdaux) *)((const char *)d + d->vd_aux);
            return ks_str(o, a->vda_name);
        }
        if (!d->vd_next)
            break;
        d = (const ElfW(Verdef) *)((const char *)d + d->vd_next);
    }
    return NULL;
}

/* A defined, exported symbol that can stand for a function or object: what
 * glibc's check_match lets through before it looks at versions. */
KS_START_PATH static int ks_usable(const ElfW(Sym) *s)
{
    unsigned type = ELF64_ST_TYPE(s->st_info), bind = ELF64_ST_BIND(s->st_info);
    if (s->st_shndx == SHN_UNDEF || s->st_value == 0 || type == STT_TLS)
        return 0;
    if (type != STT_NOTYPE && type != STT_OBJECT && type != STT_FUNC && type != STT_COMMON &&
        type != STT_GNU_IFUNC)
        return 0;
    return bind == STB_GLOBAL || bind == STB_WEAK || bind == STB_GNU_UNIQUE;
}

enum { KS_NO = 0, KS_YES = 1, KS_MAYBE = 2 };

/* Does symbol I match NAME at VERSION? KS_MAYBE: a versioned default
 * definition, which an unversioned lookup takes only if it finds no
 * unversioned one (glibc does the same). */
KS_START_PATH static int ks_match(const struct ks_elf_obj *o, uint32_t i, const char *name, const char *version)
{
    const ElfW(Sym) *s = &o->symtab[i];
    const char *sname = ks_str(o, s->st_name);
    if (!sname || !ks_usable(s) || !ks_streq(sname, name))
        return KS_NO;
    if (!o->versym)
        return KS_YES;
    unsigned ndx = o->versym[i] & 0x7fff, hidden = o->versym[i] & 0x8000;
    if (version) {
        const char *v = ks_version_name(o, ndx);
        return v && ks_streq(v, version) ? KS_YES : KS_NO;
    }
    if (ndx <= 1)   /* local or global: no version */
        return KS_YES;
    return hidden ? KS_NO : KS_MAYBE;
}

/* Visits the chain of symbols whose hash matches: the GNU table when there
 * is one, else the System V one. Returns the first KS_YES, else the first
 * KS_MAYBE, else NULL. */
KS_START_PATH const ElfW(Sym) *ks_elf_find(const struct ks_elf_obj *o, const char *name, uint32_t hash,
                             const char *version)
{
    const ElfW(Sym) *maybe = NULL;
    int m;
    if (o->gnu_hash) {
        const uint32_t *h = o->gnu_hash;
        uint32_t nbuckets = h[0], symoffset = h[1], bloom_size = h[2], shift = h[3];
        if (nbuckets == 0 || bloom_size == 0)
            return NULL;
        const ElfW(Addr) *bloom = (const ElfW(Addr) *)(h + 4);
        const uint32_t *buckets = (const uint32_t *)(bloom + bloom_size);
        const uint32_t *chain = buckets + nbuckets;
        const unsigned bits = 8 * sizeof(ElfW(Addr));
        ElfW(Addr) word = bloom[(hash / bits) & (bloom_size - 1)];
        ElfW(Addr) mask = ((ElfW(Addr))1 << (hash % bits)) | ((ElfW(Addr))1 << ((hash >> shift) % bits));
        if ((word & mask) != mask)
            return NULL;
        uint32_t i = buckets[hash % nbuckets];
        if (i < symoffset)
            return NULL;
        for (;; i++) {
            uint32_t h2 = chain[i - symoffset];
            if (((h2 ^ hash) >> 1) == 0 && (m = ks_match(o, i, name, version)) != KS_NO) {
                if (m == KS_YES)
                    return &o->symtab[i];
                if (!maybe)
                    maybe = &o->symtab[i];
            }
            if (h2 & 1)
                break;
        }
        return maybe;
    }
    const uint32_t *h = o->sysv_hash;
    uint32_t nbucket = h[0], nchain = h[1];
    if (nbucket == 0)
        return NULL;
    const uint32_t *bucket = h + 2, *chain = bucket + nbucket;
    uint32_t steps = 0;
    for (uint32_t i = bucket[ks_sysv_hash(name) % nbucket]; i != STN_UNDEF && i < nchain &&
                                                           steps++ < nchain; i = chain[i]) {
        if ((m = ks_match(o, i, name, version)) == KS_YES)
            return &o->symtab[i];
        if (m == KS_MAYBE && !maybe)
            maybe = &o->symtab[i];
    }
    return maybe;
}

/* Defined and exported under NAME, whatever its version. */
KS_START_PATH static int ks_named(const struct ks_elf_obj *o, uint32_t i, const char *name)
{
    const char *s = ks_str(o, o->symtab[i].st_name);
    return s && ks_usable(&o->symtab[i]) && ks_streq(s, name);
}

KS_START_PATH int ks_elf_each(const struct ks_elf_obj *o, const char *name, uint32_t hash,
                int (*fn)(const ElfW(Sym) *sym, void *arg), void *arg)
{
    int n = 0;
    if (o->gnu_hash) {
        const uint32_t *h = o->gnu_hash;
        uint32_t nbuckets = h[0], symoffset = h[1], bloom_size = h[2];
        if (nbuckets == 0 || bloom_size == 0)
            return 0;
        const uint32_t *buckets = (const uint32_t *)((const ElfW(Addr) *)(h + 4) + bloom_size);
        const uint32_t *chain = buckets + nbuckets;
        for (uint32_t i = buckets[hash % nbuckets]; i >= symoffset; i++) {
            uint32_t h2 = chain[i - symoffset];
            if (((h2 ^ hash) >> 1) == 0 && ks_named(o, i, name))
                n += fn(&o->symtab[i], arg);
            if (h2 & 1)
                break;
        }
        return n;
    }
    const uint32_t *h = o->sysv_hash;
    uint32_t nbucket = h[0], nchain = h[1], steps = 0;
    if (nbucket == 0)
        return 0;
    const uint32_t *bucket = h + 2, *chain = bucket + nbucket;
    for (uint32_t i = bucket[ks_sysv_hash(name) % nbucket]; i != STN_UNDEF && i < nchain &&
                                                           steps++ < nchain; i = chain[i])
        if (ks_named(o, i, name))
            n += fn(&o->symtab[i], arg);
    return n;
}

KS_START_PATH const ElfW(Sym) *ks_elf_find_ref(const struct ks_elf_obj *o, const char *name, uint32_t hash,
                                 const char *version)
{
    const ElfW(Sym) *s = ks_elf_find(o, name, hash, version);
    if (s || !version)
        return s;
    /* check_match: a reference's version (never hidden) also takes a
     * definition whose index has no version (0 or 1) and is not hidden. */
    s = ks_elf_find(o, name, hash, NULL);
    if (!s || !o->versym)
        return s;
    ElfW(Half) v = o->versym[s - o->symtab];
    return (v & 0x7fff) <= 1 && !(v & 0x8000) ? s : NULL;
}

KS_START_PATH uint32_t ks_elf_ref_index(const struct ks_elf_obj *o, const char *name)
{
    const uint32_t *h = o->sysv_hash;
    if (!h || h[0] == 0)
        return 0;
    uint32_t nbucket = h[0], nchain = h[1], steps = 0;
    const uint32_t *bucket = h + 2, *chain = bucket + nbucket;
    for (uint32_t i = bucket[ks_sysv_hash(name) % nbucket]; i != STN_UNDEF && i < nchain &&
                                                           steps++ < nchain; i = chain[i]) {
        const char *s = ks_str(o, o->symtab[i].st_name);
        if (o->symtab[i].st_shndx == SHN_UNDEF && s && ks_streq(s, name))
            return i;
    }
    return 0;
}

KS_START_PATH void *ks_elf_addr(const struct ks_elf_obj *o, const ElfW(Sym) *sym)
{
    uintptr_t a = (sym->st_shndx == SHN_ABS ? 0 : o->base) + sym->st_value;
    if (ELF64_ST_TYPE(sym->st_info) == STT_GNU_IFUNC)
        return ((void *(*)(void))a)();
    return (void *)a;
}

struct ks_loaded_find {
    const char *name, *file;
    uint32_t hash;
    struct ks_elf_loaded *l;
};

KS_START_PATH static int ks_loaded_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct ks_loaded_find *f = arg;
    if (f->file) {
        /* A path's last component (a name without '/' is none). */
        const char *path = info->dlpi_name ? info->dlpi_name : "";
        const char *base = ks_basename(path);
        if (base == path || !ks_streq(base, f->file))
            return 0;
    }
    struct ks_elf_loaded *l = f->l;
    if (ks_elf_open(&l->obj, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum) != 0 ||
        !(l->sym = ks_elf_find(&l->obj, f->name, f->hash, NULL)))
        return 0;
    l->phdr = info->dlpi_phdr;
    l->phnum = info->dlpi_phnum;
    return 1;
}

KS_START_PATH int ks_elf_find_loaded(const char *name, const char *file, struct ks_elf_loaded *l)
{
    struct ks_loaded_find f = {name, file, ks_elf_gnu_hash(name), l};
    return dl_iterate_phdr(ks_loaded_cb, &f) ? 0 : ENOENT;
}

KS_START_PATH int ks_elf_info_contains(const struct dl_phdr_info *info, uintptr_t addr)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && addr >= lo && addr - lo < ph->p_memsz)
            return 1;
    }
    return 0;
}

int ks_elf_defined_beside(uintptr_t pc, const char *name)
{
    struct dl_find_object fo;
    if (_dl_find_object((void *)pc, &fo) != 0 || !fo.dlfo_link_map || !fo.dlfo_link_map->l_ld)
        return 0;
    /* ks_elf_open wants only PT_DYNAMIC: the loader's l_ld. */
    const struct link_map *m = fo.dlfo_link_map;
    ElfW(Phdr) dyn = {.p_type = PT_DYNAMIC, .p_vaddr = (uintptr_t)m->l_ld - m->l_addr};
    struct ks_elf_obj o;
    return ks_elf_open(&o, m->l_addr, &dyn, 1) == 0 &&
           ks_elf_find(&o, name, ks_elf_gnu_hash(name), NULL) != NULL;
}

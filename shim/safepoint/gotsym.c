/* See gotsym.h. */
#include "gotsym.h"

#include <string.h>

#include "lpad.h"

static int ks_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

int ks_gotsym_kind_of_name(const char *name)
{
    /* Every name below begins with '_'; most imports do not. This runs for
     * each relocation of each application module when the module table is
     * built, at start in every process (docs/bench.md): the string calls for
     * each were 57,000 instructions of /bin/true's start. */
    if (name[0] != '_')
        return KS_LP_OTHER;
    static const char *const term[] = {"_ZSt9terminatev", "__cxa_call_terminate",
                                       "__clang_call_terminate", NULL};
    static const char *const unwinds[] = {"_Unwind_Resume", "__cxa_throw", "__cxa_rethrow",
                                          "_Unwind_Resume_or_Rethrow", NULL};
    for (int i = 0; term[i]; i++)
        if (strcmp(name, term[i]) == 0)
            return KS_LP_TERMINATE;
    for (int i = 0; unwinds[i]; i++)
        if (strcmp(name, unwinds[i]) == 0)
            return KS_LP_UNWINDS;
    /* std::__throw_length_error() and friends throw from the call. */
    if (strncmp(name, "_ZSt", 4) == 0 && strstr(name, "__throw_"))
        return KS_LP_UNWINDS;
    /* Do not return: __stack_chk_fail, AddressSanitizer's reports (not the
     * _noabort ones of -fsanitize-recover), UBSan's _abort handlers. */
    if (strcmp(name, "__stack_chk_fail") == 0 ||
        (strncmp(name, "__asan_report_", 14) == 0 && !ks_suffix(name, "_noabort")) ||
        (strncmp(name, "__ubsan_handle_", 15) == 0 && ks_suffix(name, "_abort")))
        return KS_LP_NORETURN;
    return KS_LP_OTHER;
}

int ks_gotsym_kind(const struct ks_gotsym *g, uintptr_t slot)
{
    for (int k = 0; k < g->n && k < KS_GOTSYM_MAX; k++)
        if (g->base + g->off[k] == slot)
            return g->kind[k];
    return KS_LP_OTHER;
}

struct ks_dyn {
    const ElfW(Sym) *symtab;
    const char *strtab;
    size_t strsz;
    const ElfW(Rela) *rel[2];
    size_t relsz[2];
};

/* The loader has relocated d_ptr entries of a loaded object, except in the
 * vDSO and a few odd objects: a value below the bias is an offset. */
static uintptr_t ks_dptr(uintptr_t v, uintptr_t bias) { return v < bias ? v + bias : v; }

static void ks_dyn_read(const struct dl_phdr_info *info, const ElfW(Dyn) *d, struct ks_dyn *o)
{
    uintptr_t b = info->dlpi_addr;
    for (int guard = 0; d->d_tag != DT_NULL && guard < 512; d++, guard++) {
        switch (d->d_tag) {
        case DT_SYMTAB: o->symtab = (const ElfW(Sym) *)ks_dptr(d->d_un.d_ptr, b); break;
        case DT_STRTAB: o->strtab = (const char *)ks_dptr(d->d_un.d_ptr, b); break;
        case DT_STRSZ: o->strsz = d->d_un.d_val; break;
        case DT_JMPREL: o->rel[0] = (const ElfW(Rela) *)ks_dptr(d->d_un.d_ptr, b); break;
        case DT_PLTRELSZ: o->relsz[0] = d->d_un.d_val; break;
        case DT_RELA: o->rel[1] = (const ElfW(Rela) *)ks_dptr(d->d_un.d_ptr, b); break;
        case DT_RELASZ: o->relsz[1] = d->d_un.d_val; break;
        default: break;
        }
    }
}

/* Adds the slots of relocations whose symbol is of kind WANT (TERMINATE
 * first: a module with many named slots never loses those). */
static void ks_gotsym_pass(const struct ks_dyn *d, int want, struct ks_gotsym *out)
{
    for (int t = 0; t < 2; t++) {
        size_t n = d->rel[t] ? d->relsz[t] / sizeof(ElfW(Rela)) : 0;
        for (size_t i = 0; i < n && out->n < KS_GOTSYM_MAX; i++) {
            const ElfW(Rela) *r = &d->rel[t][i];
            unsigned type = ELF64_R_TYPE(r->r_info);
            if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT)
                continue;
            size_t nm = d->symtab[ELF64_R_SYM(r->r_info)].st_name;
            if (!ELF64_R_SYM(r->r_info) || nm >= d->strsz)
                continue;
            if (r->r_offset > UINT32_MAX || ks_gotsym_kind_of_name(d->strtab + nm) != want)
                continue;
            out->off[out->n] = (uint32_t)r->r_offset;
            out->kind[out->n++] = (uint8_t)want;
        }
    }
}

void ks_gotsym_collect(const struct dl_phdr_info *info, struct ks_gotsym *out)
{
    memset(out, 0, sizeof *out);
    out->base = info->dlpi_addr;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    if (!dyn || !info->dlpi_name || (*info->dlpi_name && strstr(info->dlpi_name, "vdso")))
        return;
    struct ks_dyn d;
    memset(&d, 0, sizeof d);
    ks_dyn_read(info, dyn, &d);
    if (!d.symtab || !d.strtab)
        return;
    ks_gotsym_pass(&d, KS_LP_TERMINATE, out);
    ks_gotsym_pass(&d, KS_LP_UNWINDS, out);
    ks_gotsym_pass(&d, KS_LP_NORETURN, out);
}

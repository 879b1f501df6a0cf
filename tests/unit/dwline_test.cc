// injector/dwline.c against libdw on libc's own debug file: for addresses
// in every few functions of libc, the fast reader gives libdw's file:line
// (dwfl_module_getsrc + dwfl_lineinfo, what symbolize.c used alone before),
// says "no line" only where libdw has none, and leaves few to libdw.
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <link.h>
#include <unistd.h>

#include <cstring>
#include <string>

extern "C" {
#include "injector/dwline.h"
}

namespace {

std::string LibcPath()
{
    std::string path;
    dl_iterate_phdr(
        [](struct dl_phdr_info *info, size_t, void *arg) {
            if (std::strstr(info->dlpi_name, "/libc.so.6"))
                *static_cast<std::string *>(arg) = info->dlpi_name;
            return 0;
        },
        &path);
    return path;
}

char *debuginfo_path = nullptr;

const Dwfl_Callbacks kCallbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};

TEST(DwLine, GivesLibdwsAnswerOnLibc)
{
    std::string libc = LibcPath();
    ASSERT_FALSE(libc.empty());
    Dwfl *dwfl = dwfl_begin(&kCallbacks);
    ASSERT_NE(dwfl, nullptr);
    Dwfl_Module *mod = dwfl_report_offline(dwfl, "libc", libc.c_str(), -1);
    ASSERT_NE(mod, nullptr);
    dwfl_report_end(dwfl, nullptr, nullptr);
    Dwarf_Addr bias = 0;
    // libc6-dbg (tools/setup.sh): the compressed DWARF the reader is for.
    ASSERT_NE(dwfl_module_getdwarf(mod, &bias), nullptr) << "libc6-dbg installed?";
    const char *debug = nullptr;
    dwfl_module_info(mod, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, &debug);
    ASSERT_NE(debug, nullptr);
    int fd = open(debug, O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
    ASSERT_NE(elf, nullptr);
    struct ksi_dwline *dl = ksi_dwline_open(elf);
    ASSERT_NE(dl, nullptr);

    int nsyms = dwfl_module_getsymtab(mod);
    int same = 0, none = 0, asked = 0;
    for (int i = 1; i < nsyms; i += 3) {
        GElf_Sym sym;
        GElf_Addr addr;
        const char *name = dwfl_module_getsym_info(mod, i, &sym, &addr, nullptr, nullptr, nullptr);
        if (!name || GELF_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_size == 0)
            continue;
        for (GElf_Addr a : {addr, addr + sym.st_size / 2, addr + sym.st_size - 1}) {
            Dwfl_Line *l = dwfl_module_getsrc(mod, a);
            int want_line = 0;
            const char *want = l ? dwfl_lineinfo(l, nullptr, &want_line, nullptr, nullptr, nullptr)
                                 : nullptr;
            char file[512];
            int line = 0;
            int rc = ksi_dwline_find(dl, a - bias, file, sizeof file, &line);
            SCOPED_TRACE(std::string(name) + " +" + std::to_string(a - addr));
            if (rc == 0) {
                ASSERT_NE(want, nullptr);
                EXPECT_STREQ(file, want);
                EXPECT_EQ(line, want_line);
                same++;
            } else if (rc == 1) {
                EXPECT_EQ(want, nullptr) << "libdw: " << want << ":" << want_line;
                none++;
            } else {
                asked++;
            }
        }
    }
    // The reader answers nearly everything itself (a fallback costs libdw's
    // full inflate, the 80 ms it exists to save).
    EXPECT_GT(same, 1000);
    EXPECT_LT(asked * 50, same + none) << asked << " left to libdw";
    printf("same %d, no line %d, left to libdw %d\n", same, none, asked);
    ksi_dwline_close(dl);
    elf_end(elf);
    close(fd);
    dwfl_end(dwfl);
}

}  // namespace

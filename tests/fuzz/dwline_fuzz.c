/* libFuzzer target: the injector's own DWARF line reader (injector/dwline.c,
 * dwsec.c), which reads debug files a target may have written (a
 * .gnu_debuglink next to its object). Input: 8 bytes of address, then an
 * ELF file. Checks: no read outside the file or the inflated sections
 * (ASan, exact-size copy), and an answer that is a string and a line. */
#include <gelf.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "injector/dwline.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    uint64_t addr;
    memcpy(&addr, data, 8);
    size_t len = size - 8;
    char *buf = malloc(len ? len : 1);   /* exact size: ASan sees any overread */
    if (!buf)
        return 0;
    memcpy(buf, data + 8, len);
    elf_version(EV_CURRENT);
    Elf *elf = elf_memory(buf, len);
    struct ksi_dwline *dl = elf ? ksi_dwline_open(elf) : NULL;
    if (dl) {
        for (int i = 0; i < 4; i++) {   /* the address, and near it: kept state reused */
            char file[64];
            int line = -1;
            int rc = ksi_dwline_find(dl, addr + (uint64_t)i * 7, file, sizeof file, &line);
            CHECK(rc >= -1 && rc <= 1);
            CHECK(rc != 0 || (memchr(file, 0, sizeof file) && line >= 0));
        }
        ksi_dwline_close(dl);
    }
    elf_end(elf);
    free(buf);
    return 0;
}

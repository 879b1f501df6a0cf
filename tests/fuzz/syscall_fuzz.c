/* libFuzzer target: the /proc/PID/task/TID/syscall parser (shim/common/procfs.c),
 * which the stack dump reads for every blocked thread. The parser takes a
 * NUL-terminated string, so the input is copied and terminated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shim/common/procfs.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    struct ks_syscall sc;
    if (ks_parse_syscall(buf, &sc) == 0)
        CHECK(sc.nr >= 0 || sc.nr == KS_SYSCALL_NONE || sc.nr == KS_SYSCALL_RUNNING);
    free(buf);
    return 0;
}

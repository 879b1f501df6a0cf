/* libFuzzer target: the /proc/PID/task/TID/status parser (shim/common/procfs.c).
 * The Name line is program-controlled (prctl(PR_SET_NAME)). The parser
 * takes a NUL-terminated string, so the input is copied and terminated. */
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
    struct ks_taskstatus st;
    if (ks_parse_status(buf, &st) == 0)
        CHECK(memchr(st.name, '\0', sizeof st.name) != NULL);
    free(buf);
    return 0;
}

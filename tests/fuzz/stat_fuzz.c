/* libFuzzer target: the /proc/PID/task/TID/stat parser (shim/common/procfs.c).
 * The comm field is program-controlled (prctl(PR_SET_NAME) can put blanks
 * and parentheses in it), so the parser meets hostile text in real life. */
#include <stdint.h>
#include <string.h>

#include "shim/common/procfs.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ks_taskstat st;
    if (ks_parse_stat((const char *)data, size, &st) != 0)
        return 0;
    CHECK(memchr(st.comm, '\0', sizeof st.comm) != NULL);
    CHECK(st.state != '\0');
    return 0;
}

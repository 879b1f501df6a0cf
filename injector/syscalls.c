#include "syscalls.h"

#include <stddef.h>

static const char *const ksi_syscall_names[] = {
#include "syscall_names.inc"
};

const char *ksi_syscall_name(long nr)
{
    if (nr < 0 || (size_t)nr >= sizeof ksi_syscall_names / sizeof ksi_syscall_names[0])
        return NULL;
    return ksi_syscall_names[nr];
}

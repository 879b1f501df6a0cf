/* See err.h. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

void ksi_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("killshim-inject: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

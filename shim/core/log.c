/* Diagnostics go to stderr, never stdout, and only when asked for
 * (KILLSHIM_DEBUG=1), except warnings about a part of the shim that could not
 * start: the program runs on, and the user learns why once. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ks.h"

KS_HOT_DATA int ks_debug_enabled;

static void ks_vlog(const char *level, const char *fmt, va_list ap)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "killshim[%d]: %s", (int)getpid(), level);
    if (n < 0 || (size_t)n >= sizeof buf)
        return;
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    size_t len = strlen(buf);
    buf[len++] = '\n';
    /* One write: lines from several threads do not interleave. */
    ssize_t w = write(STDERR_FILENO, buf, len);
    (void)w;
}

/* In the start path: the constructor calls it (and it returns at once
 * unless KILLSHIM_DEBUG is set). */
KS_START_PATH void ks_debug(const char *fmt, ...)
{
    if (!ks_debug_enabled)
        return;
    va_list ap;
    va_start(ap, fmt);
    ks_vlog("", fmt, ap);
    va_end(ap);
}

void ks_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ks_vlog("warning: ", fmt, ap);
    va_end(ap);
}

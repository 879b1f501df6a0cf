#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ks.h"

KS_SIGSAFE uint64_t ks_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

KS_SIGSAFE pid_t ks_gettid(void) { return (pid_t)syscall(SYS_gettid); }

KS_SIGSAFE pid_t ks_getpid(void) { return (pid_t)syscall(SYS_getpid); }

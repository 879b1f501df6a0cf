/* The program that redirect_walk_test interrupts: a library of its own, so
 * that its frames are the application's (the test binary holds the shim's
 * rooms and is the shim's module). It computes in its own code, calls libc
 * that takes no lock and calls back (qsort on a small array: no malloc),
 * copies and scans memory, and makes system calls, until *STOP. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile unsigned long kw_sink;

static int kw_cmp(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    for (int i = 0; i < 20; i++)
        kw_sink += (unsigned long)i * (unsigned long)x;
    return (x > y) - (x < y);
}

__attribute__((noinline)) static void kw_compute(int n)
{
    for (int i = 0; i < n; i++)
        kw_sink += (unsigned long)i * (unsigned long)i;
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void kw_libc(unsigned seed)
{
    int v[32];
    char buf[256];
    for (int i = 0; i < 32; i++)
        v[i] = (int)((seed + (unsigned)i * 2654435761u) % 1000u);
    qsort(v, 32, sizeof v[0], kw_cmp);
    memset(buf, 'a' + (int)(seed % 26), sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    kw_sink += strlen(buf) + (unsigned long)v[0];
    kw_sink += (unsigned long)getppid();
    __asm__ volatile("" ::: "memory");
}

__attribute__((visibility("default"), noinline)) void kw_spin(volatile int *stop)
{
    for (unsigned seed = 1; !*stop; seed++) {
        kw_compute(2000);
        kw_libc(seed);
    }
    __asm__ volatile("" ::: "memory");
}

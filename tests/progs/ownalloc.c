/* The program's own allocator, linked into the executable (guest_ownalloc:
 * guest.c with this file), as a program with a statically linked allocator
 * has it: malloc and its whole family defined here, and so the first
 * definitions in the loader's order, which libc and every library call.
 * A bump allocator over a fixed arena under a spin lock; free keeps
 * nothing. For doorbell_test: the shim must never start serving by sending
 * a thread of such a program through its trampoline, since the thread may
 * be inside this allocator, holding its lock (shim/safepoint/redirect.c). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ARENA_BYTES ((size_t)256 << 20)   /* .bss: pages only as used */

static unsigned char arena[ARENA_BYTES] __attribute__((aligned(4096)));
static size_t used;
static int lock;

struct hdr {
    size_t size;
    size_t pad;   /* the block stays 16-aligned */
};

static void *take(size_t size, size_t align)
{
    if (align < 16)
        align = 16;
    if (size > ARENA_BYTES || (align & (align - 1)))
        goto none;
    while (__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE))
        ;
    uintptr_t p = (uintptr_t)arena + used + sizeof(struct hdr);
    p = (p + align - 1) & ~(uintptr_t)(align - 1);
    size_t end = p - (uintptr_t)arena + size;
    if (end > ARENA_BYTES) {
        __atomic_store_n(&lock, 0, __ATOMIC_RELEASE);
        goto none;
    }
    ((struct hdr *)p - 1)->size = size;
    used = end;
    __atomic_store_n(&lock, 0, __ATOMIC_RELEASE);
    return (void *)p;
none:
    errno = ENOMEM;
    return NULL;
}

void *malloc(size_t n) { return take(n, 16); }
void free(void *p) { (void)p; }
size_t malloc_usable_size(void *p) { return p ? ((struct hdr *)p - 1)->size : 0; }
void *memalign(size_t align, size_t n) { return take(n, align); }
void *aligned_alloc(size_t align, size_t n) { return take(n, align); }
void *valloc(size_t n) { return take(n, 4096); }
void *pvalloc(size_t n) { return take((n + 4095) & ~(size_t)4095, 4096); }

void *calloc(size_t n, size_t each)
{
    if (each && n > SIZE_MAX / each) {
        errno = ENOMEM;
        return NULL;
    }
    return take(n * each, 16);   /* the arena is never reused: still zero */
}

void *realloc(void *old, size_t n)
{
    void *p = malloc(n);
    if (p && old) {
        size_t had = malloc_usable_size(old);
        memcpy(p, old, had < n ? had : n);
    }
    return p;
}

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p = take(n, align);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

/* The access proofs (see access.h): their secrets, the "challenge" verb, and
 * the check every request that reads or acts goes through. */
#include "shim/common/access.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "commands.h"
#include "shim/common/fdid.h"
#include "shim/core/ks.h"

#define KS_PROOF_RENEW_MS (KS_PROOF_VALID_MS / 2)
#define KS_SECRET_LEN 16
#define KS_PAGE 4096

struct ks_gen {
    uint64_t gen;                         /* 0: empty */
    uint64_t born_ns;
    unsigned char rsec[KS_SECRET_LEN];    /* in the page's name: read */
    unsigned char asec[KS_SECRET_LEN];    /* in the page's content: attach */
    void *page;                           /* the named page, or NULL */
};

/* In a page of its own, wiped in a fork child (all zero: no generation, and
 * a fresh lock: glibc's PTHREAD_MUTEX_INITIALIZER is all zero), so a child
 * never holds its parent's secrets nor a lock a parent thread held. */
struct ks_vault {
    pthread_mutex_t mu;
    uint64_t last;                        /* newest generation; 0: none yet */
    struct ks_gen g[2];                   /* generation N lives in g[N % 2] */
};

static struct ks_vault *ks_vault;
static pthread_once_t ks_vault_once = PTHREAD_ONCE_INIT;

static void ks_vault_map(void)
{
    void *p = mmap(NULL, KS_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return;
    /* Without WIPEONFORK (Linux < 4.14) a fork child would carry the
     * secrets: then there are no proofs at all rather than weak ones. */
    if (madvise(p, KS_PAGE, MADV_WIPEONFORK) != 0) {
        ks_debug("no MADV_WIPEONFORK (%s): access proofs unavailable", strerror(errno));
        munmap(p, KS_PAGE);
        return;
    }
    madvise(p, KS_PAGE, MADV_DONTDUMP);
    __atomic_store_n(&ks_vault, (struct ks_vault *)p, __ATOMIC_RELEASE);
}

/* The vault, locked; NULL if it could not be made. */
static struct ks_vault *ks_vault_lock(void)
{
    pthread_once(&ks_vault_once, ks_vault_map);
    struct ks_vault *v = __atomic_load_n(&ks_vault, __ATOMIC_ACQUIRE);
    if (!v)
        return NULL;
    /* The real function: the shim's own lock is not one of the program's. */
    KS_REAL(pthread_mutex_lock)(&v->mu);
    return v;
}

static void ks_vault_unlock(struct ks_vault *v) { KS_REAL(pthread_mutex_unlock)(&v->mu); }

static void ks_hex(const unsigned char *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* A page named after G's read secret holding its attach secret. The memfd
 * is the shim's for a few system calls; each use checks the number is still
 * its own (fdid.h). Returns the page or NULL (errno). */
static void *ks_named_page(const struct ks_gen *g)
{
    char name[64], hex[2 * KS_SECRET_LEN + 1];
    ks_hex(g->rsec, KS_SECRET_LEN, hex);
    snprintf(name, sizeof name, "killshim-proof-%" PRIu64 "-%s", g->gen, hex);
    ks_wipe(hex, sizeof hex);
    int fd = (int)syscall(SYS_memfd_create, name, (unsigned long)MFD_CLOEXEC);   /* ks.h */
    ks_wipe(name, sizeof name);
    struct ks_fdid id;
    if (fd < 0 || ks_fdid_get(fd, &id) != 0)
        return NULL;
    void *p = MAP_FAILED;
    if (ks_fdid_same(fd, &id) && ftruncate(fd, KS_PAGE) == 0 && ks_fdid_same(fd, &id) &&
        pwrite(fd, g->asec, KS_SECRET_LEN, 0) == KS_SECRET_LEN && ks_fdid_same(fd, &id))
        p = mmap(NULL, KS_PAGE, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    ks_fdid_close(fd, &id);
    if (p == MAP_FAILED) {
        errno = e ? e : EBADF;
        return NULL;
    }
    madvise(p, KS_PAGE, MADV_DONTFORK);
    madvise(p, KS_PAGE, MADV_DONTDUMP);
    return p;
}

/* Makes generation N in its slot. Returns 0 or an errno. */
static int ks_gen_make(struct ks_vault *v, uint64_t n)
{
    struct ks_gen *g = &v->g[n % 2];
    if (g->page)
        munmap(g->page, KS_PAGE);
    memset(g, 0, sizeof *g);
    g->gen = n;
    unsigned char r[2 * KS_SECRET_LEN];
    if (syscall(SYS_getrandom, r, sizeof r, 0UL) != (long)sizeof r)   /* ks.h */
        return errno ? errno : EIO;
    memcpy(g->rsec, r, KS_SECRET_LEN);
    memcpy(g->asec, r + KS_SECRET_LEN, KS_SECRET_LEN);
    ks_wipe(r, sizeof r);
    g->page = ks_named_page(g);
    if (!g->page) {
        int e = errno;
        memset(g, 0, sizeof *g);
        return e;
    }
    g->born_ns = ks_now_ns();
    v->last = n;
    return 0;
}

void ks_cmd_challenge(const struct ks_msg *req, struct ks_out *out)
{
    (void)req;
    struct ks_vault *v = ks_vault_lock();
    if (!v) {
        ks_out_err(out, "unsupported", "no access proofs in this process (see docs/security.md)");
        return;
    }
    uint64_t now = ks_now_ns();
    const struct ks_gen *g = v->last ? &v->g[v->last % 2] : NULL;
    int rc = 0;
    if (!g || now - g->born_ns >= (uint64_t)KS_PROOF_RENEW_MS * 1000000) {
        rc = ks_gen_make(v, v->last + 1);
        g = &v->g[v->last % 2];
    }
    uint64_t gen = g->gen, left_ms = (g->born_ns + KS_PROOF_VALID_MS * 1000000ull - now) / 1000000;
    ks_vault_unlock(v);
    if (rc) {
        ks_out_err(out, "internal", "cannot make a challenge: %s", strerror(rc));
        return;
    }
    ks_out_word(out, "ok");
    ks_out_i64(out, "gen", (int64_t)gen);
    ks_out_i64(out, "valid_ms", (int64_t)left_ms);
    ks_out_eol(out);
}

static int ks_same(const unsigned char *a, const unsigned char *b, size_t n)
{
    unsigned char d = 0;   /* constant time: no early exit on the first byte */
    for (size_t i = 0; i < n; i++)
        d |= a[i] ^ b[i];
    return d == 0;
}

static int ks_unhex(const char *s, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (x < 0)
            return -1;
        out[i / 2] = (unsigned char)(i % 2 ? (out[i / 2] << 4) | x : x);
    }
    return s[2 * n] == '\0' ? 0 : -1;
}

/* The level PROOF ("GEN-HEX") shows: NONE if it matches no live secret.
 * *STALE: it names a generation that was, but is no more. */
static enum ks_access ks_proof_level(const char *proof, int *stale)
{
    char *end;
    unsigned char sec[KS_SECRET_LEN];
    *stale = 0;
    uint64_t gen = strtoull(proof, &end, 10);
    if (end == proof || *end != '-' || ks_unhex(end + 1, sec, sizeof sec) != 0)
        return KS_ACCESS_NONE;
    enum ks_access level = KS_ACCESS_NONE;
    struct ks_vault *v = ks_vault_lock();
    if (v) {
        const struct ks_gen *g = &v->g[gen % 2];
        int live = gen && g->gen == gen &&
                   ks_now_ns() - g->born_ns < (uint64_t)KS_PROOF_VALID_MS * 1000000;
        if (live && ks_same(sec, g->asec, sizeof sec))
            level = KS_ACCESS_ATTACH;
        else if (live && ks_same(sec, g->rsec, sizeof sec))
            level = KS_ACCESS_READ;
        *stale = !live && gen && gen <= v->last;
        ks_vault_unlock(v);
    }
    ks_wipe(sec, sizeof sec);
    return level;
}

int ks_access_check(const struct ks_msg *req, enum ks_access need, const char *verb, char *why,
                    size_t cap)
{
    if (need == KS_ACCESS_NONE)
        return 0;
    const char *what = need == KS_ACCESS_ATTACH
        ? "attach access (PTRACE_MODE_ATTACH: what gdb -p needs)"
        : "read access (PTRACE_MODE_READ: what reading /proc/PID/maps needs)";
    const char *proof = ks_msg_get(req, "proof");
    if (!proof) {
        snprintf(why, cap, "%s needs %s to process %d: ask 'challenge', then send the request "
                 "with proof= (docs/PROTOCOL.md)", verb, what, (int)ks_getpid());
        return EACCES;
    }
    int stale;
    enum ks_access got = ks_proof_level(proof, &stale);
    if (got >= need)
        return 0;
    if (got == KS_ACCESS_READ)
        snprintf(why, cap, "%s needs %s to process %d; the proof shows read access only",
                 verb, what, (int)ks_getpid());
    else if (stale)
        snprintf(why, cap, "the proof's challenge expired (a challenge is good for %d ms): "
                 "ask 'challenge' again", KS_PROOF_VALID_MS);
    else
        snprintf(why, cap, "the proof matches no challenge of process %d", (int)ks_getpid());
    return EACCES;
}

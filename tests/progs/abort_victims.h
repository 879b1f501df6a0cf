/* What abort_victims.c shares with abort_locks.c (its lock victims). */
#ifndef KS_TESTS_ABORT_VICTIMS_H
#define KS_TESTS_ABORT_VICTIMS_H

#include <pthread.h>

struct victim {
    int idx;
    char kind[32];
    pthread_t th;
    int started;
};

/* One line to stdout, whole, under the program's output lock. */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "victim I tid=T kind=KIND": the victim runs its loop. */
void announce(struct victim *v);

/* Set by main on "release" / "release2"; victims poll them. */
extern int released, released2;
/* Held by main until "release". */
extern pthread_mutex_t dead_mu;

/* abort_locks.c: the hold_HOW and fail_HOW victims (abort_victims.c's
 * header comment), and main's try of their locks (0 free, EBUSY, EINVAL if
 * NAME is not one of them). */
void run_hold(struct victim *v, const char *how);
void run_fail(struct victim *v, const char *how);
int hold_try(const char *name);

#endif

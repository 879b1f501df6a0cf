/* parked's other waits (parked_waits.c). */
#ifndef KS_TESTS_PARKED_WAITS_H
#define KS_TESTS_PARKED_WAITS_H

/* Prints one line (parked.c): lines of different threads never mix. */
void parked_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Makes the timed wait NAME of MS milliseconds (EMPTY_FD: a pipe's read end
 * nothing is written to); *KNOWN = 0 if NAME is not one of these. Returns
 * the call's result, errno as the call left it. */
int park_wait_timed(const char *name, long ms, int empty_fd, int *known);
/* Starts a thread blocked in NAME until park_wake(NAME) (which joins it). */
void park_block(const char *name);
void park_wake(const char *name);
/* Removes the SysV objects; threads still blocked are left to exit. */
void park_waits_cleanup(void);

#endif

/* The injector's overall deadline: whatever it waits for (a socket, a reply,
 * a file a target named, a parser), it gives up when the deadline passes,
 * says what it was doing, and exits 1. Nothing it leaves behind in the
 * target needs it: the shim finishes or abandons a request on its own when
 * the connection closes. */
#ifndef KSI_DEADLINE_H
#define KSI_DEADLINE_H

/* CLOCK_MONOTONIC in seconds: every wait and figure of the injector. */
double ksi_now(void);

/* Arms the deadline SECONDS from now (0: none). Call once. */
void ksi_deadline_start(double seconds);
/* What the injector is doing now, for the message ("reading /usr/lib/...").
 * Cheap; truncated to a line. */
void ksi_phase(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif

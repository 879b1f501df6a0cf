/* The control server: how it serves. The listening socket (sockaddr.h), an
 * accept thread of the shim's own, and one short-lived shim thread per
 * client, so a slow client never holds up another. When it runs (at load,
 * lazily in a fork child, stepped aside around calls that need a lone
 * thread) is control.c's business. */
#ifndef KS_SERVER_H
#define KS_SERVER_H

#include <stddef.h>
#include <stdint.h>

/* Once, at init: reads the environment, empties the connection table.
 * PREPARE (may be NULL) runs on the accept thread each time it starts,
 * before its first accept: what serving needs but a process nobody asks
 * should not pay for (clients wait in the backlog meanwhile). */
void ks_server_init(void (*prepare)(void));
/* Binds and listens on the process's socket, unless it does already.
 * Returns 0, or an errno (reported once on stderr: the program runs on
 * without control). */
int ks_server_listen(void);
/* Starts the accept thread (ks_server_listen first). Returns 0 or an errno
 * (reported). */
int ks_server_run(void);
/* Waits, MAX_NS at most, until an accept thread has run PREPARE (once per
 * process image: at once if it has). Returns 0, or ETIMEDOUT. Not in a
 * signal handler. */
int ks_server_wait_prepared(uint64_t max_ns);
/* Makes every shim thread of the server leave soon: the accept thread is
 * woken and quits, each connection's socket is shut down so its thread's
 * read ends. The listening socket stays: clients wait in its backlog until
 * ks_server_run. */
void ks_server_stop(void);
/* Cuts the accept thread's accept short (it then sees the stop). A wake
 * that lands just before the accept begins is lost: repeat until the
 * thread is gone. */
void ks_server_wake(void);
/* Closes the listening socket (if the number is still ours). */
void ks_server_close(void);
/* In a fork child: drop the parent's sockets (so its name is freed when the
 * parent exits) and its clients'. */
void ks_server_after_fork_child(void);
/* Removes the socket file, if the socket is a file. */
void ks_server_cleanup(void);

#endif

/* The control server: a thread of the shim's own that accepts connections on
 * the control socket (sockaddr.h) and serves each from a short-lived shim
 * thread, so a slow client never holds up another. */
#ifndef KS_SERVER_H
#define KS_SERVER_H

#include <stddef.h>

/* Binds the socket and starts the control thread. On failure the program
 * runs on without control, and the reason is reported once on stderr. */
void ks_server_start(void);
/* In a fork child: drop the parent's socket (so its name is freed when the
 * parent exits) and serve the child's own pid. */
void ks_server_after_fork_child(void);
/* Removes the socket file, if the socket is a file. */
void ks_server_cleanup(void);

/* Starts a detached thread of the shim's own: registered as KS_ROLE_SHIM,
 * every signal blocked (the program's signals are never handled on it).
 * Returns 0 or an errno. */
int ks_spawn_shim_thread(const char *name, void *(*fn)(void *), void *arg, size_t stack);

#endif

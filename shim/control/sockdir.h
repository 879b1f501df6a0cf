/* KILLSHIM_SOCKET_DIR: the control socket as the file DIR/killshim-PID.sock.
 *
 * The directory is opened once, without following a symbolic link
 * (O_NOFOLLOW), and must be owned by the process's user or root and
 * writable by nobody else: then no other user can swap, squat or remove
 * what the shim puts there. Every later operation is relative to that
 * descriptor (mkdirat, renameat, unlinkat; bind has no *at form, so it
 * binds to /proc/self/fd/N/..., which names the opened directory itself,
 * never the path again). The socket gets mode 0600 at creation (fchmod of
 * the socket before bind), in a private 0700 subdirectory, and is renamed
 * into place once it listens. The process's umask and cwd are never
 * touched: the program shares them. */
#ifndef KS_SOCKDIR_H
#define KS_SOCKDIR_H

#include <stddef.h>

/* Binds SOCK (a fresh AF_UNIX stream socket) as DIR/killshim-PID.sock and
 * listens. DISPLAY gets the path for messages. Returns 0, or an errno with
 * WHY filled in (the program then runs without control). */
int ks_sockdir_bind(int sock, char *display, size_t dcap, char *why, size_t wcap);
/* Removes the socket file, if this process made it and it is still the one
 * it made. */
void ks_sockdir_cleanup(void);
/* In a fork child: the parent's file is the parent's to remove. */
void ks_sockdir_after_fork_child(void);

#endif

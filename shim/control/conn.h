/* The control socket's connections: each client is served by a short-lived
 * shim thread of its own, so a slow client never holds up another.
 *
 * Slots: KS_MAX_CONNS at once. Clients whose uid is neither root's nor the
 * process's may hold at most KS_MAX_CONNS - KS_CONN_RESERVED of them, so
 * other users cannot crowd out the owner and root. A client has
 * KILLSHIM_IDLE_TIMEOUT_MS (10 s) to send each whole request line, and as
 * long to take each whole reply, however it trickles the bytes. When every
 * slot is taken and a client waits to get in, the connection that has been
 * waiting on its client longest (at least KS_CONN_EVICT_MS) is closed to
 * make room: a connection busy with a request never is. So the owner's
 * injector, which sends whole lines at once, gets in however many slow
 * clients of its own user hold the slots. */
#ifndef KS_CONN_H
#define KS_CONN_H

#define KS_MAX_CONNS 64
#define KS_CONN_RESERVED 16
#define KS_CONN_EVICT_MS 1000

/* Once, at init: reads the environment, empties the table. */
void ks_conn_init(void);
/* Takes FD, an accepted client: serves it from a thread of its own, or
 * answers "busy" and closes it. */
void ks_conn_serve(int fd);
/* 1 if a new client can get a slot now. 0 if all are taken; if a client
 * waits on LISTEN_FD, the slowest evictable connection is closed first (its
 * slot frees as its thread leaves: ask again). */
int ks_conn_room(int listen_fd);
/* Shuts every connection down: each connection thread leaves soon. */
void ks_conn_shutdown_all(void);
/* In a fork child: closes the parent's connections (the numbers that still
 * name them) and empties the table. */
void ks_conn_after_fork_child(void);

#endif

/* A connection to a target's shim: connect by pid, check who answers and in
 * which protocol version, send requests, read replies. */
#ifndef KSI_CLIENT_H
#define KSI_CLIENT_H

#include <sys/types.h>

#include "shim/common/proof.h"
#include "shim/common/proto.h"

struct ksi_client {
    int fd;
    pid_t pid;
    /* Bytes read and not yet parsed: rbuf[rpos, rlen). As large as the
     * parts the shim sends (64 KiB), so a long reply is read in as few
     * calls; consumed lines only move RPOS (the rest is moved down only
     * before a read: a memmove per line was quadratic in the buffer). */
    char rbuf[64 * 1024];
    size_t rpos, rlen;
    struct ks_proof proof;   /* what the kernel let us prove, for requests */
    double proof_until;      /* CLOCK_MONOTONIC s: make a new one after this */
    /* If set, called each time a request (not a challenge) has been sent,
     * before its reply is read: the caller's work then overlaps the
     * target's (list.c reads the target's map while the shim lists). */
    void (*on_sent)(void *ctx);
    void *on_sent_ctx;
    /* If KEEP_MAPS is set, the map text the last proof was made from
     * (ks_proof_make_maps) stays in MAPS (MAPS_LEN bytes) for the caller,
     * who may take it (and then sets MAPS to NULL): the listing hands it to
     * its symbolizer instead of reading the map a second time (1 MB at
     * 10,000 threads). ksi_close frees what is left. */
    int keep_maps;
    char *maps;
    size_t maps_len;
};

/* Connects to PID's shim. Returns KSI_EXIT_OK, or an exit code after
 * printing a one-line error that says what to do. */
int ksi_connect(pid_t pid, struct ksi_client *c);
void ksi_close(struct ksi_client *c);

/* Called for every record line of a reply; return nonzero to stop early. */
typedef int ksi_record_fn(const struct ks_msg *rec, void *ctx);

/* Sends LINE (no '\n') with the proof of access it needs (access.h; a
 * fresh challenge when the last one is about to expire), and reads the
 * reply: each record goes to FN, the final line into *FINAL ("ok" or "err"). Returns KSI_EXIT_OK or an
 * exit code (after printing an error) if the connection failed or the reply
 * was malformed. An "err" reply is not a failure here: look at FINAL. */
int ksi_request(struct ksi_client *c, const char *line, ksi_record_fn *fn, void *ctx,
                struct ks_msg *final);

/* Does PID map libkillshim.so (started under it, attached, or loaded from a
 * memfd named after it)? Tells "not under the shim" from "socket failed",
 * and an attach from one already done. */
int ksi_maps_shim(pid_t pid);

/* Maps an "err" final line to an exit code and prints its message. */
int ksi_reply_error(const struct ks_msg *final);

#endif

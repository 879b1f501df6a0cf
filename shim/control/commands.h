/* The control protocol's verbs. Each verb has a handler in a cmd_*.c file; a
 * handler writes zero or more record lines and exactly one final line
 * ("ok ..." or "err code=... msg=..."). Handlers run on a connection thread
 * of the shim, never on a program thread, and may block briefly. */
#ifndef KS_COMMANDS_H
#define KS_COMMANDS_H

#include "shim/common/access.h"
#include "shim/common/proto.h"

typedef void ks_cmd_fn(const struct ks_msg *req, struct ks_out *out);

struct ks_command {
    const char *verb;
    ks_cmd_fn *fn;
    const char *usage;   /* one line, for "help" */
    enum ks_access access;   /* what the client must prove first (access.h) */
};

/* Terminated by an entry with verb == NULL. */
extern const struct ks_command ks_commands[];
const struct ks_command *ks_command_find(const char *verb);

ks_cmd_fn ks_cmd_hello;
ks_cmd_fn ks_cmd_help;
ks_cmd_fn ks_cmd_challenge;
ks_cmd_fn ks_cmd_tls;
ks_cmd_fn ks_cmd_list;
ks_cmd_fn ks_cmd_end;
ks_cmd_fn ks_cmd_status;
ks_cmd_fn ks_cmd_stack;

#endif

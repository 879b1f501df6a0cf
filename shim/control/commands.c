/* The verb table: the one place that says what the protocol offers. */
#include "commands.h"

#include <string.h>

#include "shim/core/ks.h"
#include "shim/common/version.h"

const struct ks_command ks_commands[] = {
    {"hello", ks_cmd_hello, "hello: protocol version, pid and shim version", KS_ACCESS_NONE},
    {"help", ks_cmd_help, "help: one 'verb' line per request this shim understands",
     KS_ACCESS_NONE},
    {"challenge", ks_cmd_challenge, "challenge: a generation of secrets to prove read or attach "
                                    "access with (proof=GEN-HEX on the requests below)",
     KS_ACCESS_NONE},
    {"list", ks_cmd_list, "list proof=P: one 'thread' line per thread of the process",
     KS_ACCESS_READ},
    {"end", ks_cmd_end, "end tid=N [id=M] mode=flag|cancel|abort|python [force=1] "
                        "[exc=NAME] proof=P: ask thread N to end (attach access)", KS_ACCESS_ATTACH},
    {"status", ks_cmd_status, "status tid=N [id=M] [python=1] proof=P: alive (and why, if asked "
                              "to end) or ended (how, where, locks left)", KS_ACCESS_READ},
    {"stack", ks_cmd_stack,
     "stack [tid=N] [answer_ms=MS] proof=P: one 'stack' line per thread: frames, blocked-on, "
     "lock owner", KS_ACCESS_READ},
    {"tls", ks_cmd_tls, "tls tid=N [id=M] module=ADDR proof=P: where thread N's copy of that "
                        "module's thread-local block is", KS_ACCESS_READ},
    {NULL, NULL, NULL, KS_ACCESS_NONE},
};

const struct ks_command *ks_command_find(const char *verb)
{
    for (const struct ks_command *c = ks_commands; c->verb; c++)
        if (strcmp(c->verb, verb) == 0)
            return c;
    return NULL;
}

void ks_cmd_hello(const struct ks_msg *req, struct ks_out *out)
{
    (void)req;
    ks_out_word(out, "ok");
    ks_out_i64(out, "proto", KS_PROTO_VERSION);
    ks_out_i64(out, "pid", ks_getpid());
    ks_out_str(out, "version", KILLSHIM_VERSION);
    ks_out_eol(out);
}

void ks_cmd_help(const struct ks_msg *req, struct ks_out *out)
{
    (void)req;
    for (const struct ks_command *c = ks_commands; c->verb; c++) {
        ks_out_word(out, "verb");
        ks_out_str(out, "name", c->verb);
        ks_out_str(out, "usage", c->usage);
        ks_out_eol(out);
    }
    ks_out_ok(out);
}

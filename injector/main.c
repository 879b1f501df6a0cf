/* killshim-inject: the command line. Parses options, then hands over to one
 * action: list (list.c), stack (stack.c) or end a thread (end.c). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deadline.h"
#include "injector.h"
#include "shim/common/proto.h"
#include "shim/common/version.h"

static const char ksi_usage[] =
"Usage: killshim-inject [OPTIONS] PID            list the threads of PID\n"
"       killshim-inject --stack [OPTIONS] PID [TID]  stacks, blocked-on, deadlocks\n"
"       killshim-inject [OPTIONS] PID TID        end thread TID, wait, report\n"
"\n"
"PID must run under the shim: 'killshim run -- CMD' or\n"
"LD_PRELOAD=/path/to/libkillshim.so CMD, or have it loaded with --attach. You\n"
"may do what the kernel's ptrace rules let you do to PID: look (as reading\n"
"/proc/PID/maps), end (as gdb -p).\n"
"\n"
"Options:\n"
"  -j, --json               machine-readable JSON on stdout (stable field names)\n"
"  -a, --all                also list the shim's own threads (--stack: show the\n"
"                           shim's own frames)\n"
"  -s, --stack              print every thread's stack (or TID's), what it is\n"
"                           blocked on, and any deadlock cycle; --timeout bounds\n"
"                           how long a thread may take to answer (default 1 s)\n"
"  -m, --mode MODE          how to end TID: auto (default), flag, cancel, abort,\n"
"                           python\n"
"                             flag    set the thread's stop flag, wake it once\n"
"                             cancel  POSIX pthread_cancel, honouring cancel state\n"
"                             abort   leave at the next safe point, cleanups run\n"
"                             python  raise an exception in TID's Python thread\n"
"                                     (CPython's PyThreadState_SetAsyncExc)\n"
"                             auto    flag, then cancel, then abort, --grace apart;\n"
"                                     on a Python thread: python\n"
"  -g, --grace SECONDS      wait between the steps of auto (default 1)\n"
"  -t, --timeout SECONDS    how long to wait for the thread to end (default 10)\n"
"  -D, --deadline SECONDS   give up after this long in all, saying what was pending\n"
"                           (default 60 + --timeout + 3 x --grace; 0: never)\n"
"  -f, --force              abort at once even where it is not safe (a held lock);\n"
"                           the report says what was left behind. cancel: cancel\n"
"                           at once even where the thread would leave a lock held,\n"
"                           or when the stack could not be checked (never through\n"
"                           a noexcept frame). Both: a language runtime's thread\n"
"                           (CPython, a JVM...) too\n"
"      --flag-symbol NAME[=VALUE]\n"
"                           flag mode: write VALUE (default 1) into the program's\n"
"                           own stop variable NAME (global or thread-local)\n"
"      --raise NAME         python mode: the exception to raise, a builtins name\n"
"                           (default SystemExit)\n"
"      --attach             load the shim into PID first if it is not there (a\n"
"                           program started without it; ptrace, once, on one\n"
"                           thread; docs/attach.md), then do the rest as usual\n"
"      --shim PATH          the libkillshim.so --attach loads (default:\n"
"                           $KILLSHIM_LIB, else the one installed with this\n"
"                           program)\n"
"  -h, --help               this help\n"
"  -V, --version            version and protocol version\n"
"\n"
"Exit codes:\n"
"  0 done (the thread is gone)    1 other error          2 bad command line\n"
"  3 still alive at --timeout     4 no such process      5 process not under the shim\n"
"  6 permission denied (ptrace)  7 protocol mismatch    8 no such thread\n"
"  9 refused: the action could not be made safe\n"
"  10 gone, but it left a pthread mutex or rwlock locked (the report names it)\n"
"\n"
"Examples:\n"
"  killshim-inject 4242                    what are the threads of 4242 doing?\n"
"  killshim-inject --stack 4242            all stacks and deadlocks\n"
"  killshim-inject 4242 4250               end thread 4250 the gentlest way that works\n"
"  killshim-inject -m abort -t 5 4242 4250 force it out of a CPU loop\n"
"  killshim-inject --attach 4242           load the shim into 4242, then list\n"
"  killshim-inject --json 4242 | jq '.threads[] | select(.state==\"R\")'\n";

static int ksi_parse_id(const char *s, const char *what, pid_t *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v <= 0 || v > (1L << 30)) {
        ksi_err("%s must be a positive number, not '%s' (see --help)", what, s);
        return -1;
    }
    *out = (pid_t)v;
    return 0;
}

static int ksi_parse_secs(const char *s, const char *opt, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !(v >= 0) || v > 86400) {
        ksi_err("%s takes seconds (0 to 86400), not '%s'", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int ksi_parse_mode(const char *s, enum ksi_mode *out)
{
    static const struct { const char *name; enum ksi_mode mode; } modes[] = {
        {"auto", KSI_MODE_AUTO}, {"flag", KSI_MODE_FLAG}, {"cancel", KSI_MODE_CANCEL},
        {"abort", KSI_MODE_ABORT}, {"python", KSI_MODE_PYTHON},
    };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(s, modes[i].name) == 0) {
            *out = modes[i].mode;
            return 0;
        }
    ksi_err("unknown mode '%s': use auto, flag, cancel, abort or python", s);
    return -1;
}

/* What the command line asked beyond struct ksi_opts. */
struct ksi_cmdline {
    double deadline_s;        /* --deadline; -1: the default */
    int mode_set;             /* --mode was given */
    int done;                 /* --help or --version printed: exit at once */
};

/* The options into O and CL. Returns KSI_EXIT_OK or KSI_EXIT_USAGE. */
static int ksi_parse_opts(int argc, char **argv, struct ksi_opts *o, struct ksi_cmdline *cl)
{
    enum { OPT_FLAG_SYMBOL = 256, OPT_RAISE, OPT_ATTACH, OPT_SHIM };
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"all", no_argument, NULL, 'a'},
        {"stack", no_argument, NULL, 's'},
        {"mode", required_argument, NULL, 'm'},
        {"grace", required_argument, NULL, 'g'},
        {"timeout", required_argument, NULL, 't'},
        {"deadline", required_argument, NULL, 'D'},
        {"force", no_argument, NULL, 'f'},
        {"flag-symbol", required_argument, NULL, OPT_FLAG_SYMBOL},
        {"raise", required_argument, NULL, OPT_RAISE},
        {"attach", no_argument, NULL, OPT_ATTACH},
        {"shim", required_argument, NULL, OPT_SHIM},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c, bad = 0;
    while (!bad && !cl->done && (c = getopt_long(argc, argv, "jasm:g:t:D:fhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': o->json = 1; break;
        case 'a': o->all = 1; break;
        case 's': o->stack = 1; break;
        case 'f': o->force = 1; break;
        case 'm': cl->mode_set = 1; bad = ksi_parse_mode(optarg, &o->mode); break;
        case 'g': bad = ksi_parse_secs(optarg, "--grace", &o->grace_s); break;
        case 't':
            bad = ksi_parse_secs(optarg, "--timeout", &o->timeout_s);
            o->timeout_set = 1;
            break;
        case 'D': bad = ksi_parse_secs(optarg, "--deadline", &cl->deadline_s); break;
        case OPT_FLAG_SYMBOL: o->flag_symbol = optarg; break;
        case OPT_RAISE: o->raise = optarg; break;
        case OPT_ATTACH: o->attach = 1; break;
        case OPT_SHIM: o->shim = optarg; break;
        case 'h': fputs(ksi_usage, stdout); cl->done = 1; break;
        case 'V':
            printf("killshim-inject %s (protocol %d)\n", KILLSHIM_VERSION, KS_PROTO_VERSION);
            cl->done = 1;
            break;
        default:
            fputs("Try 'killshim-inject --help'.\n", stderr);
            return KSI_EXIT_USAGE;
        }
    }
    return bad ? KSI_EXIT_USAGE : KSI_EXIT_OK;
}

int main(int argc, char **argv)
{
    struct ksi_opts o = {.mode = KSI_MODE_AUTO, .grace_s = 1.0, .timeout_s = 10.0};
    struct ksi_cmdline cl = {.deadline_s = -1};
    int rc = ksi_parse_opts(argc, argv, &o, &cl);
    if (rc != KSI_EXIT_OK || cl.done)
        return rc;
    int nargs = argc - optind;
    if (nargs < 1 || nargs > 2) {
        ksi_err(nargs < 1 ? "missing PID" : "too many arguments");
        fputs("Try 'killshim-inject --help'.\n", stderr);
        return KSI_EXIT_USAGE;
    }
    if (ksi_parse_id(argv[optind], "PID", &o.pid))
        return KSI_EXIT_USAGE;
    if (nargs == 2 && ksi_parse_id(argv[optind + 1], "TID", &o.tid))
        return KSI_EXIT_USAGE;
    /* Every path and byte from the target is hostile (docs/security.md): a
     * FIFO it names, a file system that stalls, a reply that never ends. */
    ksi_deadline_start(cl.deadline_s >= 0 ? cl.deadline_s : 60 + o.timeout_s + 3 * o.grace_s);
    if (o.attach) {
        int rc = ksi_do_attach(&o);
        if (rc != KSI_EXIT_OK)
            return rc;
    }
    if (o.stack)
        return ksi_do_stack(&o);
    if ((cl.mode_set || o.force || o.flag_symbol || o.raise) && !o.tid) {
        ksi_err("--mode, --force, --flag-symbol and --raise need a TID to end");
        return KSI_EXIT_USAGE;
    }
    if (o.tid)
        return ksi_do_end(&o);
    return ksi_do_list(&o);
}

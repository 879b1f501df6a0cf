/* The one place that starts the shim, once per process (and again in a fork
 * child). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deliver.h"
#include "graveyard.h"
#include "ks.h"
#include "deliver.h"
#include "registry.h"
#include "server.h"
#include "signals.h"
#include "stack_capture.h"


static pthread_once_t ks_once = PTHREAD_ONCE_INIT;

static void ks_after_fork_child(void)
{
    ks_pid = getpid();
    ks_registry_reset_after_fork();
    ks_abort_after_fork_child();
    ks_graveyard_after_fork();
    ks_stack_after_fork_child();
    ks_server_after_fork_child();
}

static void ks_at_exit(void) { ks_server_cleanup(); }

static void ks_init_once(void)
{
    const char *dbg = getenv("KILLSHIM_DEBUG");
    ks_debug_enabled = dbg && *dbg && strcmp(dbg, "0") != 0;
    ks_real_resolve_all();
    ks_pid = getpid();
    if (ks_gettid() == ks_pid)
        ks_registry_add_self(KS_ROLE_MAIN, NULL);
    const char *off = getenv("KILLSHIM_DISABLE");
    if (off && *off && strcmp(off, "0") != 0) {
        ks_debug("KILLSHIM_DISABLE is set: no control socket");
        return;
    }
    ks_deliver_init();
    int rc = ks_abort_init();
    if (rc)
        ks_debug("abort mode unavailable (%s)", strerror(rc));
    rc = ks_signals_install();
    if (rc)
        ks_warn("cannot install the shim's signal handlers (%s): stacks and aborts will not work",
                strerror(rc));
    else
        ks_stack_init();
    pthread_atfork(NULL, NULL, ks_after_fork_child);
    atexit(ks_at_exit);
    ks_server_start();
}

void ks_init(void) { pthread_once(&ks_once, ks_init_once); }

/* ks_init may first run on a thread that is not the main one (a thread a
 * library started before our constructor, calling pthread_create): the
 * constructor always runs on the main thread and registers it then. */
__attribute__((constructor)) static void ks_constructor(void)
{
    ks_init();
    if (ks_gettid() == getpid())
        ks_registry_add_self(KS_ROLE_MAIN, NULL);
}

__attribute__((destructor)) static void ks_destructor(void) { ks_server_cleanup(); }

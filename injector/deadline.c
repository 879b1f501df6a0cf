/* See deadline.h. */
#include "deadline.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "injector.h"

/* Two buffers: ksi_phase fills the one the handler is not reading, then
 * publishes it; the handler (on this same thread) sees a whole line. */
static char ksi_phases[2][256] = {"starting", ""};
static volatile sig_atomic_t ksi_cur;
static char ksi_gave_up[96];

static void ksi_out(const char *s) { (void)!write(STDERR_FILENO, s, strlen(s)); }

static void ksi_on_deadline(int sig)
{
    (void)sig;
    ksi_out(ksi_gave_up);
    ksi_out(ksi_phases[ksi_cur]);
    ksi_out("\n");
    _exit(KSI_EXIT_ERROR);
}

void ksi_phase(const char *fmt, ...)
{
    int next = !ksi_cur;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ksi_phases[next], sizeof ksi_phases[next], fmt, ap);
    va_end(ap);
    ksi_phases[next][strcspn(ksi_phases[next], "\n")] = '\0';
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    ksi_cur = next;
}

double ksi_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void ksi_deadline_start(double seconds)
{
    if (!(seconds > 0))
        return;
    snprintf(ksi_gave_up, sizeof ksi_gave_up,
             "killshim-inject: gave up after %g s (--deadline) while ", seconds);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ksi_on_deadline;
    sigfillset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {(time_t)seconds, (suseconds_t)((seconds - (time_t)seconds) * 1e6)}};
    if (it.it_value.tv_sec == 0 && it.it_value.tv_usec == 0)
        it.it_value.tv_usec = 1;
    setitimer(ITIMER_REAL, &it, NULL);
}

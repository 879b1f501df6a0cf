/* A library whose constructor takes 3 s: while it runs, the thread that
 * dlopened it holds the loader's lock (attach_target slowload). */
#include <string.h>
#include <time.h>
#include <unistd.h>

static void say(const char *s)
{
    if (write(1, s, strlen(s)) < 0)
        return;
}

__attribute__((constructor)) static void slow_init(void)
{
    say("ctor in\n");
    struct timespec ts = {3, 0};
    while (nanosleep(&ts, &ts) != 0) {}
    say("ctor out\n");
}

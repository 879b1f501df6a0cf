/* Loads the plugin argv[1] with dlopen (argv[2]: "deep" adds RTLD_DEEPBIND,
 * "plain" does not) and lets it start 2 threads.
 * stdout: "plugin tid=T" per plugin thread, then "ready"; stdin: "quit". */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int flags = RTLD_NOW | (strcmp(argv[2], "deep") == 0 ? RTLD_DEEPBIND : 0);
    void *h = dlopen(argv[1], flags);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    int (*start)(int, pthread_t *) = (int (*)(int, pthread_t *))dlsym(h, "plugin_start");
    void (*stop)(void) = (void (*)(void))dlsym(h, "plugin_stop_all");
    pthread_t th[2];
    if (!start || !stop || start(2, th) != 0)
        return 1;
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin))
        if (strncmp(line, "quit", 4) == 0)
            break;
    stop();
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    return 0;
}

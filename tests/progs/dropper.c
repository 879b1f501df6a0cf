/* A service that changes what the kernel lets others do to it, after its
 * threads are running, as real services do (docs/security.md):
 *   dropper setuid UID GID   drop from root to UID/GID (setresuid: the
 *                            kernel marks the process non-dumpable)
 *   dropper nodump           prctl(PR_SET_DUMPABLE, 0)
 *   dropper none             change nothing
 * Two workers wait for their stop flag (killshim_stop_fd) and return; each
 * prints "gone I" when joined. stdout: "worker I tid=T" per worker, then
 * "ready uid=U dumpable=D". stdin: "quit". */
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "shim/killshim.h"

#define NWORKERS 2

static pthread_barrier_t started;

static void *worker(void *arg)
{
    int i = (int)(long)arg;
    printf("worker %d tid=%d\n", i, gettid());
    fflush(stdout);
    pthread_barrier_wait(&started);
    struct pollfd p = {.fd = killshim_stop_fd(), .events = POLLIN};
    while (!killshim_stop_requested())
        poll(&p, 1, 1000);
    return NULL;
}

static void *joiner(void *arg)
{
    pthread_t *th = arg;
    for (int i = 0; i < NWORKERS; i++) {
        pthread_join(th[i], NULL);
        printf("gone %d\n", i);
        fflush(stdout);
    }
    return NULL;
}

static int change(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "nodump") == 0)
        return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (argc > 3 && strcmp(argv[1], "setuid") == 0) {
        uid_t u = (uid_t)atoi(argv[2]);
        gid_t g = (gid_t)atoi(argv[3]);
        return setgroups(0, NULL) || setresgid(g, g, g) || setresuid(u, u, u) ? -1 : 0;
    }
    return argc > 1 && strcmp(argv[1], "none") == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    static pthread_t th[NWORKERS];
    pthread_barrier_init(&started, NULL, NWORKERS + 1);
    for (int i = 0; i < NWORKERS; i++)
        pthread_create(&th[i], NULL, worker, (void *)(long)i);
    pthread_barrier_wait(&started);   /* their lines come before "ready" */
    if (change(argc, argv) != 0) {
        perror("dropper");
        return 2;
    }
    pthread_t j;
    pthread_create(&j, NULL, joiner, th);
    pthread_detach(j);   /* it may still wait for a worker at "quit" */
    printf("ready uid=%d dumpable=%d\n", (int)geteuid(), prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin))
        if (strncmp(line, "quit", 4) == 0)
            break;
    return 0;
}

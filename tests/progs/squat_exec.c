/* The impostor of docs/security.md, for access_test: takes the abstract
 * name the program it then becomes will want (@killshim-PID, its own pid),
 * leaves it to a child that serves a fake killshim, and execs the program
 * with LD_PRELOAD=$KS_TARGET_PRELOAD. The listener's SO_PEERCRED keeps this
 * pid, as a socket made by an earlier process with the target's pid would.
 *   squat_exec PROG [ARGS...]
 * stdout: "squatter PID" (the child that holds the name), then the
 * program's own output. The squatter answers every connection with a
 * killshim banner and every request with a made-up "ok", and logs what it
 * got on stderr ("squatter got: ..."). */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void serve(int ls, pid_t target)
{
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0)
            continue;
        char buf[4096];
        int n = snprintf(buf, sizeof buf, "killshim proto=2 pid=%d\n", (int)target);
        if (write(c, buf, (size_t)n) < 0) {
            close(c);
            continue;
        }
        /* Whatever a client sends is logged (stderr): a fooled injector
         * would show here. */
        ssize_t r;
        while ((r = read(c, buf, sizeof buf)) > 0) {
            fprintf(stderr, "squatter got: %.*s", (int)r, buf);
            if (write(c, "ok gen=1 valid_ms=1000 count=0\n", 31) < 0)
                break;
        }
        close(c);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int n = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "killshim-%d", (int)getpid());
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, len) != 0 || listen(ls, 16) != 0) {
        perror("squat_exec");
        return 2;
    }
    pid_t target = getpid(), kid = fork();
    if (kid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlives the program */
        close(0);
        close(1);
        serve(ls, target);
    }
    close(ls);
    printf("squatter %d\n", (int)kid);
    fflush(stdout);
    const char *pre = getenv("KS_TARGET_PRELOAD");
    if (pre)
        setenv("LD_PRELOAD", pre, 1);
    execv(argv[1], argv + 1);
    perror("squat_exec: exec");
    return 127;
}

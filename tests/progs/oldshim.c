/* Serves @killshim-PID itself, as a shim of protocol version 1 would: a
 * banner, then nothing. For the injector's version-mismatch message
 * (access_test). stdout: "ready" once it listens. */
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(void)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int n = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "killshim-%d", (int)getpid());
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, len) != 0 || listen(ls, 16) != 0)
        return 2;
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        int c = accept(ls, NULL, NULL);
        char buf[256];
        int k = snprintf(buf, sizeof buf, "killshim proto=1 pid=%d\n", (int)getpid());
        if (c >= 0 && write(c, buf, (size_t)k) == k)
            while (read(c, buf, sizeof buf) > 0) {
            }
        if (c >= 0)
            close(c);
    }
}

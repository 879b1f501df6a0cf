/* Loads the Go c-shared library (goshared.go), lets its goroutines run N
 * seconds, prints "ok 1" (tools/realprogs/runtimes.sh). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdint.h>
extern void Start(void); extern uint64_t Count(void);
int main(int argc, char **argv) {
    int secs = argc > 1 ? atoi(argv[1]) : 5;
    Start();
    for (int i = 0; i < secs * 10; i++) usleep(100000);
    printf("ok %d\n", Count() > 0);
    return 0;
}

/* A statically linked program that stays up (it reads stdin): an attach
 * must refuse it (there is no loader to load the shim). */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
    char buf[16];
    puts("ready");
    fflush(stdout);
    return read(0, buf, sizeof buf) < 0;
}

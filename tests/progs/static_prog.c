/* A statically linked program: no dynamic loader, so LD_PRELOAD means
 * nothing to it. The launcher must refuse it rather than run it unshimmed. */
#include <stdio.h>

int main(void)
{
    puts("static_prog ran");
    return 0;
}

/* A C function with a cleanup attribute, built with -fexceptions: its LSDA is
 * read by __gcc_personality_v0 (lsda_test.cc). */
static volatile int ks_sample_sink;

static void ks_sample_cleanup(int *p) { ks_sample_sink = *p; }

__attribute__((noinline)) void ks_lsda_c_sample(void (*fn)(void))
{
    int x __attribute__((cleanup(ks_sample_cleanup))) = 1;
    fn();
    x = 2;
}

void *ks_lsda_c_sample_addr(void) { return (void *)ks_lsda_c_sample; }

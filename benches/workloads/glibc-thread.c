/* glibc-thread: per-thread random malloc/free (the shape of glibc's bench-malloc-thread,
 * which mimalloc-bench runs as `glibc-thread <threads>`). Each of 2 threads owns a working set
 * of 512 slots; each step picks a random slot, verifies and frees its block and allocates a new
 * one: 8-16 B with probability 15/16, else 17-512 B. No block crosses threads. Default:
 * 2 threads x 12 M steps; --quick: 2 x 50 k.
 */
#include "wl.h"

#define SLOTS 512

struct slot { void *p; uint32_t n; uint32_t tag; };
static long steps;

static void *worker(void *arg) {
    wl_rng r = wl_seed((uint64_t)(uintptr_t)arg);
    struct slot s[SLOTS];
    memset(s, 0, sizeof s);
    uint64_t sum = 0;
    for (long i = 0; i < steps; i++) {
        uint64_t x = wl_next(&r);
        struct slot *e = &s[x % SLOTS];
        if (e->p) {
            if (!wl_intact(e->p, e->n, e->tag))
                wl_fail("glibc-thread", "block changed while live");
            sum += ((uint8_t *)e->p)[0];
            free(e->p);
        }
        e->n = ((x >> 20) & 15) ? 8 + (uint32_t)((x >> 24) % 9) : 17 + (uint32_t)((x >> 24) % 496);
        e->tag = (uint32_t)(x >> 32);
        e->p = wl_malloc(e->n);
        wl_stamp(e->p, e->n, e->tag);
    }
    for (int k = 0; k < SLOTS; k++)
        if (s[k].p) {
            if (!wl_intact(s[k].p, s[k].n, s[k].tag))
                wl_fail("glibc-thread", "block changed while live");
            free(s[k].p);
        }
    wl_thread_done();
    return (void *)(uintptr_t)sum;
}

int main(int argc, char **argv) {
    int quick = wl_quick(argc, argv);
    int threads = (int)wl_arg(argc, argv, "threads", 2);
    steps = wl_arg(argc, argv, "steps", quick ? 50000 : 12000000);
    pthread_t t[64];
    if (threads > 64)
        threads = 64;
    for (int k = 0; k < threads; k++)
        pthread_create(&t[k], NULL, worker, (void *)(uintptr_t)(k + 1));
    for (int k = 0; k < threads; k++)
        pthread_join(t[k], NULL);
    wl_ok("glibc-thread", NULL);
    return 0;
}

/* rptest: random sizes over a working set (the shape of rpmalloc's benchmark, which
 * mimalloc-bench runs as `rptest <threads> 0 1 2 500 1000 100 8 16000`: sizes 8-16000 B,
 * a working set, some blocks passed between threads). Each of 2 threads owns a working set of
 * 4096 slots. Each step replaces the block in a random slot with one of 8-16000 B, the size
 * drawn log-uniformly (small sizes dominate). Every LOOP steps a thread exchanges 64 of its
 * blocks with the other thread through a shared mailbox, so those are freed by the thread that
 * did not allocate them. Default: 2 threads x 3 M steps; --quick: 2 x 30 k.
 */
#include "wl.h"

#define SLOTS 4096
#define MIN_SZ 8
#define MAX_SZ 16000
#define LOOP 20000
#define MAIL 64

static long steps;
static _Atomic(void *) mailbox[2][MAIL];

static size_t pick_size(wl_rng *r) {
    /* log-uniform: a random octave in [3, 14), then uniform inside it */
    unsigned oct = 3 + (unsigned)wl_below(r, 11);
    size_t lo = (size_t)1 << oct, hi = ((size_t)1 << (oct + 1)) - 1;
    size_t n = (size_t)wl_range(r, lo, hi);
    return n > MAX_SZ ? MAX_SZ : n;
}

static void *worker(void *arg) {
    int id = (int)(uintptr_t)arg;
    wl_rng r = wl_seed(1000 + (uint64_t)id);
    void **set = calloc(SLOTS, sizeof *set);
    for (long i = 0; i < steps; i++) {
        size_t k = (size_t)wl_below(&r, SLOTS);
        if (set[k])
            wl_obj_free("rptest", set[k], MAX_SZ);
        set[k] = wl_obj_new(pick_size(&r), wl_next(&r));
        if (i % LOOP == LOOP - 1) {
            /* post 64 of ours to the other thread's box; take what it posted to ours */
            for (int m = 0; m < MAIL; m++) {
                size_t s = (size_t)wl_below(&r, SLOTS);
                void *old = atomic_exchange(&mailbox[1 - id][m], set[s]);
                set[s] = old;
                void *in = atomic_exchange(&mailbox[id][m], NULL);
                if (in)
                    wl_obj_free("rptest", in, MAX_SZ);
            }
        }
    }
    for (int k = 0; k < SLOTS; k++)
        if (set[k])
            wl_obj_free("rptest", set[k], MAX_SZ);
    free(set);
    wl_thread_done();
    return NULL;
}

int main(int argc, char **argv) {
    int quick = wl_quick(argc, argv);
    steps = wl_arg(argc, argv, "steps", quick ? 30000 : 3000000);
    pthread_t t[2];
    for (int k = 0; k < 2; k++)
        pthread_create(&t[k], NULL, worker, (void *)(uintptr_t)k);
    for (int k = 0; k < 2; k++)
        pthread_join(t[k], NULL);
    for (int b = 0; b < 2; b++)
        for (int m = 0; m < MAIL; m++) {
            void *p = atomic_exchange(&mailbox[b][m], NULL);
            if (p)
                wl_obj_free("rptest", p, MAX_SZ);
        }
    wl_ok("rptest", NULL);
    return 0;
}

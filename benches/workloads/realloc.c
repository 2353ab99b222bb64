/* realloc: realloc-heavy resizing across size classes. Two threads, each with 1024 live
 * blocks. Each step picks a block, verifies it, and reallocs it: grow by half (45 %), shrink
 * by half (35 %) or jump to a random size (20 %): uniform below 16 B x 2^k, k uniform in 0-11
 * (so up to 32 KiB, small sizes dominate), 1/16 of jumps k in 0-14 (up to 256 KiB).
 * The preserved prefix (up to 32 bytes) must survive the move; then the block is stamped
 * afresh. Default: 2 threads x 600 k steps; --quick: 2 x 10 k.
 */
#include "wl.h"

#define SLOTS 1024
#define MAX_SZ (256 << 10)

struct slot { uint8_t *p; size_t n; uint64_t tag; };
static long steps;

static size_t next_size(wl_rng *r, size_t n) {
    uint64_t x = wl_below(r, 100);
    size_t m;
    if (x < 45)
        m = n + n / 2 + 1;
    else if (x < 80)
        m = n / 2;
    else
        m = (size_t)wl_range(r, 1, (size_t)16 << wl_below(r, (wl_next(r) & 15) ? 12 : 15));
    if (m < 1)
        m = 1;
    return m > MAX_SZ ? MAX_SZ : m;
}

static void *worker(void *arg) {
    wl_rng r = wl_seed((uint64_t)(uintptr_t)arg);
    struct slot *s = calloc(SLOTS, sizeof *s);
    for (int k = 0; k < SLOTS; k++) {
        s[k].n = (size_t)wl_range(&r, 1, 256);
        s[k].tag = wl_next(&r);
        s[k].p = wl_malloc(s[k].n);
        wl_stamp(s[k].p, s[k].n, s[k].tag);
    }
    for (long i = 0; i < steps; i++) {
        struct slot *e = &s[wl_below(&r, SLOTS)];
        if (!wl_intact(e->p, e->n, e->tag))
            wl_fail("realloc", "block changed while live");
        size_t m = next_size(&r, e->n);
        e->p = wl_realloc(e->p, m);
        size_t keep = m < e->n ? m : e->n;
        if (keep > 32)
            keep = 32;
        for (size_t b = 0; b < keep; b++)
            if (e->p[b] != wl_byte(e->tag, b))
                wl_fail("realloc", "realloc lost the preserved prefix");
        e->n = m;
        e->tag = wl_next(&r);
        wl_stamp(e->p, e->n, e->tag);
    }
    for (int k = 0; k < SLOTS; k++) {
        if (!wl_intact(s[k].p, s[k].n, s[k].tag))
            wl_fail("realloc", "block changed while live");
        free(s[k].p);
    }
    free(s);
    wl_thread_done();
    return NULL;
}

int main(int argc, char **argv) {
    int quick = wl_quick(argc, argv);
    int threads = (int)wl_arg(argc, argv, "threads", 2);
    steps = wl_arg(argc, argv, "steps", quick ? 10000 : 600000);
    if (threads < 1 || threads > 64)
        threads = 2;
    pthread_t t[64];
    for (int k = 0; k < threads; k++)
        pthread_create(&t[k], NULL, worker, (void *)(uintptr_t)(k + 3));
    for (int k = 0; k < threads; k++)
        pthread_join(t[k], NULL);
    wl_ok("realloc", NULL);
    return 0;
}

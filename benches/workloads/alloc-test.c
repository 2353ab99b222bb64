/* alloc-test: random sizes with random lifetimes (the shape of the alloc-test benchmark
 * mimalloc-bench runs as `alloc-test 1` and `alloc-test <threads>`). Each thread keeps a timing
 * wheel of 2048 buckets, each a list of live blocks threaded through the blocks themselves.
 * Every tick the current bucket's blocks are verified and freed, then 4 new blocks are
 * allocated, each with a random lifetime of 1-2047 ticks (put in the bucket that many ticks
 * ahead). Sizes: 16 B-1 KiB with probability 15/16, else 1-8 KiB, 1/256 8-64 KiB.
 * Argument --threads=N (1 or 2 in the suite). Default: 1.2 M ticks per thread
 * (either N); --quick: 10 k.
 */
#include "wl.h"

#define WHEEL 2048
#define PER_TICK 4

struct blk { struct blk *next; uint32_t n; uint32_t tag; };
static long ticks;

static size_t pick_size(wl_rng *r) {
    uint64_t x = wl_next(r);
    if ((x & 255) == 0)
        return (size_t)wl_range(r, 8192, 65536);
    if ((x & 15) == 0)
        return (size_t)wl_range(r, 1024, 8192);
    return (size_t)wl_range(r, 16, 1024);
}

static void release(struct blk *b) {
    if (!wl_intact((uint8_t *)b + 16, b->n - 16, b->tag))
        wl_fail("alloc-test", "block changed while live");
    free(b);
}

static void *worker(void *arg) {
    wl_rng r = wl_seed((uint64_t)(uintptr_t)arg);
    struct blk **wheel = calloc(WHEEL, sizeof *wheel);
    for (long t = 0; t < ticks; t++) {
        struct blk **slot = &wheel[t % WHEEL];
        struct blk *b = *slot;
        *slot = NULL;
        while (b) {
            struct blk *nx = b->next;
            release(b);
            b = nx;
        }
        for (int k = 0; k < PER_TICK; k++) {
            size_t n = pick_size(&r);
            struct blk *nb = wl_malloc(n);
            nb->n = (uint32_t)n;
            nb->tag = (uint32_t)wl_next(&r);
            wl_stamp((uint8_t *)nb + 16, n - 16, nb->tag);
            struct blk **dst = &wheel[(t + 1 + wl_below(&r, WHEEL - 1)) % WHEEL];
            nb->next = *dst;
            *dst = nb;
        }
    }
    for (int i = 0; i < WHEEL; i++) {
        struct blk *b = wheel[i];
        while (b) {
            struct blk *nx = b->next;
            release(b);
            b = nx;
        }
    }
    free(wheel);
    wl_thread_done();
    return NULL;
}

int main(int argc, char **argv) {
    int quick = wl_quick(argc, argv);
    int threads = (int)wl_arg(argc, argv, "threads", 1);
    if (threads < 1 || threads > 64)
        threads = 1;
    ticks = wl_arg(argc, argv, "ticks", quick ? 10000 : 1200000);
    pthread_t t[64];
    for (int k = 0; k < threads; k++)
        pthread_create(&t[k], NULL, worker, (void *)(uintptr_t)(k + 7));
    for (int k = 0; k < threads; k++)
        pthread_join(t[k], NULL);
    char extra[32];
    snprintf(extra, sizeof extra, "threads=%d", threads);
    wl_ok("alloc-test", extra);
    return 0;
}

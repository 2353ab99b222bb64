/* test-stress: mimalloc's own stress test shape (test/test-stress.c there: 32 threads,
 * 50 rounds, a shared transfer array). Each round runs THREADS=32 fresh threads at once.
 * Each thread allocates objects with skewed sizes (8-64 B: 90 %, 64 B-1 KiB: 9 %, 1-64 KiB:
 * ~1 %, 256 KiB-1 MiB: 1/1024), retains about half of them in a private array grown by
 * realloc, frees random retained ones, and swaps one in eight into a 1000-slot transfer array
 * shared by all threads (the displaced object is freed by the swapper, usually a block another
 * thread allocated, possibly one that has exited). Retained objects are freed at thread exit;
 * transfer-array objects survive rounds. Default: 32 threads x 50 rounds x 4000 steps;
 * --quick: 8 x 4 x 1000. Objects are self-describing and verified by whoever frees them.
 */
#include "wl.h"

#define TRANSFERS 1000
#define MAX_SZ (1 << 20)

static _Atomic(void *) transfer[TRANSFERS];
static long steps;

static size_t pick_size(wl_rng *r) {
    uint64_t x = wl_next(r) & 1023;
    if (x == 0)
        return (size_t)wl_range(r, 256 << 10, MAX_SZ);
    if (x < 11)
        return (size_t)wl_range(r, 1024, 64 << 10);
    if (x < 103)
        return (size_t)wl_range(r, 64, 1024);
    return (size_t)wl_range(r, 8, 64);
}

static void *stress(void *arg) {
    wl_rng r = wl_seed((uint64_t)(uintptr_t)arg);
    size_t cap = 16, len = 0;
    void **kept = wl_malloc(cap * sizeof *kept);
    for (long i = 0; i < steps; i++) {
        void *p = wl_obj_new(pick_size(&r), wl_next(&r));
        uint64_t what = wl_next(&r);
        if ((what & 7) == 0) {
            void *old = atomic_exchange(&transfer[wl_below(&r, TRANSFERS)], p);
            if (old)
                wl_obj_free("test-stress", old, MAX_SZ);
        } else if (what & 8) {
            if (len == cap) {
                cap *= 2;
                kept = wl_realloc(kept, cap * sizeof *kept);
            }
            kept[len++] = p;
        } else {
            wl_obj_free("test-stress", p, MAX_SZ);
        }
        if (len && (what & 0x30) == 0) {
            size_t k = (size_t)wl_below(&r, len);
            wl_obj_free("test-stress", kept[k], MAX_SZ);
            kept[k] = kept[--len];
        }
    }
    while (len)
        wl_obj_free("test-stress", kept[--len], MAX_SZ);
    free(kept);
    wl_thread_done();
    return NULL;
}

int main(int argc, char **argv) {
    int quick = wl_quick(argc, argv);
    int threads = (int)wl_arg(argc, argv, "threads", quick ? 8 : 32);
    long rounds = wl_arg(argc, argv, "rounds", quick ? 4 : 50);
    steps = wl_arg(argc, argv, "steps", quick ? 1000 : 4000);
    pthread_t t[256];
    if (threads > 256)
        threads = 256;
    for (long round = 0; round < rounds; round++) {
        for (int k = 0; k < threads; k++)
            pthread_create(&t[k], NULL, stress, (void *)(uintptr_t)(round * 257 + k + 1));
        for (int k = 0; k < threads; k++)
            pthread_join(t[k], NULL);
    }
    int left = 0;
    for (int k = 0; k < TRANSFERS; k++) {
        void *p = atomic_exchange(&transfer[k], NULL);
        if (p) {
            wl_obj_free("test-stress", p, MAX_SZ);
            left++;
        }
    }
    char extra[64];
    snprintf(extra, sizeof extra, "transfer_left=%d", left);
    wl_ok("test-stress", extra);
    return 0;
}

/* mstress: thread churn with hand-off (the shape of mimalloc-bench's `mstress 2 50 25`:
 * 2 threads, 50 % of objects handed to other threads, rounds of fresh threads).
 * Each round starts THREADS new threads; each keeps a private array of live objects and,
 * per step, either frees a random private object or allocates a new one (sizes: 8-128 B mostly,
 * 1/16 up to 2 KiB, 1/256 up to 64 KiB); half of the new objects are swapped into a shared
 * transfer array (atomic exchange) and whatever they displace is freed by this thread. Private
 * objects die with their thread; transfer-array objects outlive rounds until displaced.
 * Default: 2 threads x 25 rounds x 60000 steps; --quick: 2 x 3 x 4000.
 * Objects are self-describing and verified by whichever thread frees them.
 */
#include "wl.h"

#define TRANSFERS 1000
#define PRIVATE 2000
#define MAX_SZ (64 * 1024)

static _Atomic(void *) transfer[TRANSFERS];
static long steps;

static size_t pick_size(wl_rng *r) {
    uint64_t x = wl_next(r);
    if ((x & 255) == 0)
        return (size_t)wl_range(r, 2048, MAX_SZ);
    if ((x & 15) == 0)
        return (size_t)wl_range(r, 128, 2048);
    return (size_t)wl_range(r, 8, 128);
}

static void *worker(void *arg) {
    wl_rng r = wl_seed((uint64_t)(uintptr_t)arg);
    void **mine = calloc(PRIVATE, sizeof *mine);
    for (long i = 0; i < steps; i++) {
        size_t k = (size_t)wl_below(&r, PRIVATE);
        if (mine[k] && (wl_next(&r) & 1)) {
            wl_obj_free("mstress", mine[k], MAX_SZ);
            mine[k] = NULL;
            continue;
        }
        void *p = wl_obj_new(pick_size(&r), wl_next(&r));
        if (wl_next(&r) & 1) {
            void *old = atomic_exchange(&transfer[wl_below(&r, TRANSFERS)], p);
            if (old)
                wl_obj_free("mstress", old, MAX_SZ);
        } else {
            if (mine[k])
                wl_obj_free("mstress", mine[k], MAX_SZ);
            mine[k] = p;
        }
    }
    for (int k = 0; k < PRIVATE; k++)
        if (mine[k])
            wl_obj_free("mstress", mine[k], MAX_SZ);
    free(mine);
    wl_thread_done();
    return NULL;
}

int main(int argc, char **argv) {
    int quick = wl_quick(argc, argv);
    int threads = (int)wl_arg(argc, argv, "threads", 2);
    long rounds = wl_arg(argc, argv, "rounds", quick ? 3 : 25);
    steps = wl_arg(argc, argv, "steps", quick ? 4000 : 120000);
    pthread_t t[256];
    if (threads > 256)
        threads = 256;
    for (long round = 0; round < rounds; round++) {
        for (int k = 0; k < threads; k++)
            pthread_create(&t[k], NULL, worker, (void *)(uintptr_t)(round * 1000 + k + 1));
        for (int k = 0; k < threads; k++)
            pthread_join(t[k], NULL);
    }
    int left = 0;
    for (int k = 0; k < TRANSFERS; k++) {
        void *p = atomic_exchange(&transfer[k], NULL);
        if (p) {
            wl_obj_free("mstress", p, MAX_SZ);
            left++;
        }
    }
    char extra[64];
    snprintf(extra, sizeof extra, "transfer_left=%d", left);
    wl_ok("mstress", extra);
    return 0;
}

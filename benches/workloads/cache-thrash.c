/* cache-thrash: active false sharing (Hoard's cache-thrash, which mimalloc-bench runs as
 * `cache-thrash 1 1000 1 2000000 N`). Each worker, on its own, ITER times allocates an 8 B
 * object, writes it REPS times, verifies and frees it. Threads allocating concurrently from
 * one shared cache line would slow each other down. Default: 2 threads x 1000 iterations x
 * 1200000 writes; --quick: 2 x 100 x 5000.
 */
#include "wl.h"

struct job { long iter, reps; int id; uint64_t sum; };

static void *worker(void *arg) {
    struct job *j = arg;
    for (long i = 0; i < j->iter; i++) {
        volatile uint8_t *o = wl_malloc(8);
        for (long r = 0; r < j->reps; r++)
            o[r & 7] = (uint8_t)(r ^ j->id);
        for (int b = 0; b < 8 && b < j->reps; b++) {
            long last = j->reps - 1 - ((j->reps - 1 - b) & 7);
            if (o[b] != (uint8_t)(last ^ j->id))
                wl_fail("cache-thrash", "object changed while written");
        }
        j->sum += o[0];
        free((void *)o);
    }
    wl_thread_done();
    return NULL;
}

int main(int argc, char **argv) {
    int quick = wl_quick(argc, argv);
    int threads = (int)wl_arg(argc, argv, "threads", 2);
    long iter = wl_arg(argc, argv, "iter", quick ? 100 : 1000);
    long reps = wl_arg(argc, argv, "reps", quick ? 5000 : 1200000);
    if (threads < 1 || threads > 64)
        threads = 2;
    struct job j[64];
    pthread_t t[64];
    for (int k = 0; k < threads; k++) {
        j[k] = (struct job){ .iter = iter, .reps = reps, .id = k + 1 };
        pthread_create(&t[k], NULL, worker, &j[k]);
    }
    for (int k = 0; k < threads; k++)
        pthread_join(t[k], NULL);
    wl_ok("cache-thrash", NULL);
    return 0;
}

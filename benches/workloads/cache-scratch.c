/* cache-scratch: passive false sharing (Hoard's cache-scratch, which mimalloc-bench runs as
 * `cache-scratch 1 1000 1 2000000 N`: objects of 1 B allocated by one thread, written by
 * others). The main thread allocates one small object per worker back to back (so they may
 * share a cache line) and hands one to each worker; the worker frees it, then ITER times
 * allocates an 8 B object, writes it REPS times and verifies and frees it. An allocator that
 * recycles the freed objects to the worker keeps sharing the main thread's cache line.
 * Default: 2 threads x 1000 iterations x 1200000 writes; --quick: 2 x 100 x 5000.
 */
#include "wl.h"

struct job { uint8_t *obj; long iter, reps; int id; uint64_t sum; };

static void *worker(void *arg) {
    struct job *j = arg;
    if (j->obj[0] != (uint8_t)(0xA0 + j->id))
        wl_fail("cache-scratch", "handed-over object changed");
    free(j->obj);
    for (long i = 0; i < j->iter; i++) {
        volatile uint8_t *o = wl_malloc(8);
        for (long r = 0; r < j->reps; r++)
            o[r & 7] = (uint8_t)(r + j->id);
        for (int b = 0; b < 8; b++) {
            /* the last write to byte b was at the largest r < reps with r % 8 == b */
            long last = j->reps - 1 - ((j->reps - 1 - b) & 7);
            if (j->reps > b && o[b] != (uint8_t)(last + j->id))
                wl_fail("cache-scratch", "object changed while written");
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
        j[k] = (struct job){ .iter = iter, .reps = reps, .id = k };
        j[k].obj = wl_malloc(1);
        j[k].obj[0] = (uint8_t)(0xA0 + k);
    }
    for (int k = 0; k < threads; k++)
        pthread_create(&t[k], NULL, worker, &j[k]);
    for (int k = 0; k < threads; k++)
        pthread_join(t[k], NULL);
    wl_ok("cache-scratch", NULL);
    return 0;
}

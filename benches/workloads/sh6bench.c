/* sh6bench: size ramps freed in reverse and in forward order (the shape of MicroQuill's
 * SmartHeap sh6bench, which mimalloc-bench runs with 2 x cores threads; sizes 1-1000 B).
 * Each of 4 threads repeats: allocate N blocks whose size ramps 1, 1+S, ... up to 1000 B and
 * wraps; verify and free them in reverse (LIFO) order; allocate N again with a ramp at another
 * phase; free the first half forward (FIFO) and the second half backward from the middle.
 * Default: 4 threads x 200 passes x N = 4000; --quick: 4 x 4 x 1000.
 */
#include "wl.h"

#define MAX_SZ 1000

struct job { long passes, n; int id; };

static size_t ramp(long i, long phase) {
    return (size_t)(1 + ((i * 7 + phase) % MAX_SZ));
}

static void release(void **v, long i, long phase) {
    size_t n = ramp(i, phase);
    if (!wl_intact(v[i], n, (uint64_t)(i * 31 + phase)))
        wl_fail("sh6bench", "block changed while live");
    free(v[i]);
}

static void fill(void **v, long n, long phase) {
    for (long i = 0; i < n; i++) {
        size_t sz = ramp(i, phase);
        v[i] = wl_malloc(sz);
        wl_stamp(v[i], sz, (uint64_t)(i * 31 + phase));
    }
}

static void *worker(void *arg) {
    struct job *j = arg;
    void **v = wl_malloc((size_t)j->n * sizeof *v);
    for (long p = 0; p < j->passes; p++) {
        long phase = (p * 13 + j->id * 101) % MAX_SZ;
        fill(v, j->n, phase);
        for (long i = j->n - 1; i >= 0; i--)
            release(v, i, phase);
        phase = (phase + 500) % MAX_SZ;
        fill(v, j->n, phase);
        long half = j->n / 2;
        for (long i = 0; i < half; i++)
            release(v, i, phase);
        for (long i = j->n - 1; i >= half; i--)
            release(v, i, phase);
    }
    free(v);
    wl_thread_done();
    return NULL;
}

int main(int argc, char **argv) {
    int quick = wl_quick(argc, argv);
    int threads = (int)wl_arg(argc, argv, "threads", 4);
    long passes = wl_arg(argc, argv, "passes", quick ? 4 : 200);
    long n = wl_arg(argc, argv, "n", quick ? 1000 : 4000);
    if (threads < 1 || threads > 64)
        threads = 4;
    struct job j[64];
    pthread_t t[64];
    for (int k = 0; k < threads; k++) {
        j[k] = (struct job){ .passes = passes, .n = n, .id = k };
        pthread_create(&t[k], NULL, worker, &j[k]);
    }
    for (int k = 0; k < threads; k++)
        pthread_join(t[k], NULL);
    wl_ok("sh6bench", NULL);
    return 0;
}

/* xmalloc-test: producers allocate, consumers free (the shape of Lever & Boreham's xmalloc
 * test that mimalloc-bench runs as `xmalloc-test -w N -t 5 -s 64`, plus its 32 KiB + 8 case).
 * PAIRS=2 producer/consumer pairs, each joined by a bounded queue of 16 batches. A producer
 * allocates batches of 256 objects of a fixed size, stamps them and queues the batch (the batch
 * array itself is allocated too); its consumer verifies and frees every object and the batch.
 * Phase 1: 64 B objects, 10000 batches per pair; phase 2: 32,776 B objects (just over a 32 KiB
 * class), 150 batches per pair. --quick: 100 and 10 batches.
 */
#include "wl.h"

#define BATCH 256
#define DEPTH 16

struct batch { size_t n; uint64_t tag; void *obj[BATCH]; };
struct queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct batch *q[DEPTH];
    int head, len;
    long batches;
    size_t size;
    uint64_t seed;
    unsigned long freed;
};

static void *producer(void *arg) {
    struct queue *q = arg;
    wl_rng r = wl_seed(q->seed);
    for (long b = 0; b <= q->batches; b++) {
        struct batch *bt = NULL;
        if (b < q->batches) { /* the last one is NULL: the end */
            bt = wl_malloc(sizeof *bt);
            bt->n = q->size;
            bt->tag = wl_next(&r);
            for (int i = 0; i < BATCH; i++) {
                bt->obj[i] = wl_malloc(q->size);
                wl_stamp(bt->obj[i], q->size, bt->tag + (uint64_t)i);
            }
        }
        pthread_mutex_lock(&q->mu);
        while (q->len == DEPTH)
            pthread_cond_wait(&q->cv, &q->mu);
        q->q[(q->head + q->len++) % DEPTH] = bt;
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
    }
    wl_thread_done();
    return NULL;
}

static void *consumer(void *arg) {
    struct queue *q = arg;
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (q->len == 0)
            pthread_cond_wait(&q->cv, &q->mu);
        struct batch *bt = q->q[q->head];
        q->head = (q->head + 1) % DEPTH;
        q->len--;
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
        if (!bt)
            break;
        for (int i = 0; i < BATCH; i++) {
            if (!wl_intact(bt->obj[i], bt->n, bt->tag + (uint64_t)i))
                wl_fail("xmalloc-test", "object changed between producer and consumer");
            free(bt->obj[i]);
            q->freed++;
        }
        free(bt);
    }
    return NULL;
}

static unsigned long phase(int pairs, size_t size, long batches, uint64_t seed) {
    struct queue qs[16];
    pthread_t tp[16], tc[16];
    unsigned long freed = 0;
    for (int k = 0; k < pairs; k++) {
        memset(&qs[k], 0, sizeof qs[k]);
        pthread_mutex_init(&qs[k].mu, NULL);
        pthread_cond_init(&qs[k].cv, NULL);
        qs[k].batches = batches;
        qs[k].size = size;
        qs[k].seed = seed + (uint64_t)k;
        pthread_create(&tc[k], NULL, consumer, &qs[k]);
        pthread_create(&tp[k], NULL, producer, &qs[k]);
    }
    for (int k = 0; k < pairs; k++) {
        pthread_join(tp[k], NULL);
        pthread_join(tc[k], NULL);
        freed += qs[k].freed;
    }
    return freed;
}

int main(int argc, char **argv) {
    int quick = wl_quick(argc, argv);
    int pairs = (int)wl_arg(argc, argv, "pairs", 2);
    if (pairs < 1 || pairs > 16)
        pairs = 2;
    long small = wl_arg(argc, argv, "small-batches", quick ? 100 : 10000);
    long big = wl_arg(argc, argv, "big-batches", quick ? 10 : 150);
    unsigned long f1 = phase(pairs, 64, small, 1);
    unsigned long f2 = phase(pairs, 32776, big, 100);
    if (f1 != (unsigned long)(pairs * small * BATCH) || f2 != (unsigned long)(pairs * big * BATCH))
        wl_fail("xmalloc-test", "object count");
    char extra[64];
    snprintf(extra, sizeof extra, "freed=%lu", f1 + f2);
    wl_ok("xmalloc-test", extra);
    return 0;
}

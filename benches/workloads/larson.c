/* larson: server churn (Larson & Krishnan's shape, as mimalloc-bench runs it with
 * 8..1000 B, 5000 blocks per thread). Two lanes, each holding 5000 live blocks of 8-1000 B.
 * Every generation a fresh thread per lane takes over its predecessor's blocks and performs
 * OPS replacements (free a random block, allocate a new one of random size), so most frees
 * are of blocks another (by then exited) thread allocated. Fixed op count: time is the measure.
 * Default: 2 lanes x 40 generations x 50000 ops; --quick: 2 x 4 x 5000.
 * Every block is stamped on allocation and verified before it is freed.
 */
#include "wl.h"

#define BLOCKS 5000
#define MIN_SZ 8
#define MAX_SZ 1000

struct slot { void *p; uint32_t n; uint64_t tag; };
struct lane { struct slot s[BLOCKS]; wl_rng r; long ops; unsigned long freed; };

static void check_free(struct slot *s) {
    if (!wl_intact(s->p, s->n, s->tag))
        wl_fail("larson", "block changed while live");
    free(s->p);
}

static void fill(struct lane *l, struct slot *s) {
    s->n = (uint32_t)wl_range(&l->r, MIN_SZ, MAX_SZ);
    s->tag = wl_next(&l->r);
    s->p = wl_malloc(s->n);
    wl_stamp(s->p, s->n, s->tag);
}

static void *generation(void *arg) {
    struct lane *l = arg;
    for (long i = 0; i < l->ops; i++) {
        struct slot *s = &l->s[wl_below(&l->r, BLOCKS)];
        check_free(s);
        fill(l, s);
        l->freed++;
    }
    wl_thread_done();
    return NULL;
}

int main(int argc, char **argv) {
    int quick = wl_quick(argc, argv);
    int lanes = (int)wl_arg(argc, argv, "threads", 2);
    long gens = wl_arg(argc, argv, "gens", quick ? 4 : 40);
    long ops = wl_arg(argc, argv, "ops", quick ? 5000 : 50000);
    struct lane *L = calloc((size_t)lanes, sizeof *L);
    pthread_t *t = calloc((size_t)lanes, sizeof *t);
    for (int k = 0; k < lanes; k++) {
        L[k].r = wl_seed(4141 + (uint64_t)k);
        L[k].ops = ops;
        for (int i = 0; i < BLOCKS; i++)
            fill(&L[k], &L[k].s[i]);
    }
    for (long g = 0; g < gens; g++) {
        for (int k = 0; k < lanes; k++)
            pthread_create(&t[k], NULL, generation, &L[k]);
        for (int k = 0; k < lanes; k++)
            pthread_join(t[k], NULL);
    }
    unsigned long freed = 0;
    for (int k = 0; k < lanes; k++) {
        for (int i = 0; i < BLOCKS; i++)
            check_free(&L[k].s[i]);
        freed += L[k].freed;
    }
    if (freed != (unsigned long)(lanes * gens * ops))
        wl_fail("larson", "op count");
    char extra[64];
    snprintf(extra, sizeof extra, "replaced=%lu", freed);
    wl_ok("larson", extra);
    free(L);
    free(t);
    return 0;
}

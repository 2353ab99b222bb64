/* wl.h: shared helpers of the workload programs in benches/workloads/ (owned by the
 * workload-suite runner, benches/src/bin/workload-suite.rs). A PRNG, block stamping and
 * verification, self-describing objects for cross-thread hand-off, the small-malloc counter the
 * runner compares with HOTSLAB_STATS, and the `--quick` switch. Header-only; every program
 * includes it once. Nothing here allocates except through malloc/realloc/free.
 */
#ifndef WL_H
#define WL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Allocations of at most this size are counted (sizes any slab allocator serves from caches). */
#define WL_COUNTED_MAX 4096

static _Atomic unsigned long wl_total_small;
static __thread unsigned long wl_small;

/* malloc, counting small requests in this thread. */
static inline void *wl_malloc(size_t n) {
    wl_small += (n <= WL_COUNTED_MAX);
    void *p = malloc(n);
    if (!p && n) {
        fprintf(stderr, "malloc(%zu) returned NULL\n", n);
        exit(3);
    }
    return p;
}

static inline void *wl_realloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q && n) {
        fprintf(stderr, "realloc(%zu) returned NULL\n", n);
        exit(3);
    }
    return q;
}

/* Adds this thread's count to the process total; call once at the end of every thread
 * (main included) that allocated. */
static inline void wl_thread_done(void) {
    wl_total_small += wl_small;
    wl_small = 0;
}

/* The final line the runner checks: "<name> ok small_mallocs=<n> <extra>". */
static inline void wl_ok(const char *name, const char *extra) {
    wl_thread_done();
    printf("%s ok small_mallocs=%lu %s\n", name, (unsigned long)wl_total_small, extra ? extra : "");
}

static inline void wl_fail(const char *name, const char *what) {
    fprintf(stderr, "%s: CORRUPTION: %s\n", name, what);
    fflush(stderr);
    exit(2);
}

/* 1 if any argument is --quick. */
static inline int wl_quick(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--quick") == 0)
            return 1;
    return 0;
}

/* Integer argument `--name=value`, or `dflt`. */
static inline long wl_arg(int argc, char **argv, const char *name, long dflt) {
    size_t l = strlen(name);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--", 2) == 0 && strncmp(argv[i] + 2, name, l) == 0 &&
            argv[i][2 + l] == '=')
            return strtol(argv[i] + 3 + l, NULL, 10);
    return dflt;
}

/* xorshift64* */
typedef struct { uint64_t s; } wl_rng;

static inline wl_rng wl_seed(uint64_t seed) {
    wl_rng r = { seed ? seed * 0x9E3779B97F4A7C15ull : 0x2545F4914F6CDD1Dull };
    return r;
}

static inline uint64_t wl_next(wl_rng *r) {
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, n). */
static inline uint64_t wl_below(wl_rng *r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)wl_next(r) * n) >> 64);
}

/* Uniform in [lo, hi]. */
static inline uint64_t wl_range(wl_rng *r, uint64_t lo, uint64_t hi) {
    return lo + wl_below(r, hi - lo + 1);
}

/* The byte a block stamped with `tag` holds at offset i. */
static inline uint8_t wl_byte(uint64_t tag, size_t i) {
    return (uint8_t)((tag >> ((i & 7) * 8)) ^ (i * 0x9Du));
}

/* Writes the first and the last (up to) 32 bytes of [p, p+n) from `tag`. */
static inline void wl_stamp(void *p, size_t n, uint64_t tag) {
    uint8_t *b = p;
    size_t head = n < 32 ? n : 32;
    for (size_t i = 0; i < head; i++)
        b[i] = wl_byte(tag, i);
    for (size_t i = (n > 64 ? n - 32 : head); i < n; i++)
        b[i] = wl_byte(tag, i);
}

/* 1 if [p, p+n) still holds what wl_stamp(p, n, tag) wrote. */
static inline int wl_intact(const void *p, size_t n, uint64_t tag) {
    const uint8_t *b = p;
    size_t head = n < 32 ? n : 32;
    for (size_t i = 0; i < head; i++)
        if (b[i] != wl_byte(tag, i))
            return 0;
    for (size_t i = (n > 64 ? n - 32 : head); i < n; i++)
        if (b[i] != wl_byte(tag, i))
            return 0;
    return 1;
}

/* A self-describing object (n >= 16): [size][tag ^ size][stamped bytes...], so whoever frees
 * it (another thread) can verify it without side tables. */
#define WL_OBJ_MIN 16

static inline void *wl_obj_new(size_t n, uint64_t tag) {
    if (n < WL_OBJ_MIN)
        n = WL_OBJ_MIN;
    uint64_t *w = wl_malloc(n);
    w[0] = n;
    w[1] = tag ^ n;
    wl_stamp((uint8_t *)w + 16, n - 16, tag);
    return w;
}

/* Verifies and frees an object; `max` bounds a plausible size. */
static inline void wl_obj_free(const char *name, void *p, size_t max) {
    uint64_t *w = p;
    size_t n = w[0];
    if (n < WL_OBJ_MIN || n > max)
        wl_fail(name, "object header (size) overwritten");
    if (!wl_intact((uint8_t *)w + 16, n - 16, w[1] ^ n))
        wl_fail(name, "object contents overwritten");
    free(p);
}

#endif

/* Heap misuse, one mistake per case, for the security table of `capi-report` (our own cases,
 * in the classes isoalloc's and mimalloc-bench's security tests use: double free, invalid
 * free, overflow, underflow, use after free, size overflow). Run as `security CASE` under an
 * LD_PRELOADed allocator; `security list` prints "name<TAB>class<TAB>what" per case.
 *
 * A case that the allocator does not stop returns to main, which prints "unnoticed" and exits
 * 3. A request the allocator must refuse (a size that overflows) that it does refuse prints
 * "refused" and exits 4. "ok" makes no mistake and exits 0 (the control). Anything else — an
 * abort, a segfault — is the allocator (or the kernel) stopping the program. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void *volatile sink;
static char target[256] __attribute__((aligned(64)));

#define REFUSED 4

static void *free_it(void *p) {
    free(p);
    return NULL;
}

static int c_ok(void) {
    void *p = malloc(64), *q = malloc(4000), *r = malloc(1 << 20);
    memset(p, 1, 64);
    free(p);
    free(q);
    free(r);
    return 0;
}

/* ---- double free ---- */
static int df_immediate(void) {
    char *p = malloc(64);
    free(p);
    free(p);
    return 3;
}
static int df_after_one_other(void) {
    char *a = malloc(200), *b = malloc(200);
    free(a);
    free(b);
    free(a); /* a is no longer the most recently freed block */
    return 3;
}
static int df_after_many_others(void) {
    enum { N = 100 };
    char *p[N];
    for (int i = 0; i < N; i++) p[i] = malloc(48);
    free(p[0]);
    for (int i = 1; i < N; i++) free(p[i]);
    free(p[0]);
    return 3;
}
static int df_other_thread(void) {
    char *p = malloc(48);
    pthread_t t;
    pthread_create(&t, NULL, free_it, p);
    pthread_join(t, NULL);
    pthread_create(&t, NULL, free_it, p);
    pthread_join(t, NULL);
    return 3;
}
static int df_large(void) {
    char *p = malloc(1 << 20);
    p[0] = 1;
    free(p);
    free(p);
    return 3;
}
static int df_medium(void) {
    char *p = malloc(20000);
    free(p);
    free(p);
    return 3;
}
static int df_after_realloc(void) {
    char *p = malloc(32);
    char *q = realloc(p, 100000); /* moves the block */
    sink = q;
    if (q == p) return 3;
    free(p);
    return 3;
}
static int df_calloc_between(void) {
    char *p = calloc(3, 8);
    free(p);
    sink = malloc(500); /* another size in between */
    free(p);
    return 3;
}
static int df_realloc_freed(void) {
    char *p = malloc(64);
    free(p);
    sink = realloc(p, 128);
    return 3;
}

/* ---- invalid free ---- */
static int free_interior(void) {
    char *p = malloc(64);
    free(p + 16);
    return 3;
}
static int free_interior_large(void) {
    char *p = malloc(1 << 20);
    free(p + 8192);
    return 3;
}
static int free_misaligned(void) {
    char *p = malloc(64);
    free(p + 1);
    return 3;
}
static int free_static(void) {
    free(target + 64);
    return 3;
}
static int free_stack(void) {
    char buf[128];
    sink = buf;
    free(buf + 32);
    return 3;
}
static int free_mmap(void) {
    char *m = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 2;
    free(m + 4096);
    return 3;
}
static int free_near_live(void) {
    /* An address near a live small block that was never handed out. */
    char *p = malloc(32);
    uintptr_t base = (uintptr_t)p & ~(uintptr_t)0xffff;
    free((void *)(base + 32 * 1500));
    return 3;
}
static int free_wild(void) {
    free((void *)(uintptr_t)0x10000);
    return 3;
}
static int realloc_interior(void) {
    char *p = malloc(64);
    sink = realloc(p + 16, 200);
    return 3;
}
static int aligned_interior(void) {
    void *p = NULL;
    if (posix_memalign(&p, 256, 100)) return 2;
    free((char *)p + 64);
    return 3;
}

/* ---- overflow / underflow (then the block is freed and the program goes on) ---- */
static void churn(size_t size) {
    void *keep[64];
    for (int r = 0; r < 200; r++) {
        for (int i = 0; i < 64; i++) keep[i] = malloc(size);
        for (int i = 0; i < 64; i++) free(keep[i]);
    }
}
static int overflow_1(void) {
    char *p = malloc(40);
    p[malloc_usable_size(p)] = 0x41;
    free(p);
    churn(40);
    return 3;
}
static int overflow_asked(void) {
    /* One byte past what was asked for (inside the usable size of most allocators). */
    char *p = malloc(40);
    p[40] = 0x41;
    free(p);
    churn(40);
    return 3;
}
static int overflow_16(void) {
    char *a = malloc(64), *b = malloc(64);
    memset(a, 0x41, malloc_usable_size(a) + 16);
    free(b);
    free(a);
    churn(64);
    return 3;
}
static int overflow_256(void) {
    char *a = malloc(64);
    char *b[8];
    for (int i = 0; i < 8; i++) b[i] = malloc(64);
    memset(a, 0x41, 256);
    for (int i = 0; i < 8; i++) free(b[i]);
    free(a);
    churn(64);
    return 3;
}
static int overflow_medium(void) {
    char *a = malloc(3000), *b = malloc(3000);
    memset(a, 0x41, malloc_usable_size(a) + 32);
    free(b);
    free(a);
    churn(3000);
    return 3;
}
static int underflow_1(void) {
    char *p = malloc(40);
    p[-1] = 0x41;
    free(p);
    churn(40);
    return 3;
}
static int underflow_16(void) {
    char *p = malloc(40);
    memset(p - 16, 0x41, 16);
    free(p);
    churn(40);
    return 3;
}

/* ---- use after free ---- */
static int uaf_write_then_alloc(void) {
    char *p = malloc(40);
    char *keep[64];
    for (int i = 0; i < 64; i++) keep[i] = malloc(40);
    free(p);
    p[3] = 0x11;
    for (int i = 0; i < 64; i++) free(keep[i]);
    for (int i = 0; i < 200000; i++) sink = malloc(40);
    return 3;
}
static int uaf_write_head_then_alloc(void) {
    /* The first 8 bytes: where many allocators keep the freelist link. */
    char *p = malloc(64);
    free(p);
    memset(p, 0x41, 8);
    for (int i = 0; i < 200000; i++) sink = malloc(64);
    return 3;
}
static int uaf_forge_link(void) {
    /* Freelist poisoning: the freed block's first word points at a static buffer; success for
     * the attacker is malloc returning that buffer. */
    void **p = malloc(64);
    sink = malloc(64);
    free(p);
    *p = (void *)target;
    for (int i = 0; i < 200000; i++) {
        void *q = malloc(64);
        if ((char *)q >= target && (char *)q < target + sizeof target) {
            fprintf(stderr, "forged pointer handed out\n");
            return 3;
        }
    }
    return 3;
}
static int uaf_write_large(void) {
    char *p = malloc(1 << 20);
    memset(p, 1, 1 << 20);
    free(p);
    p[4096] = 0x41;
    for (int i = 0; i < 100; i++) sink = malloc(1 << 20);
    return 3;
}
static int uaf_double_alloc(void) {
    /* After a double free, two live allocations must not share a block. */
    char *p = malloc(64);
    free(p);
    free(p);
    char *a = malloc(64), *b = malloc(64);
    if (a == b) fprintf(stderr, "the same block handed out twice\n");
    return 3;
}

/* ---- sizes that must be refused ---- */
static int calloc_overflow(void) {
    void *p = calloc(SIZE_MAX / 8, 16);
    sink = p;
    return p ? 3 : REFUSED;
}
static int malloc_huge(void) {
    void *p = malloc(SIZE_MAX - 4096);
    sink = p;
    return p ? 3 : REFUSED;
}
static int reallocarray_overflow(void) {
    void *p = malloc(16);
    void *q = reallocarray(p, SIZE_MAX / 4, 8);
    sink = q;
    return q ? 3 : REFUSED;
}
static int aligned_huge(void) {
    void *p = NULL;
    int e = posix_memalign(&p, 4096, SIZE_MAX - 8192);
    sink = p;
    return e == 0 && p ? 3 : REFUSED;
}

struct kase {
    const char *name, *class, *what;
    int (*run)(void);
};

static const struct kase cases[] = {
    {"df_immediate", "double free", "free(p); free(p)", df_immediate},
    {"df_after_one_other", "double free", "free(a); free(b); free(a)", df_after_one_other},
    {"df_after_many_others", "double free", "p freed, 99 others freed, p again", df_after_many_others},
    {"df_other_thread", "double free", "freed twice by another thread", df_other_thread},
    {"df_medium", "double free", "20 KB block freed twice", df_medium},
    {"df_large", "double free", "1 MiB block freed twice", df_large},
    {"df_after_realloc", "double free", "the old pointer freed after realloc moved it", df_after_realloc},
    {"df_calloc_between", "double free", "calloc block freed, another size allocated, freed again", df_calloc_between},
    {"df_realloc_freed", "double free", "realloc of a freed block", df_realloc_freed},
    {"free_interior", "invalid free", "free(p + 16) of a 64 B block", free_interior},
    {"free_interior_large", "invalid free", "free(p + 8192) of a 1 MiB block", free_interior_large},
    {"free_misaligned", "invalid free", "free(p + 1)", free_misaligned},
    {"free_static", "invalid free", "free of a static buffer", free_static},
    {"free_stack", "invalid free", "free of a stack buffer", free_stack},
    {"free_mmap", "invalid free", "free of a page the program mmapped", free_mmap},
    {"free_near_live", "invalid free", "free of a never-handed-out address near a live block", free_near_live},
    {"free_wild", "invalid free", "free((void *)0x10000)", free_wild},
    {"realloc_interior", "invalid free", "realloc(p + 16, ...)", realloc_interior},
    {"aligned_interior", "invalid free", "free(p + 64) of a posix_memalign block", aligned_interior},
    {"overflow_1", "overflow", "one byte past the usable size, then free", overflow_1},
    {"overflow_asked", "overflow", "one byte past the 40 bytes asked for, then free", overflow_asked},
    {"overflow_16", "overflow", "16 bytes into the next block, then free both", overflow_16},
    {"overflow_256", "overflow", "256 bytes over a 64 B block and its neighbours", overflow_256},
    {"overflow_medium", "overflow", "32 bytes past a 3000 B block", overflow_medium},
    {"underflow_1", "underflow", "p[-1] written, then free", underflow_1},
    {"underflow_16", "underflow", "the 16 bytes before the block written, then free", underflow_16},
    {"uaf_write_then_alloc", "use after free", "a byte of a freed block written, same size allocated on", uaf_write_then_alloc},
    {"uaf_write_head_then_alloc", "use after free", "the first 8 bytes of a freed block written", uaf_write_head_then_alloc},
    {"uaf_forge_link", "use after free", "freed block's first word aimed at a static buffer", uaf_forge_link},
    {"uaf_write_large", "use after free", "write into a freed 1 MiB block", uaf_write_large},
    {"uaf_double_alloc", "use after free", "double free, then two allocations of that size", uaf_double_alloc},
    {"calloc_overflow", "size overflow", "calloc(SIZE_MAX / 8, 16)", calloc_overflow},
    {"malloc_huge", "size overflow", "malloc(SIZE_MAX - 4096)", malloc_huge},
    {"reallocarray_overflow", "size overflow", "reallocarray(p, SIZE_MAX / 4, 8)", reallocarray_overflow},
    {"aligned_huge", "size overflow", "posix_memalign(4096, SIZE_MAX - 8192)", aligned_huge},
};

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    size_t n = sizeof cases / sizeof cases[0];
    if (!strcmp(c, "list")) {
        for (size_t i = 0; i < n; i++) printf("%s\t%s\t%s\n", cases[i].name, cases[i].class, cases[i].what);
        return 0;
    }
    if (!strcmp(c, "ok")) {
        int rc = c_ok();
        puts("ok");
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c, cases[i].name)) continue;
        int rc = cases[i].run();
        if (rc == REFUSED) {
            puts("refused");
            return REFUSED;
        }
        if (rc == 2) return 2;
        puts("unnoticed");
        return 3;
    }
    fprintf(stderr, "unknown case %s\n", c);
    return 2;
}

/* Multi-threaded malloc torture for libhotslab.so (LD_PRELOAD): threads allocate blocks of
 * mixed sizes with every malloc-family call, hand them to the next thread, which checks and
 * frees them (cross-thread frees); the main thread forks in the middle and the child must
 * allocate, free, start a thread and exit 0. Also checks the C semantics of the edge cases.
 * Prints "mt_fork ok" and exits 0 on success; any failure prints a reason and exits non-zero. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hotslab.h"

/* Resolved at run time from the preloaded libhotslab.so (glibc 2.36 does not have them; under
 * another allocator they stay null and plain free is used). */
#pragma weak free_sized
#pragma weak free_aligned_sized

#define THREADS 8
#define ROUNDS 40000

#define FAIL(...) do { fprintf(stderr, "mt_fork: " __VA_ARGS__); fputc('\n', stderr); exit(2); } while (0)

struct block { struct block *next; uint32_t owner, seq; size_t len; };

/* An intrusive LIFO per thread (through the blocks themselves): pushing never blocks. */
struct queue {
    pthread_mutex_t lock;
    struct block *top;
};

static struct queue queues[THREADS];
static atomic_long progress, freed_remote;

static void fill(struct block *b, uint32_t owner, uint32_t seq, size_t len) {
    b->owner = owner; b->seq = seq; b->len = len;
    unsigned char *p = (unsigned char *)(b + 1);
    for (size_t i = 0; i + sizeof *b < len; i++) p[i] = (unsigned char)(owner * 31 + seq + i);
}

static void check(const struct block *b) {
    const unsigned char *p = (const unsigned char *)(b + 1);
    for (size_t i = 0; i + sizeof *b < b->len; i++)
        if (p[i] != (unsigned char)(b->owner * 31 + b->seq + i))
            FAIL("block of thread %u seq %u corrupted at %zu", b->owner, b->seq, i);
    if (malloc_usable_size((void *)b) < b->len) FAIL("usable size below the request");
}

static struct block *make(uint32_t owner, uint32_t seq) {
    size_t len = sizeof(struct block) + (seq * 2654435761u >> 7) % 2000;
    if (seq % 101 == 0) len = 40000 + seq % 300000; /* large tier */
    struct block *b;
    switch (seq % 6) {
    case 0: b = malloc(len); break;
    case 1: b = calloc(1, len);
        if (b) for (size_t i = 0; i < len; i++) if (((unsigned char *)b)[i]) FAIL("calloc not zeroed");
        break;
    case 2: b = malloc(len / 2 + 1); if (b) b = realloc(b, len); break;
    case 3: { void *p = NULL; if (posix_memalign(&p, 64, len)) p = NULL; b = p;
              if (b && ((uintptr_t)b & 63)) FAIL("posix_memalign alignment"); } break;
    case 4: b = aligned_alloc(256, len); if (b && ((uintptr_t)b & 255)) FAIL("aligned_alloc alignment"); break;
    default: b = reallocarray(NULL, len, 1); break;
    }
    if (!b) FAIL("allocation of %zu bytes failed", len);
    if (len > 8 && ((uintptr_t)b & 15)) FAIL("malloc result not 16-byte aligned");
    fill(b, owner, seq, len);
    return b;
}

static void push(int q, struct block *b) {
    pthread_mutex_lock(&queues[q].lock);
    b->next = queues[q].top;
    queues[q].top = b;
    pthread_mutex_unlock(&queues[q].lock);
}

static struct block *pop(int q) {
    pthread_mutex_lock(&queues[q].lock);
    struct block *b = queues[q].top;
    if (b) queues[q].top = b->next;
    pthread_mutex_unlock(&queues[q].lock);
    return b;
}

static void drain(int q) {
    struct block *b;
    while ((b = pop(q))) {
        check(b);
        if (b->seq % 2 && free_sized) free_sized(b, b->len); else free(b);
        atomic_fetch_add(&freed_remote, 1);
    }
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    struct block *local[16] = {0};
    for (uint32_t i = 0; i < ROUNDS; i++) {
        struct block *b = make((uint32_t)id, i);
        if (i % 2) push((id + 1) % THREADS, b); /* freed by the next thread */
        else {
            struct block *old = local[i % 16];
            local[i % 16] = b;
            if (old) { check(old); free(old); }
        }
        if (i % 8 == 0) drain(id);
        atomic_fetch_add(&progress, 1);
    }
    for (int k = 0; k < 16; k++) if (local[k]) { check(local[k]); free(local[k]); }
    return NULL;
}

static void *child_thread(void *arg) {
    (void)arg;
    for (uint32_t i = 0; i < 2000; i++) { struct block *b = make(99, i); check(b); free(b); }
    return NULL;
}

static int child(void) {
    /* The other threads vanished mid-work: the allocator must still work here. */
    void *keep[500];
    for (int i = 0; i < 500; i++) keep[i] = make(77, (uint32_t)i);
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, NULL)) FAIL("child: pthread_create");
    pthread_join(t, NULL);
    for (int i = 0; i < 500; i++) { check(keep[i]); free(keep[i]); }
    return 0;
}

static void semantics(void) {
    volatile size_t half = SIZE_MAX / 2; /* hidden from the compiler's size checks */
    errno = 0;
    if (calloc(half, 4) || errno != ENOMEM) FAIL("calloc overflow must give NULL/ENOMEM");
    void *p = malloc(10);
    errno = 0;
    if (reallocarray(p, half, 4) || errno != ENOMEM) FAIL("reallocarray overflow");
    if (realloc(p, 0) != NULL) FAIL("realloc(p, 0) must free and return NULL (glibc)");
    free(NULL);
    void *q = NULL;
    if (posix_memalign(&q, 3, 16) != EINVAL || q) FAIL("posix_memalign bad alignment");
    if (posix_memalign(&q, 4, 16) != EINVAL) FAIL("posix_memalign alignment below sizeof(void*)");
    errno = 0;
    if (aligned_alloc(3, 16) || errno != EINVAL) FAIL("aligned_alloc bad alignment");
    errno = 0;
    if (malloc(half * 2 - 100) || errno != ENOMEM) FAIL("huge malloc must give NULL/ENOMEM");
    void *m = memalign(4096, 100), *v = valloc(10), *pv = pvalloc(5000);
    long pg = sysconf(_SC_PAGESIZE);
    if (!m || ((uintptr_t)m & 4095)) FAIL("memalign");
    if (!v || ((uintptr_t)v % pg)) FAIL("valloc");
    if (!pv || ((uintptr_t)pv % pg) || malloc_usable_size(pv) < 2 * (size_t)pg) FAIL("pvalloc");
    free(m); free(v); free(pv);
    void *z = malloc(0);
    free(z);
    char *s = malloc(100);
    strcpy(s, "grow me");
    s = realloc(s, 1 << 20);
    if (!s || strcmp(s, "grow me")) FAIL("realloc lost contents");
    s = realloc(s, 50);
    if (!s || strcmp(s, "grow me")) FAIL("shrinking realloc lost contents");
    if (free_aligned_sized) free_aligned_sized(s, 16, 50); else free(s);
}

/* Before main: a constructor allocates, and loads a library and resolves a symbol (the
 * dynamic loader and dlerror allocate with calloc/malloc on the way). */
static char *early_blocks[64];
static double (*early_cos)(double);

__attribute__((constructor)) static void before_main(void) {
    for (int i = 0; i < 64; i++) {
        early_blocks[i] = malloc(1 + i * 37);
        if (!early_blocks[i]) FAIL("malloc in a constructor");
        memset(early_blocks[i], i, 1 + i * 37);
    }
    void *m = dlopen("libm.so.6", RTLD_NOW);
    if (!m || dlsym(m, "no_such_symbol_here") || !dlerror()) FAIL("dlopen/dlsym/dlerror in a constructor");
    early_cos = (double (*)(double))dlsym(m, "cos");
    if (!early_cos) FAIL("dlsym(cos)");
}

int main(void) {
    if (getenv("MT_FORK_EXPECT_HOTSLAB") &&
        (!dlsym(RTLD_DEFAULT, "hs_malloc") || !free_sized || !free_aligned_sized))
        FAIL("libhotslab.so is not loaded");
    if (early_cos(0.0) != 1.0) FAIL("cos from the constructor");
    for (int i = 0; i < 64; i++) {
        for (int j = 0; j < 1 + i * 37; j++)
            if (early_blocks[i][j] != (char)i) FAIL("constructor block %d corrupted", i);
        free(early_blocks[i]);
    }
    /* Edge-case semantics are hotslab's (glibc's, C17): other allocators differ on some. */
    if (getenv("MT_FORK_EXPECT_HOTSLAB")) semantics();
    for (int i = 0; i < THREADS; i++) pthread_mutex_init(&queues[i].lock, NULL);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i)) FAIL("pthread_create");
    while (atomic_load(&progress) < (long)THREADS * ROUNDS / 2) sched_yield();
    fflush(NULL);
    pid_t pid = fork(); /* in the middle of the traffic */
    if (pid < 0) FAIL("fork");
    if (pid == 0) exit(child());
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
        FAIL("fork child failed: status %#x", status);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++) drain(i);
    if (atomic_load(&freed_remote) != (long)THREADS * ROUNDS / 2)
        FAIL("cross-thread frees: %ld", atomic_load(&freed_remote));
    printf("mt_fork ok threads=%d rounds=%d remote_frees=%ld\n", THREADS, ROUNDS, atomic_load(&freed_remote));
    return 0;
}

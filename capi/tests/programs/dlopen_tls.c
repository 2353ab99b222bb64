/* dlopen 80 libraries, each with a large thread-local array (dynamic TLS: glibc allocates each
 * thread's block for it with malloc/memalign when the thread first touches it, and frees it at
 * thread exit or dlclose), and touch them from new threads, checking every value.
 * Usage: dlopen_tls DIR N  (DIR holds libtls0.so .. libtls<N-1>.so). Prints "dlopen_tls ok ...". */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXLIB 128
static int nlib;
static long (*touch[MAXLIB])(long);
static void *handle[MAXLIB];

static void *worker(void *arg) {
    long seed = (long)(size_t)arg;
    long sum = 0;
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < nlib; i++) {
            long got = touch[i](seed + i);
            if (got != (seed + i) * (i + 1)) {
                fprintf(stderr, "lib %d thread %ld: got %ld\n", i, seed, got);
                exit(2);
            }
            sum += got;
        }
    return (void *)(size_t)(sum != 0);
}

int main(int argc, char **argv) {
    if (argc < 3) return 64;
    nlib = atoi(argv[2]);
    if (nlib < 1 || nlib > MAXLIB) return 64;
    char path[4096];
    for (int i = 0; i < nlib; i++) {
        snprintf(path, sizeof path, "%s/libtls%d.so", argv[1], i);
        handle[i] = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!handle[i]) { fprintf(stderr, "dlopen %s: %s\n", path, dlerror()); return 3; }
        touch[i] = (long (*)(long))dlsym(handle[i], "tls_touch");
        if (!touch[i]) { fprintf(stderr, "dlsym %d: %s\n", i, dlerror()); return 3; }
    }
    int threads = 0;
    for (int wave = 0; wave < 4; wave++) {
        pthread_t t[8];
        for (int k = 0; k < 8; k++)
            if (pthread_create(&t[k], NULL, worker, (void *)(size_t)(wave * 8 + k + 1))) return 4;
        for (int k = 0; k < 8; k++) {
            void *r;
            pthread_join(t[k], &r);
            if (!r) return 5;
            threads++;
        }
    }
    /* The main thread too, then close half the libraries and touch the rest from new threads. */
    if (!worker((void *)1000)) return 5;
    for (int i = nlib / 2; i < nlib; i++) dlclose(handle[i]);
    nlib /= 2;
    pthread_t t[4];
    for (int k = 0; k < 4; k++) pthread_create(&t[k], NULL, worker, (void *)(size_t)(2000 + k));
    for (int k = 0; k < 4; k++) { void *r; pthread_join(t[k], &r); if (!r) return 5; threads++; }
    printf("dlopen_tls ok libs=%s threads=%d\n", argv[2], threads);
    return 0;
}

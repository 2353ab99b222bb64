/* Resident memory after a program frees what it allocated, for the RSS curves of
 * `capi-report`. Run as `rss SCENARIO` under an LD_PRELOADed allocator; prints one line
 *   rss scenario=S peak_kib=P base_kib=B step_ms=100 curve_kib=c0,c1,...,c20
 * with c0 sampled right after the frees (after malloc_trim(0) in `trim`) and then every 100 ms
 * for 2 s of idling (the program makes no call meanwhile).
 *   idle     2 M small objects (32-168 B) allocated, touched, all freed; then idle
 *   trim     the same, then malloc_trim(0) once; then idle
 *   threads  8 threads each allocate and free 3 x 40,000 objects of 16-424 B, then block for
 *            ever (their thread caches stay); the main thread idles */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum { SAMPLES = 21, N = 2 * 1000 * 1000 };

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static long curve[SAMPLES];

static void sample_idle(void) {
    curve[0] = rss_kib();
    for (int t = 1; t < SAMPLES; t++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        curve[t] = rss_kib();
    }
}

static void report(const char *scenario, long base, long peak) {
    printf("rss scenario=%s peak_kib=%ld base_kib=%ld step_ms=100 curve_kib=", scenario, peak, base);
    for (int t = 0; t < SAMPLES; t++) printf("%s%ld", t ? "," : "", curve[t]);
    printf("\n");
    fflush(stdout);
}

static void *objs[N];

static int small_objects(int trim) {
    long base = rss_kib();
    for (int i = 0; i < N; i++) {
        objs[i] = malloc(32 + (size_t)(i % 18) * 8);
        if (!objs[i]) return 1;
        memset(objs[i], 0x5a, 16);
    }
    long peak = rss_kib();
    for (int i = 0; i < N; i++) free(objs[i]);
    if (trim) malloc_trim(0);
    sample_idle();
    report(trim ? "trim" : "idle", base, peak);
    return 0;
}

static int gate[2];
static void *worker(void *arg) {
    enum { M = 40000 };
    void **p = calloc(M, sizeof *p);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < M; i++) {
            p[i] = malloc(16 + (size_t)((i + (long)(size_t)arg) % 18) * 24);
            memset(p[i], 0x33, 8);
        }
        for (int i = 0; i < M; i++) free(p[i]);
    }
    free(p);
    char c = 1;
    if (write(gate[1], &c, 1) != 1) return NULL;
    for (;;) pause();
    return NULL;
}

static int threads(void) {
    long base = rss_kib();
    if (pipe(gate)) return 1;
    pthread_t t[8];
    for (int k = 0; k < 8; k++) pthread_create(&t[k], NULL, worker, (void *)(size_t)k);
    for (int k = 0; k < 8; k++) {
        char c;
        if (read(gate[0], &c, 1) != 1) return 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    sample_idle();
    report("threads", base, ru.ru_maxrss);
    _exit(0); /* the workers block for ever */
}

int main(int argc, char **argv) {
    const char *s = argc > 1 ? argv[1] : "";
    if (!strcmp(s, "idle")) return small_objects(0);
    if (!strcmp(s, "trim")) return small_objects(1);
    if (!strcmp(s, "threads")) return threads();
    fprintf(stderr, "usage: rss idle|trim|threads\n");
    return 2;
}

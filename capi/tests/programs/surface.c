/* glibc's malloc surface under LD_PRELOAD=libhotslab.so, one check per subcommand (argv[1]).
 * Prints "<name> ok ..." and exits 0 on success; any failed check prints what and exits 1.
 * Run by tests/surface.rs. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
/* glibc 2.26+ no longer lets new programs link cfree: look it up (libhotslab.so exports it). */
static void (*cfree_fn)(void *);

static int failures;
#define CHECK(c, ...)                                                                 \
    do {                                                                              \
        if (!(c)) {                                                                   \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #c);             \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
            failures++;                                                               \
        }                                                                             \
    } while (0)

/* Whether `p` is a block of libhotslab.so (the exported symbol resolves into it, and the block
 * has a usable size there). */
static int from_hotslab(void *p) { return p && malloc_usable_size(p) > 0; }

static const char *lib_of(const char *sym) {
    Dl_info info;
    void *f = dlsym(RTLD_DEFAULT, sym);
    if (!f || !dladdr(f, &info) || !info.dli_fname) return "?";
    return info.dli_fname;
}

static int libc_mix(void) {
    const char *syms[] = {"__libc_malloc", "__libc_free", "__libc_calloc", "__libc_realloc",
                          "__libc_memalign", "__libc_valloc", "__libc_pvalloc", "cfree",
                          "malloc_trim", "mallinfo2", "mallinfo", "mallopt", "malloc_stats",
                          "malloc_info"};
    for (size_t i = 0; i < sizeof syms / sizeof *syms; i++)
        CHECK(strstr(lib_of(syms[i]), "libhotslab"), "%s resolves to %s", syms[i], lib_of(syms[i]));
    cfree_fn = (void (*)(void *))dlsym(RTLD_DEFAULT, "cfree");
    CHECK(cfree_fn != NULL, "cfree exported");
    if (!cfree_fn) return 1;
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(round * 37 % 70000) + 1;
        char *a = malloc(n);
        CHECK(from_hotslab(a), "malloc(%zu)", n);
        memset(a, 1, n);
        __libc_free(a);
        char *b = __libc_malloc(n);
        CHECK(from_hotslab(b), "__libc_malloc(%zu)", n);
        memset(b, 2, n);
        b = realloc(b, n * 2);
        CHECK(b && b[n - 1] == 2, "realloc of __libc_malloc block");
        b = __libc_realloc(b, n / 2 + 1);
        CHECK(b && b[n / 2] == 2, "__libc_realloc of realloc block");
        free(b);
        int *c = __libc_calloc(n, sizeof(int));
        CHECK(from_hotslab(c) && c[n - 1] == 0, "__libc_calloc");
        cfree_fn(c);
        void *d = __libc_memalign(256, n);
        CHECK(from_hotslab(d) && (uintptr_t)d % 256 == 0, "__libc_memalign");
        free(d);
        void *e = __libc_valloc(n);
        CHECK(from_hotslab(e) && (uintptr_t)e % 4096 == 0, "__libc_valloc");
        __libc_free(e);
        void *f = __libc_pvalloc(n);
        CHECK(from_hotslab(f) && (uintptr_t)f % 4096 == 0 && malloc_usable_size(f) >= 4096,
              "__libc_pvalloc");
        free(f);
    }
    CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1, "mallopt known");
    CHECK(mallopt(M_ARENA_MAX, 2) == 1, "mallopt known");
    CHECK(mallopt(M_PERTURB, 0x55) == 1, "mallopt known");
    CHECK(mallopt(M_MXFAST, 100000) == 0, "mallopt bad value");
    CHECK(mallopt(12345, 1) == 0, "mallopt unknown");
    printf("libc_mix ok\n");
    return 0;
}

#define SENTINEL 12345

static int errno_kept(void) {
    long calls = 0;
    size_t sizes[] = {0, 1, 8, 9, 16, 24, 100, 500, 1000, 4000, 8192, 20000, 32768, 32769,
                      65536, 100000, 300000, 1 << 20, 5 << 20, 64 << 20};
    void *keep[64] = {0}; /* freed before first set: must start NULL */
    for (int round = 0; round < 60; round++) {
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            size_t n = sizes[i] + (size_t)round * 8;
            errno = SENTINEL;
            void *p = malloc(n);
            CHECK(p && errno == SENTINEL, "malloc(%zu) errno %d", n, errno);
            errno = SENTINEL;
            p = realloc(p, n * 2 + 1);
            CHECK(p && errno == SENTINEL, "realloc errno %d", errno);
            errno = SENTINEL;
            free(p);
            CHECK(errno == SENTINEL, "free errno %d", errno);
            errno = SENTINEL;
            p = calloc(1, n);
            CHECK(p && errno == SENTINEL, "calloc errno %d", errno);
            keep[(round + i) % 64] = p;
            errno = SENTINEL;
            void *q = aligned_alloc(64, n + 64);
            CHECK(q && errno == SENTINEL, "aligned_alloc errno %d", errno);
            errno = SENTINEL;
            CHECK(posix_memalign(&q, 4096, n + 1) == 0 && errno == SENTINEL, "posix_memalign errno %d", errno);
            free(q);
            errno = SENTINEL;
            q = memalign(128, n + 1);
            CHECK(q && errno == SENTINEL, "memalign errno %d", errno);
            free(q);
            errno = SENTINEL;
            q = valloc(n + 1);
            CHECK(q && errno == SENTINEL, "valloc errno %d", errno);
            errno = SENTINEL;
            q = reallocarray(q, 2, n + 1);
            CHECK(q && errno == SENTINEL, "reallocarray errno %d", errno);
            free(q);
            errno = SENTINEL;
            free(keep[(round + i + 7) % 64]);
            keep[(round + i + 7) % 64] = NULL;
            CHECK(errno == SENTINEL, "free errno %d", errno);
            errno = SENTINEL;
            void *r0 = realloc(malloc(n + 1), 0);
            CHECK(r0 == NULL, "realloc(p, 0)");
            CHECK(errno == SENTINEL, "realloc(p, 0) errno %d", errno);
            errno = SENTINEL;
            CHECK(malloc_trim(0) >= 0 && errno == SENTINEL, "malloc_trim errno %d", errno);
            calls += 13;
        }
    }
    for (int i = 0; i < 64; i++) free(keep[i]);
    /* Many threads' worth of small classes, to cross slab refills (slow paths). */
    for (int i = 0; i < 200000; i++) {
        errno = SENTINEL;
        void *p = malloc((size_t)(i % 4096) + 1);
        if (!p || errno != SENTINEL) {
            CHECK(0, "malloc #%d errno %d", i, errno);
            break;
        }
        if (i % 3) free(p);
        calls++;
    }
    printf("errno ok calls=%ld\n", calls);
    return 0;
}

static size_t ram_plus_swap(void) {
    struct sysinfo si;
    if (sysinfo(&si) != 0) return (size_t)1 << 47;
    return ((size_t)si.totalram + si.totalswap) * si.mem_unit;
}

static int huge(void) {
    size_t tib32 = (size_t)32 << 40;
    size_t over = ram_plus_swap() + ((size_t)1 << 30);
    size_t sizes[] = {tib32, over, SIZE_MAX, SIZE_MAX - 4096, (size_t)1 << 62};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        errno = 0;
        CHECK(malloc(n) == NULL && errno == ENOMEM, "malloc(%zu) errno %d", n, errno);
        errno = 0;
        CHECK(calloc(1, n) == NULL && errno == ENOMEM, "calloc(1, %zu) errno %d", n, errno);
        errno = 0;
        CHECK(aligned_alloc(4096, n & ~(size_t)4095) == NULL && errno == ENOMEM, "aligned_alloc(%zu)", n);
        errno = 0;
        CHECK(memalign(64, n) == NULL && errno == ENOMEM, "memalign(%zu)", n);
        errno = 0;
        CHECK(valloc(n) == NULL && errno == ENOMEM, "valloc(%zu)", n);
        void *out = (void *)1;
        CHECK(posix_memalign(&out, 64, n) == ENOMEM && out == (void *)1, "posix_memalign(%zu)", n);
        char *p = malloc(1000);
        memset(p, 7, 1000);
        errno = 0;
        CHECK(realloc(p, n) == NULL && errno == ENOMEM, "realloc to %zu", n);
        CHECK(p[0] == 7 && p[999] == 7 && malloc_usable_size(p) >= 1000, "original block intact");
        char *big = malloc(100000);
        memset(big, 9, 100000);
        errno = 0;
        CHECK(realloc(big, n) == NULL && errno == ENOMEM, "realloc large to %zu", n);
        CHECK(big[0] == 9 && big[99999] == 9, "original large block intact");
        free(big);
        free(p);
    }
    errno = 0;
    CHECK(calloc((size_t)1 << 33, (size_t)1 << 33) == NULL && errno == ENOMEM, "calloc overflow");
    errno = 0;
    CHECK(calloc(tib32 / 16, 16) == NULL && errno == ENOMEM, "calloc 32 TiB");
    errno = 0;
    CHECK(reallocarray(NULL, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM, "reallocarray overflow");
    /* Below the limit still works: 1 GiB, touched at both ends. */
    char *g = malloc((size_t)1 << 30);
    CHECK(g != NULL, "malloc(1 GiB)");
    if (g) {
        g[0] = 1;
        g[((size_t)1 << 30) - 1] = 2;
        free(g);
    }
    printf("huge ok limit=%zu\n", ram_plus_swap());
    return 0;
}

static int aligned(void) {
    for (int shift = 3; shift <= 30; shift++) {
        size_t a = (size_t)1 << shift;
        size_t sizes[] = {1, 24, a, a + 1, 3 * a / 2 + 5, 100000};
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            size_t n = sizes[i];
            void *p = NULL;
            CHECK(posix_memalign(&p, a, n) == 0 && (uintptr_t)p % a == 0, "posix_memalign(%zu, %zu) = %p", a, n, p);
            if (p) {
                ((char *)p)[0] = 1;
                ((char *)p)[n - 1] = 2;
                CHECK(malloc_usable_size(p) >= n, "usable size");
                free(p);
            }
            char *q = aligned_alloc(a, n);
            CHECK(q && (uintptr_t)q % a == 0, "aligned_alloc(%zu, %zu) = %p", a, n, (void *)q);
            if (q) {
                q[0] = 1;
                q[n - 1] = 2;
                q = realloc(q, n + 10);
                CHECK(q && q[0] == (n == 1 ? 2 : 1), "realloc of an aligned block (%zu, %zu): %p %d", a, n, (void *)q, q ? q[0] : -1);
                free(q);
            }
            char *m = memalign(a, n);
            CHECK(m && (uintptr_t)m % a == 0, "memalign(%zu, %zu) = %p", a, n, (void *)m);
            if (m) {
                m[0] = 1;
                m[n - 1] = 2;
                free(m);
            }
        }
    }
    void *p = (void *)1;
    CHECK(posix_memalign(&p, 24, 8) == EINVAL && p == (void *)1, "posix_memalign bad alignment");
    errno = 0;
    CHECK(aligned_alloc(24, 8) == NULL && errno == EINVAL, "aligned_alloc bad alignment");
    printf("aligned ok up to 1 GiB\n");
    return 0;
}

static int info(void) {
    struct mallinfo2 a = mallinfo2();
    enum { N = 10 * 1000 * 1000 / 100 };
    static void *small[N];
    for (int i = 0; i < N; i++) small[i] = malloc(100);
    struct mallinfo2 b = mallinfo2();
    CHECK(b.uordblks >= a.uordblks + 10 * 1000 * 1000, "uordblks %zu -> %zu", a.uordblks, b.uordblks);
    CHECK(b.arena >= a.arena + 10 * 1000 * 1000, "arena %zu -> %zu", a.arena, b.arena);
    CHECK(b.arena >= b.uordblks && b.fordblks == b.arena - b.uordblks, "arena/fordblks");
    void *big[10];
    for (int i = 0; i < 10; i++) big[i] = malloc(1000 * 1000);
    struct mallinfo2 c = mallinfo2();
    CHECK(c.hblks == b.hblks + 10, "hblks %zu -> %zu", b.hblks, c.hblks);
    CHECK(c.hblkhd >= b.hblkhd + 10 * 1000 * 1000, "hblkhd %zu -> %zu", b.hblkhd, c.hblkhd);
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo old = mallinfo();
    CHECK((size_t)old.hblks == c.hblks && old.uordblks > 0, "mallinfo");
    for (int i = 0; i < 10; i++) free(big[i]);
    for (int i = 0; i < N; i++) free(small[i]);
    struct mallinfo2 d = mallinfo2();
    CHECK(d.uordblks + 10 * 1000 * 1000 <= c.uordblks, "uordblks after free %zu -> %zu", c.uordblks, d.uordblks);
    CHECK(d.hblks + 10 == c.hblks, "hblks after free");
    /* malloc_info: XML to a FILE, options must be 0. */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(malloc_info(0, f) == 0, "malloc_info");
    fclose(f);
    CHECK(buf && strstr(buf, "<malloc version=\"1\">") && strstr(buf, "</malloc>") &&
              strstr(buf, "<size from=") && strstr(buf, "type=\"mmap\""),
          "malloc_info output: %s", buf ? buf : "(null)");
    free(buf);
    errno = 0;
    CHECK(malloc_info(1, stdout) == -1 && errno == EINVAL, "malloc_info options");
    malloc_stats();
    printf("info ok arena=%zu uordblks=%zu hblks=%zu hblkhd=%zu\n", c.arena, c.uordblks, c.hblks, c.hblkhd);
    return 0;
}

static long rss_kib(void) {
    long size = 0, res = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &size, &res) != 2) res = -1;
    fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static int trim(void) {
    enum { N = 2 * 1000 * 1000 };
    static void *p[N];
    long base = rss_kib();
    for (int i = 0; i < N; i++) {
        p[i] = malloc(32 + (size_t)(i % 18) * 8); /* 32..168 bytes: ~200 MB of small objects */
        memset(p[i], 0x5a, 16);
    }
    long peak = rss_kib();
    for (int i = 0; i < N; i++) free(p[i]);
    long freed = rss_kib();
    int r = malloc_trim(0);
    long trimmed = rss_kib();
    int again = malloc_trim(0);
    long trimmed2 = rss_kib();
    printf("trim ok base_kib=%ld peak_kib=%ld after_free_kib=%ld after_trim_kib=%ld ret=%d again=%d\n",
           base, peak, freed, trimmed, r, again);
    CHECK(peak - base > 150 * 1024, "the objects are resident (%ld KiB)", peak - base);
    CHECK(r == 1, "malloc_trim released memory");
    /* The second call may return the few slabs rss_kib()'s stdio made meanwhile (ret 1). */
    CHECK(again == 0 || trimmed2 <= trimmed + 1024, "a second malloc_trim: %ld -> %ld KiB", trimmed, trimmed2);
    CHECK(trimmed * 2 < peak, "RSS after trim %ld KiB, peak %ld KiB", trimmed, peak);
    return 0;
}

/* Threads of this process named `name` (from /proc/self/task/<tid>/comm). */
static int threads_named(const char *name) {
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[128], comm[64] = {0};
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(comm, sizeof comm, f)) {
            comm[strcspn(comm, "\n")] = 0;
            n += !strcmp(comm, name);
        }
        fclose(f);
    }
    closedir(d);
    return n;
}

/* Memory given back without any call: 2 M small objects freed, then the program idles (the idle
 * time is what is measured); RSS sampled every 100 ms for 2 s (the RSS curve). */
static int idle(void) {
    enum { N = 2 * 1000 * 1000 };
    static void *p[N];
    long base = rss_kib();
    for (int i = 0; i < N; i++) {
        p[i] = malloc(32 + (size_t)(i % 18) * 8);
        memset(p[i], 0x5a, 16);
    }
    long peak = rss_kib();
    for (int i = 0; i < N; i++) free(p[i]);
    long curve[21];
    curve[0] = rss_kib();
    for (int t = 1; t <= 20; t++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        curve[t] = rss_kib();
    }
    printf("idle ok base_kib=%ld peak_kib=%ld purge_threads=%d curve_kib=", base, peak,
           threads_named("hotslab-purge"));
    for (int t = 0; t <= 20; t++) printf("%s%ld", t ? "," : "", curve[t]);
    printf(" at1500_kib=%ld\n", curve[15]);
    CHECK(peak - base > 150 * 1024, "the objects are resident (%ld KiB)", peak - base);
    return 0;
}

/* Idle threads' caches: 8 threads allocate and free objects of 18 sizes, then block forever;
 * the main thread samples RSS right after they are done and after 1.5 s of idling. */
static int idle_gate[2];
static void *idle_worker(void *arg) {
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
    if (write(idle_gate[1], &c, 1) != 1) return NULL;
    for (;;) pause();
    return NULL;
}

static int idle_threads(void) {
    if (pipe(idle_gate)) return 1;
    pthread_t t[8];
    for (int k = 0; k < 8; k++) pthread_create(&t[k], NULL, idle_worker, (void *)(size_t)k);
    for (int k = 0; k < 8; k++) {
        char c;
        if (read(idle_gate[0], &c, 1) != 1) return 1;
    }
    long done = rss_kib();
    struct timespec ts = {1, 500 * 1000 * 1000};
    nanosleep(&ts, NULL);
    long later = rss_kib();
    printf("idle_threads ok after_free_kib=%ld at1500_kib=%ld purge_threads=%d\n", done, later,
           threads_named("hotslab-purge"));
    fflush(stdout);
    _exit(0);
}

/* fork while the default domain is being built: HOTSLAB_TEST_BUILD_PAUSE makes the build sleep
 * 300 ms; a timer signal forks in the middle of it. The child must be able to allocate (it
 * takes the build over), the parent finishes its own build. */
static volatile pid_t child_pid = -1;

static void child_work(void) {
    size_t total = 0;
    for (int i = 0; i < 100000; i++) {
        char *q = malloc((size_t)(i % 3000) + 1);
        if (!q) _exit(3);
        q[0] = (char)i;
        total += malloc_usable_size(q);
        if (i % 2) free(q);
    }
    void *big = malloc(10 << 20);
    if (!big || malloc_usable_size(big) < (10 << 20)) _exit(4);
    free(big);
    _exit(total > 0 ? 0 : 5);
}

static void on_alarm(int sig) {
    (void)sig;
    pid_t pid = fork();
    if (pid == 0) child_work(); /* never returns into the interrupted build */
    child_pid = pid;
}

static int fork_build(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    timer_t t;
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGALRM;
    if (timer_create(CLOCK_MONOTONIC, &ev, &t) != 0) {
        perror("timer_create");
        return 1;
    }
    struct itimerspec its = {{0, 0}, {0, 100 * 1000 * 1000}};
    timer_settime(t, 0, &its, NULL);
    /* The first allocation of the process (nothing allocated before main in this program). */
    void *first = malloc(64);
    CHECK(first != NULL, "first malloc");
    CHECK(child_pid > 0, "the timer forked during the build (child %d)", (int)child_pid);
    if (child_pid > 0) {
        int status = 0;
        for (int i = 0; i < 200; i++) { /* 10 s */
            if (waitpid(child_pid, &status, WNOHANG) == child_pid) break;
            usleep(50 * 1000);
            if (i == 199) {
                kill(child_pid, SIGKILL);
                waitpid(child_pid, &status, 0);
                CHECK(0, "the child hung");
            }
        }
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    }
    free(first);
    printf("fork_build ok\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int rc = 2;
    if (!strcmp(argv[1], "libc_mix")) rc = libc_mix();
    else if (!strcmp(argv[1], "errno")) rc = errno_kept();
    else if (!strcmp(argv[1], "huge")) rc = huge();
    else if (!strcmp(argv[1], "aligned")) rc = aligned();
    else if (!strcmp(argv[1], "info")) rc = info();
    else if (!strcmp(argv[1], "trim")) rc = trim();
    else if (!strcmp(argv[1], "idle")) rc = idle();
    else if (!strcmp(argv[1], "idle_threads")) rc = idle_threads();
    else if (!strcmp(argv[1], "fork_build")) rc = fork_build();
    fflush(stdout);
    return failures ? 1 : rc;
}

/* preload-guest: the default allocator under real hotplug, as a C program sees it. Runs in the
 * QEMU guest as `LD_PRELOAD=/lib/libhotslab.so /preload-guest`, started by hotslab-guest before
 * the DIMM is added and driven by it over stdin (`added`, `removed`); prints
 * `HOTSLAB CHECK ok|FAIL LD_PRELOAD.<name> <detail>` lines and `HOTSLAB STAGE LD_PRELOAD <stage>`
 * (started, armed, done) on stdout. The same checks as the Rust program (src/bin/guest_alloc.rs):
 * worker threads started under MPOL_BIND {2} ("membind"), MPOL_PREFERRED {2} ("preferred") and
 * MPOL_INTERLEAVE {0,1} ("interleave") on CPU 0, as numactl would start them (the policy and the
 * affinity are set on the spawning thread, inherited, then dropped again); move_pages(2) tells
 * where their objects' pages are; after the removal every object keeps its data, none is on node
 * 2, and the same threads' new allocations succeed elsewhere; and hs_refresh_mempolicy() after a
 * thread changes its own policy. `preload-guest --oneshot <policy>` is the mode run under the real
 * numactl after the add (LD_PRELOAD.numactl.<policy>.*). Plain syscalls, no libnuma. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WHO "LD_PRELOAD"
#define MPOL_DEFAULT 0
#define MPOL_PREFERRED 1
#define MPOL_BIND 2
#define MPOL_INTERLEAVE 3
#define MAXNODE 64
#define WORKERS 2
#define PLACEMENT_MIN_PCT 99.0
#define INTERLEAVE_MIN_PCT 25.0
/* Above this a block is hotslab's large tier (KMALLOC_MAX), not a slab object. */
#define SLAB_MAX (256u << 10)

static int checks, failed;

static void check(const char *name, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void check(const char *name, int ok, const char *fmt, ...) {
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    checks++;
    if (!ok) failed++;
    printf("HOTSLAB CHECK %s " WHO ".%s %s\n", ok ? "ok" : "FAIL", name, detail);
}

static void stage(const char *s) { printf("HOTSLAB STAGE " WHO " %s\n", s); }

/* ---- patterns ---------------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t word(uint64_t tag, uint64_t idx, uint64_t w) {
    return splitmix(tag << 44 ^ idx << 20 ^ w);
}

struct obj {
    uint64_t *p;
    size_t len;
    uint64_t tag, idx;
};

struct batch {
    struct obj *objs;
    size_t n, wanted, failed;
};

static const struct {
    size_t size, count;
} SIZES[] = {{64, 2048},       {256, 1024},      {1024, 256}, {4096, 64},
             {16 << 10, 16},   {128 << 10, 4},   {1 << 20, 2}};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])

static void batch_alloc(struct batch *b, uint64_t tag) {
    size_t total = 0;
    for (size_t k = 0; k < NSIZES; k++) total += SIZES[k].count;
    memset(b, 0, sizeof *b);
    b->objs = calloc(total, sizeof *b->objs);
    if (!b->objs) {
        b->wanted = b->failed = total;
        return;
    }
    for (size_t k = 0; k < NSIZES; k++) {
        for (size_t i = 0; i < SIZES[k].count; i++) {
            b->wanted++;
            uint64_t *p = malloc(SIZES[k].size);
            if (!p) {
                b->failed++;
                continue;
            }
            struct obj *o = &b->objs[b->n++];
            *o = (struct obj){p, SIZES[k].size, tag * 16 + k, i};
            for (size_t w = 0; w < o->len / 8; w++) p[w] = word(o->tag, o->idx, w);
        }
    }
}

static size_t batch_intact(const struct batch *b) {
    size_t ok = 0;
    for (size_t i = 0; i < b->n; i++) {
        const struct obj *o = &b->objs[i];
        size_t w = 0;
        while (w < o->len / 8 && o->p[w] == word(o->tag, o->idx, w)) w++;
        ok += w == o->len / 8;
    }
    return ok;
}

static void batch_free(struct batch *b) {
    for (size_t i = 0; i < b->n; i++) free(b->objs[i].p);
    free(b->objs);
    memset(b, 0, sizeof *b);
}

/* ---- placement --------------------------------------------------------------------------- */

struct placement {
    size_t pages, absent, errors, node[8];
};

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* which: 0 slab objects, 1 large objects, 2 both; only_size: objects of that size (0: any). */
static void place_some(struct placement *pl, struct batch *const *bs, size_t nb, int which,
                       size_t only_size) {
    size_t ps = (size_t)sysconf(_SC_PAGESIZE), cap = 0, n = 0;
    for (size_t j = 0; j < nb; j++)
        for (size_t i = 0; i < bs[j]->n; i++) cap += bs[j]->objs[i].len / ps + 2;
    uintptr_t *pages = malloc((cap ? cap : 1) * sizeof *pages);
    if (!pages) {
        pl->errors++;
        return;
    }
    for (size_t j = 0; j < nb; j++) {
        for (size_t i = 0; i < bs[j]->n; i++) {
            const struct obj *o = &bs[j]->objs[i];
            int large = o->len > SLAB_MAX;
            if ((which != 2 && large != which) || (only_size && o->len != only_size)) continue;
            uintptr_t a = (uintptr_t)o->p & ~(uintptr_t)(ps - 1), end = (uintptr_t)o->p + o->len;
            for (; a < end; a += ps) pages[n++] = a;
        }
    }
    qsort(pages, n, sizeof *pages, cmp_ptr);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || pages[u - 1] != pages[i]) pages[u++] = pages[i];
    int status[512];
    for (size_t i = 0; i < u; i += 512) {
        size_t k = u - i < 512 ? u - i : 512;
        long r = syscall(SYS_move_pages, 0, (unsigned long)k, (void **)&pages[i], NULL, status, 0);
        for (size_t s = 0; s < k; s++) {
            pl->pages++;
            if (r < 0) pl->errors++;
            else if (status[s] >= 0 && status[s] < 8) pl->node[status[s]]++;
            else if (status[s] == -ENOENT) pl->absent++;
            else pl->errors++;
        }
    }
    free(pages);
}

static void place(struct placement *pl, struct batch *const *bs, size_t nb, int which) {
    place_some(pl, bs, nb, which, 0);
}

/* Pages per node for each object size: "64:n0/n1/n2 ...". */
static const char *by_size(struct batch *const *bs, size_t nb, char *buf, size_t len) {
    int off = 0;
    buf[0] = 0;
    for (size_t k = 0; k < NSIZES && off < (int)len; k++) {
        struct placement p = {0};
        place_some(&p, bs, nb, 2, SIZES[k].size);
        off += snprintf(buf + off, len - off, "%s%zu:%zu/%zu/%zu", k ? " " : "", SIZES[k].size,
                        p.node[0], p.node[1], p.node[2]);
    }
    return buf;
}

static size_t present(const struct placement *p) {
    size_t s = 0;
    for (int i = 0; i < 8; i++) s += p->node[i];
    return s;
}

static double pct(const struct placement *p, int node) {
    size_t s = present(p);
    return s ? 100.0 * (double)p->node[node] / (double)s : 0.0;
}

static const char *describe(const struct placement *p, char *buf, size_t len) {
    int off = snprintf(buf, len, "pages=%zu present=%zu [", p->pages, present(p));
    const char *sep = "";
    for (int i = 0; i < 8 && off < (int)len; i++) {
        if (!p->node[i]) continue;
        off += snprintf(buf + off, len - off, "%sn%d=%zu", sep, i, p->node[i]);
        sep = " ";
    }
    if (off < (int)len) snprintf(buf + off, len - off, "] absent=%zu errors=%zu", p->absent, p->errors);
    return buf;
}

/* ---- policies and workers ---------------------------------------------------------------- */

struct policy {
    const char *name;
    int mode;
    unsigned long nodes;
};

static const struct policy POLICIES[] = {
    {"membind", MPOL_BIND, 1ul << 2},
    {"preferred", MPOL_PREFERRED, 1ul << 2},
    {"interleave", MPOL_INTERLEAVE, 3ul},
};
#define NPOLICIES (sizeof POLICIES / sizeof POLICIES[0])

struct worker {
    pthread_t t;
    sem_t ready, go;
    uint64_t tag;
    int seen_mode, only_cpu0;
    unsigned long seen_nodes;
    struct batch phase1, phase2;
};

static int only_cpu0(void) {
    cpu_set_t s;
    return sched_getaffinity(0, sizeof s, &s) == 0 && CPU_ISSET(0, &s) && CPU_COUNT(&s) == 1;
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    unsigned long nodes = 0;
    int mode = -1;
    syscall(SYS_get_mempolicy, &mode, &nodes, (unsigned long)MAXNODE, NULL, 0ul);
    w->seen_mode = mode;
    w->seen_nodes = nodes;
    w->only_cpu0 = only_cpu0();
    batch_alloc(&w->phase1, w->tag);
    sem_post(&w->ready);
    /* Phase 2 runs after the removal, still under the policy the thread started with. */
    while (sem_wait(&w->go) != 0 && errno == EINTR) {
    }
    batch_alloc(&w->phase2, w->tag + 1);
    return NULL;
}

static int wait_sem(sem_t *s) {
    int r;
    while ((r = sem_wait(s)) != 0 && errno == EINTR) {
    }
    return r == 0;
}

/* Starts WORKERS threads under the policy on CPU 0; 0 on success. */
static int spawn_workers(const struct policy *p, struct worker *ws, uint64_t tag, char *err,
                         size_t errlen) {
    cpu_set_t saved, cpu0;
    if (sched_getaffinity(0, sizeof saved, &saved) != 0) {
        snprintf(err, errlen, "sched_getaffinity: %s", strerror(errno));
        return -1;
    }
    CPU_ZERO(&cpu0);
    CPU_SET(0, &cpu0);
    if (sched_setaffinity(0, sizeof cpu0, &cpu0) != 0) {
        snprintf(err, errlen, "sched_setaffinity: %s", strerror(errno));
        return -1;
    }
    if (syscall(SYS_set_mempolicy, p->mode, &p->nodes, (unsigned long)MAXNODE) != 0) {
        snprintf(err, errlen, "set_mempolicy(%s): %s", p->name, strerror(errno));
        sched_setaffinity(0, sizeof saved, &saved);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < WORKERS; i++) {
        struct worker *w = &ws[i];
        memset(w, 0, sizeof *w);
        w->tag = tag + 2 * (uint64_t)i;
        sem_init(&w->ready, 0, 0);
        sem_init(&w->go, 0, 0);
        int e = pthread_create(&w->t, NULL, worker_main, w);
        if (e != 0) {
            snprintf(err, errlen, "pthread_create: %s", strerror(e));
            rc = -1;
            break;
        }
    }
    if (syscall(SYS_set_mempolicy, MPOL_DEFAULT, NULL, 0ul) != 0 ||
        sched_setaffinity(0, sizeof saved, &saved) != 0) {
        snprintf(err, errlen, "restoring the main thread's policy: %s", strerror(errno));
        rc = -1;
    }
    return rc;
}

/* hs_refresh_mempolicy(), on CPU 0 (as the Rust program's refresh phase). A thread makes one
 * small allocation of a size the batch does not use (hotslab reads its policy: default), switches
 * itself to MPOL_BIND {2}, calls hs_refresh_mempolicy() and allocates a batch: its slabs must be
 * on node 2. A second thread allocates a whole batch first (a partly used slab of every size stays
 * in its heap), then does the same; where that second batch lands is reported as a value (the
 * slabs a thread already holds stay in use). */
struct refresher {
    void (*refresh)(void);
    int warm, set_ok, reset_ok;
    struct batch before, after;
};

static void *refresh_main(void *arg) {
    struct refresher *f = arg;
    unsigned long n2 = 1ul << 2;
    void *probe = NULL;
    if (f->warm) batch_alloc(&f->before, 202);
    else probe = malloc(24);
    f->set_ok = syscall(SYS_set_mempolicy, MPOL_BIND, &n2, (unsigned long)MAXNODE) == 0;
    f->refresh();
    batch_alloc(&f->after, f->warm ? 203 : 200);
    f->reset_ok = syscall(SYS_set_mempolicy, MPOL_DEFAULT, NULL, 0ul) == 0;
    f->refresh();
    free(probe);
    return NULL;
}

static int run_on_cpu0(void *(*fn)(void *), void *arg) {
    cpu_set_t saved, cpu0;
    pthread_t t;
    CPU_ZERO(&cpu0);
    CPU_SET(0, &cpu0);
    if (sched_getaffinity(0, sizeof saved, &saved) != 0 ||
        sched_setaffinity(0, sizeof cpu0, &cpu0) != 0)
        return errno;
    int e = pthread_create(&t, NULL, fn, arg);
    sched_setaffinity(0, sizeof saved, &saved);
    if (e == 0) pthread_join(t, NULL);
    return e;
}

static void refresh_phase(struct refresher *fresh, struct refresher *warm) {
    char d[512], d2[512];
    memset(fresh, 0, sizeof *fresh);
    memset(warm, 0, sizeof *warm);
    void (*refresh)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "hs_refresh_mempolicy");
    if (!refresh) {
        check("refresh.policy", 0, "libhotslab.so exports no hs_refresh_mempolicy");
        return;
    }
    fresh->refresh = warm->refresh = refresh;
    warm->warm = 1;
    int e = run_on_cpu0(refresh_main, fresh);
    check("refresh.policy", e == 0 && fresh->set_ok && fresh->reset_ok,
          "thread %s, set_mempolicy(MPOL_BIND, 2) %s, hs_refresh_mempolicy() called",
          e ? strerror(e) : "ran", fresh->set_ok ? "ok" : "failed");
    struct batch *b[1] = {&fresh->after};
    for (int large = 0; large <= 1; large++) {
        struct placement q = {0};
        place(&q, b, 1, large);
        check(large ? "refresh.node2.large" : "refresh.node2.slab",
              e == 0 && fresh->after.failed == 0 && pct(&q, 2) >= PLACEMENT_MIN_PCT && !q.errors,
              "%.2f %% on node 2: %s; pages n0/n1/n2 by size %s", pct(&q, 2),
              describe(&q, d, sizeof d), by_size(b, 1, d2, sizeof d2));
    }
    e = run_on_cpu0(refresh_main, warm);
    b[0] = &warm->before;
    struct placement pl = {0};
    place(&pl, b, 1, 2);
    check("refresh.before_local",
          e == 0 && warm->before.failed == 0 && pct(&pl, 0) >= PLACEMENT_MIN_PCT && !pl.errors,
          "default policy on CPU 0: %.2f %% on node 0: %s", pct(&pl, 0), describe(&pl, d, sizeof d));
    b[0] = &warm->after;
    struct placement q = {0};
    place(&q, b, 1, 0);
    printf("HOTSLAB VALUE " WHO ".refresh.warm_heap_slab %.2f %% on node 2: %s; pages n0/n1/n2 by "
           "size %s\n",
           pct(&q, 2), describe(&q, d, sizeof d), by_size(b, 1, d2, sizeof d2));
}

static int next_command(const char *want) {
    char line[64];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (strcmp(line, want) == 0) return 1;
        check("harness", 0, "expected `%s`, got `%s`", want, line);
        return 0;
    }
    check("harness", 0, "stdin ended before `%s`", want);
    return 0;
}

static int sysfs_has_node(const char *file, int node) {
    char path[128], buf[256];
    snprintf(path, sizeof path, "/sys/devices/system/node/%s", file);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int found = 0;
    if (fgets(buf, sizeof buf, f)) {
        char *s = buf;
        while (*s && *s != '\n') {
            char *e;
            long a = strtol(s, &e, 10), b = a;
            if (e == s) break;
            if (*e == '-') b = strtol(e + 1, &e, 10);
            if (node >= a && node <= b) found = 1;
            s = *e == ',' ? e + 1 : e;
        }
    }
    fclose(f);
    return found;
}

/* <prefix><policy>.alloc and the placement checks of one policy's batches: membind and preferred
 * need >= 99 % of the slab and of the large pages on node 2, interleave >= 25 % on each of nodes 0
 * and 1 and none on node 2. */
static void placement_checks(const char *prefix, const struct policy *p, struct batch *const *bs,
                             size_t nb) {
    char name[128], d[512], d2[512];
    size_t n = 0, want = 0;
    for (size_t i = 0; i < nb; i++) {
        n += bs[i]->n;
        want += bs[i]->wanted;
    }
    snprintf(name, sizeof name, "%s%s.alloc", prefix, p->name);
    check(name, n == want, "%zu/%zu objects", n, want);
    for (int large = 0; large <= 1; large++) {
        struct placement pl = {0};
        place(&pl, bs, nb, large);
        const char *part = large ? "large" : "slab";
        if (p->mode == MPOL_INTERLEAVE) {
            snprintf(name, sizeof name, "%sinterleave.spread.%s", prefix, part);
            check(name,
                  pct(&pl, 0) >= INTERLEAVE_MIN_PCT && pct(&pl, 1) >= INTERLEAVE_MIN_PCT &&
                      pl.node[2] == 0 && pl.errors == 0,
                  "%.1f %% on node 0, %.1f %% on node 1 (each >= %.0f %%): %s; pages n0/n1/n2 by "
                  "size %s",
                  pct(&pl, 0), pct(&pl, 1), INTERLEAVE_MIN_PCT, describe(&pl, d, sizeof d),
                  by_size(bs, nb, d2, sizeof d2));
        } else {
            snprintf(name, sizeof name, "%s%s.node2.%s", prefix, p->name, part);
            check(name, pct(&pl, 2) >= PLACEMENT_MIN_PCT && pl.errors == 0, "%.2f %% on node 2: %s",
                  pct(&pl, 2), describe(&pl, d, sizeof d));
        }
    }
}

static void *oneshot_worker(void *arg) {
    struct worker *w = arg;
    batch_alloc(&w->phase1, w->tag);
    return NULL;
}

/* preload-guest --oneshot <policy>: the whole process was started under numactl with that policy
 * and CPU 0 (after the add); the main thread and WORKERS threads allocate one batch each, checked as
 * LD_PRELOAD.numactl.<policy>.*, then everything is freed. */
static void oneshot(const char *name) {
    const struct policy *p = NULL;
    for (size_t k = 0; k < NPOLICIES; k++)
        if (strcmp(POLICIES[k].name, name) == 0) p = &POLICIES[k];
    if (!p) {
        check("numactl.harness", 0, "no policy `%s`", name);
        return;
    }
    unsigned long nodes = 0;
    int mode = -1;
    long got = syscall(SYS_get_mempolicy, &mode, &nodes, (unsigned long)MAXNODE, NULL, 0ul);
    int cpu0 = only_cpu0();
    struct batch main_batch;
    struct worker ws[WORKERS];
    struct batch *bs[1 + WORKERS] = {&main_batch};
    batch_alloc(&main_batch, 300);
    for (int i = 0; i < WORKERS; i++) {
        memset(&ws[i], 0, sizeof ws[i]);
        ws[i].tag = 302 + 2 * (uint64_t)i;
        if (pthread_create(&ws[i].t, NULL, oneshot_worker, &ws[i]) != 0) ws[i].tag = 0;
    }
    for (int i = 0; i < WORKERS; i++) {
        if (ws[i].tag) pthread_join(ws[i].t, NULL);
        bs[1 + i] = &ws[i].phase1;
    }
    char cname[96];
    snprintf(cname, sizeof cname, "numactl.%s.policy", p->name);
    check(cname, got == 0 && mode == p->mode && nodes == p->nodes && cpu0,
          "process under mode %d nodes %#lx, CPU 0 only: %d; expected mode %d nodes %#lx", mode, nodes,
          cpu0, p->mode, p->nodes);
    placement_checks("numactl.", p, bs, 1 + WORKERS);
    for (int i = 0; i < 1 + WORKERS; i++) batch_free(bs[i]);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    char d[512];

    /* The allocator behind malloc is libhotslab.so. */
    Dl_info info = {0};
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    int active = m && dladdr(m, &info) && info.dli_fname && strstr(info.dli_fname, "libhotslab") &&
                 dlsym(RTLD_DEFAULT, "hs_print_stats");
    char aname[96];
    snprintf(aname, sizeof aname, "%sactive", argc > 2 ? "numactl." : "");
    check(aname, active, "malloc from %s (LD_PRELOAD=%s)", info.dli_fname ? info.dli_fname : "?",
          getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "unset");
    if (argc > 2 && strcmp(argv[1], "--oneshot") == 0) {
        oneshot(argv[2]);
        goto out;
    }

    struct batch pre;
    batch_alloc(&pre, 1);
    int n2 = sysfs_has_node("has_memory", 2);
    check("before_add", n2 == 0 && pre.failed == 0, "kernel has_memory has node 2: %d, %zu/%zu objects",
          n2, pre.n, pre.wanted);
    stage("started");
    if (!next_command("added")) goto out;

    struct worker ws[NPOLICIES][WORKERS];
    char name[96];
    for (size_t k = 0; k < NPOLICIES; k++) {
        const struct policy *p = &POLICIES[k];
        char err[256] = "";
        if (spawn_workers(p, ws[k], 100 + 10 * k, err, sizeof err) != 0) {
            check("harness", 0, "%s workers: %s", p->name, err);
            goto out;
        }
        int policy_ok = 1;
        size_t n = 0, want = 0;
        struct batch *bs[WORKERS];
        int off = 0;
        for (int i = 0; i < WORKERS; i++) {
            struct worker *w = &ws[k][i];
            wait_sem(&w->ready);
            policy_ok &= w->seen_mode == p->mode && w->seen_nodes == p->nodes && w->only_cpu0;
            off += snprintf(d + off, sizeof d - off, " (mode %d nodes %#lx cpu0-only %d)", w->seen_mode,
                            w->seen_nodes, w->only_cpu0);
            n += w->phase1.n;
            want += w->phase1.wanted;
            bs[i] = &w->phase1;
        }
        snprintf(name, sizeof name, "%s.policy", p->name);
        check(name, policy_ok, "%d threads on CPU 0 under mode %d nodes %#lx: saw%s", WORKERS, p->mode,
              p->nodes, d);
        placement_checks("", p, bs, WORKERS);
    }
    struct refresher rf, rw;
    refresh_phase(&rf, &rw);
    stage("armed");
    if (!next_command("removed")) goto out;

    /* Every object allocated before the removal kept its data, and none is left on node 2. */
    struct batch *all[4 + NPOLICIES * WORKERS];
    size_t na = 0, intact = 0, total = 0;
    all[na++] = &pre;
    all[na++] = &rf.after;
    all[na++] = &rw.before;
    all[na++] = &rw.after;
    for (size_t k = 0; k < NPOLICIES; k++)
        for (int i = 0; i < WORKERS; i++) all[na++] = &ws[k][i].phase1;
    for (size_t j = 0; j < na; j++) {
        intact += batch_intact(all[j]);
        total += all[j]->n;
    }
    check("removal.intact", intact == total && total > 0,
          "%zu/%zu objects intact (pre-add, membind, preferred, interleave, refresh)", intact, total);
    struct placement pl = {0};
    place(&pl, all, na, 2);
    check("removal.off_node2", pl.node[2] == 0 && pl.errors == 0 && present(&pl) > 0, "%s",
          describe(&pl, d, sizeof d));

    /* The same threads allocate again, still under their policies: the allocations fall back. */
    for (size_t k = 0; k < NPOLICIES; k++) {
        struct batch *bs[WORKERS];
        size_t n = 0, want = 0, ok = 0;
        for (int i = 0; i < WORKERS; i++) {
            sem_post(&ws[k][i].go);
            pthread_join(ws[k][i].t, NULL);
            bs[i] = &ws[k][i].phase2;
            n += bs[i]->n;
            want += bs[i]->wanted;
            ok += batch_intact(bs[i]);
        }
        struct placement q = {0};
        place(&q, bs, WORKERS, 2);
        snprintf(name, sizeof name, "removal.fallback.%s", POLICIES[k].name);
        check(name, n == want && ok == n && q.node[2] == 0 && q.errors == 0 && present(&q) > 0,
              "%zu/%zu objects, %zu intact, %s", n, want, ok, describe(&q, d, sizeof d));
    }
    struct batch mb;
    batch_alloc(&mb, 2);
    struct batch *mbs[1] = {&mb};
    struct placement q = {0};
    place(&q, mbs, 1, 2);
    check("removal.fallback.default",
          mb.failed == 0 && batch_intact(&mb) == mb.n && q.node[2] == 0 && q.errors == 0,
          "%zu/%zu objects, %s", mb.n, mb.wanted, describe(&q, d, sizeof d));
    size_t freed = mb.n + pre.n + rf.after.n + rw.before.n + rw.after.n;
    batch_free(&rf.after);
    batch_free(&rw.before);
    batch_free(&rw.after);
    batch_free(&mb);
    for (size_t k = 0; k < NPOLICIES; k++)
        for (int i = 0; i < WORKERS; i++) {
            freed += ws[k][i].phase1.n + ws[k][i].phase2.n;
            batch_free(&ws[k][i].phase1);
            batch_free(&ws[k][i].phase2);
        }
    batch_free(&pre);
    printf("HOTSLAB VALUE " WHO ".freed %zu\n", freed);
out:
    printf("HOTSLAB VALUE " WHO ".checks %d (%d failed)\n", checks, failed);
    stage("done");
    return 0;
}

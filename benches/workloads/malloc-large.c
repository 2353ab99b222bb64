/* malloc-large: one thread, large blocks (the shape of mimalloc-bench's malloc-large: blocks of
 * 5-25 MiB, a few live at a time). A ring of 4 slots; each step verifies and frees the block in
 * the next slot and allocates a new one of 5-25 MiB, writing a stamp into every 4 KiB page so
 * the pages are really touched (and verified before the free). Default: 250 steps; --quick: 6.
 */
#include "wl.h"

#define LIVE 4
#define PAGE 4096

struct slot { uint8_t *p; size_t n; uint64_t tag; };

static void touch(struct slot *s) {
    for (size_t off = 0; off + 16 <= s->n; off += PAGE)
        *(uint64_t *)(s->p + off) = s->tag ^ off;
    s->p[s->n - 1] = (uint8_t)s->tag;
}

static void release(struct slot *s) {
    for (size_t off = 0; off + 16 <= s->n; off += PAGE)
        if (*(uint64_t *)(s->p + off) != (s->tag ^ off))
            wl_fail("malloc-large", "page stamp changed");
    if (s->p[s->n - 1] != (uint8_t)s->tag)
        wl_fail("malloc-large", "last byte changed");
    free(s->p);
    s->p = NULL;
}

int main(int argc, char **argv) {
    int quick = wl_quick(argc, argv);
    long steps = wl_arg(argc, argv, "steps", quick ? 6 : 250);
    wl_rng r = wl_seed(25);
    struct slot s[LIVE];
    memset(s, 0, sizeof s);
    size_t total = 0;
    for (long i = 0; i < steps; i++) {
        struct slot *e = &s[i % LIVE];
        if (e->p)
            release(e);
        e->n = (size_t)wl_range(&r, 5u << 20, 25u << 20);
        e->tag = wl_next(&r);
        e->p = wl_malloc(e->n);
        touch(e);
        total += e->n;
    }
    for (int k = 0; k < LIVE; k++)
        if (s[k].p)
            release(&s[k]);
    char extra[64];
    snprintf(extra, sizeof extra, "mib=%zu", total >> 20);
    wl_ok("malloc-large", extra);
    return 0;
}

/* strgrow: gs/espresso-like mixed work, strings grown by realloc (the realloc-heavy side of
 * mimalloc-bench's gs and espresso). One thread keeps 512 open strings. Each step allocates a
 * small temporary token (1-40 chars, malloc'd and freed), appends it to a random open string
 * with realloc to the exact new length (the naive append of interpreters), and keeps an
 * incremental FNV-1a hash of what was appended. With probability 1/64 the string is closed:
 * its bytes are hashed and compared with the incremental hash, then it is freed and a fresh
 * empty one opened. Default: 5 M steps; --quick: 60 k.
 */
#include "wl.h"

#define OPEN 512

struct str { char *s; size_t len; uint64_t h; };

static uint64_t fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

#define FNV0 0xCBF29CE484222325ull

static void close_str(struct str *x) {
    if (fnv(FNV0, x->s, x->len) != x->h || x->s[x->len] != 0)
        wl_fail("strgrow", "string contents changed");
    free(x->s);
    x->s = wl_malloc(1);
    x->s[0] = 0;
    x->len = 0;
    x->h = FNV0;
}

int main(int argc, char **argv) {
    int quick = wl_quick(argc, argv);
    long steps = wl_arg(argc, argv, "steps", quick ? 60000 : 5000000);
    wl_rng r = wl_seed(777);
    struct str *v = calloc(OPEN, sizeof *v);
    for (int k = 0; k < OPEN; k++) {
        v[k].s = wl_malloc(1);
        v[k].s[0] = 0;
        v[k].h = FNV0;
    }
    unsigned long closed = 0;
    size_t longest = 0;
    for (long i = 0; i < steps; i++) {
        uint64_t x = wl_next(&r);
        size_t tl = 1 + (size_t)(x % 40);
        char *tok = wl_malloc(tl + 1);
        for (size_t c = 0; c < tl; c++)
            tok[c] = (char)('a' + (char)((x >> (c % 48)) + c) % 26);
        tok[tl] = 0;
        struct str *s = &v[(x >> 8) % OPEN];
        s->s = wl_realloc(s->s, s->len + tl + 1);
        memcpy(s->s + s->len, tok, tl + 1);
        s->len += tl;
        s->h = fnv(s->h, tok, tl);
        free(tok);
        if (s->len > longest)
            longest = s->len;
        if (((x >> 40) & 63) == 0) {
            close_str(s);
            closed++;
        }
    }
    for (int k = 0; k < OPEN; k++) {
        close_str(&v[k]);
        free(v[k].s);
    }
    free(v);
    char extra[64];
    snprintf(extra, sizeof extra, "closed=%lu longest=%zu", closed, longest);
    wl_ok("strgrow", extra);
    return 0;
}

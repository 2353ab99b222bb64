/* cfrac: many tiny short-lived objects from a real computation (the shape of mimalloc-bench's
 * cfrac, a continued-fraction factorer whose bignums are lists of small nodes). Numbers here
 * are little-endian lists of 32-bit limbs in nodes of 16-64 B (1, 3, ..., 13 limbs per node,
 * cycling); every operation builds fresh lists and frees its temporaries. The computation: the
 * convergents p/q of the continued fraction of sqrt(2) (p' = 2p + p_, q' = 2q + q_), and for
 * every k the Pell identity p^2 - 2 q^2 = (-1)^(k+1), checked with schoolbook bignum
 * multiplication, plus p mod 1e9+7 against a 64-bit recurrence. Default: K = 3300; --quick: 150.
 */
#include "wl.h"
#include <stddef.h>

struct node { struct node *next; uint16_t cnt, cap; uint32_t limb[]; };
typedef struct node *bn;

static unsigned seq;
static unsigned long nodes_made;

struct writer { bn head; struct node *tail; };

static void put(struct writer *w, uint32_t v) {
    if (!w->tail || w->tail->cnt == w->tail->cap) {
        uint16_t cap = (uint16_t)(1 + 2 * (seq++ % 7));
        struct node *n = wl_malloc(offsetof(struct node, limb) + 4u * cap);
        n->next = NULL;
        n->cnt = 0;
        n->cap = cap;
        if (w->tail)
            w->tail->next = n;
        else
            w->head = n;
        w->tail = n;
        nodes_made++;
    }
    w->tail->limb[w->tail->cnt++] = v;
}

struct reader { const struct node *n; unsigned i; };

/* Next limb into *v; 0 once exhausted (then *v = 0). */
static int get(struct reader *r, uint32_t *v) {
    while (r->n && r->i == r->n->cnt) {
        r->n = r->n->next;
        r->i = 0;
    }
    if (!r->n) {
        *v = 0;
        return 0;
    }
    *v = r->n->limb[r->i++];
    return 1;
}

static void bn_free(bn a) {
    while (a) {
        bn nx = a->next;
        if (a->cnt > a->cap || a->cap > 13)
            wl_fail("cfrac", "node header overwritten");
        free(a);
        a = nx;
    }
}

static bn bn_small(uint32_t v) {
    struct writer w = { 0 };
    put(&w, v);
    return w.head;
}

static bn bn_add(bn a, bn b) {
    struct writer w = { 0 };
    struct reader ra = { a, 0 }, rb = { b, 0 };
    uint64_t carry = 0;
    for (;;) {
        uint32_t x, y;
        int more = get(&ra, &x) | get(&rb, &y);
        if (!more && !carry)
            break;
        uint64_t s = (uint64_t)x + y + carry;
        put(&w, (uint32_t)s);
        carry = s >> 32;
    }
    return w.head;
}

/* a * m * 2^(32 shift) */
static bn bn_mul_small(bn a, uint32_t m, unsigned shift) {
    struct writer w = { 0 };
    for (unsigned i = 0; i < shift; i++)
        put(&w, 0);
    struct reader ra = { a, 0 };
    uint64_t carry = 0;
    uint32_t x;
    while (get(&ra, &x)) {
        uint64_t s = (uint64_t)x * m + carry;
        put(&w, (uint32_t)s);
        carry = s >> 32;
    }
    if (carry)
        put(&w, (uint32_t)carry);
    return w.head;
}

static bn bn_mul(bn a, bn b) {
    bn acc = NULL;
    struct reader rb = { b, 0 };
    uint32_t y;
    for (unsigned j = 0; get(&rb, &y); j++) {
        if (!y)
            continue;
        bn t = bn_mul_small(a, y, j);
        bn s = bn_add(acc, t);
        bn_free(acc);
        bn_free(t);
        acc = s;
    }
    return acc;
}

/* Equal as numbers (high zero limbs ignored). */
static int bn_eq(bn a, bn b) {
    struct reader ra = { a, 0 }, rb = { b, 0 };
    for (;;) {
        uint32_t x, y;
        int more = get(&ra, &x) | get(&rb, &y);
        if (x != y)
            return 0;
        if (!more)
            return 1;
    }
}

static uint64_t bn_mod(bn a, uint64_t m) {
    struct reader ra = { a, 0 };
    uint64_t acc = 0, pw = 1;
    uint32_t x;
    while (get(&ra, &x)) {
        acc = (uint64_t)((acc + (unsigned __int128)x * pw) % m);
        pw = (uint64_t)(((unsigned __int128)pw << 32) % m);
    }
    return acc;
}

static unsigned bn_bits(bn a) {
    struct reader ra = { a, 0 };
    unsigned bits = 0, i = 0;
    uint32_t x;
    while (get(&ra, &x)) {
        if (x)
            bits = 32 * i + 32 - (unsigned)__builtin_clz(x);
        i++;
    }
    return bits;
}

/* 2 * x + y */
static bn step(bn x, bn y) {
    bn d = bn_add(x, x);
    bn r = bn_add(d, y);
    bn_free(d);
    return r;
}

int main(int argc, char **argv) {
    int quick = wl_quick(argc, argv);
    long K = wl_arg(argc, argv, "k", quick ? 150 : 3300);
    const uint64_t M = 1000000007u;
    bn p_ = bn_small(1), p = bn_small(3), q_ = bn_small(1), q = bn_small(2), one = bn_small(1);
    uint64_t pm_ = 1, pm = 3;
    for (long k = 1; k <= K; k++) {
        bn pp = bn_mul(p, p), qq = bn_mul(q, q);
        bn two_qq = bn_add(qq, qq);
        bn lhs = (k & 1) ? pp : bn_add(pp, one);
        bn rhs = (k & 1) ? bn_add(two_qq, one) : two_qq;
        if (!bn_eq(lhs, rhs))
            wl_fail("cfrac", "Pell identity p^2 - 2q^2 = +-1 broken");
        if (bn_mod(p, M) != pm)
            wl_fail("cfrac", "p mod 1e9+7 disagrees with the 64-bit recurrence");
        if (lhs != pp)
            bn_free(lhs);
        if (rhs != two_qq)
            bn_free(rhs);
        bn_free(pp);
        bn_free(qq);
        bn_free(two_qq);
        bn np = step(p, p_), nq = step(q, q_);
        bn_free(p_);
        bn_free(q_);
        p_ = p;
        q_ = q;
        p = np;
        q = nq;
        uint64_t npm = (2 * pm + pm_) % M;
        pm_ = pm;
        pm = npm;
    }
    char extra[96];
    snprintf(extra, sizeof extra, "k=%ld p_bits=%u p_mod=%llu nodes=%lu", K, bn_bits(p),
             (unsigned long long)pm, nodes_made);
    bn_free(p_);
    bn_free(p);
    bn_free(q_);
    bn_free(q);
    bn_free(one);
    wl_ok("cfrac", extra);
    return 0;
}

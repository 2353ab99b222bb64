/* glibc-simple: one thread, tight malloc/free loops of small sizes (the shape of glibc's
 * bench-malloc-simple, mimalloc-bench's `glibc-simple`). For each size in 16, 32, 64, 128,
 * 256 B, repeatedly allocate a batch of BATCH blocks, write the first word of each, then verify
 * and free them in allocation order; also a pure malloc-then-free pair loop per size.
 * Default: 250 passes (batch 1000 x 20 repeats + 20000 pairs per size); --quick: 1 pass.
 */
#include "wl.h"

#define BATCH 1000

int main(int argc, char **argv) {
    int quick = wl_quick(argc, argv);
    long passes = wl_arg(argc, argv, "passes", quick ? 1 : 250);
    static const size_t sizes[] = { 16, 32, 64, 128, 256 };
    void *p[BATCH];
    uint64_t sum = 0;
    for (long pass = 0; pass < passes; pass++) {
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            size_t n = sizes[si];
            for (int rep = 0; rep < 20; rep++) {
                for (int i = 0; i < BATCH; i++) {
                    p[i] = wl_malloc(n);
                    ((uint64_t *)p[i])[0] = (uint64_t)i * 0x9E3779B97F4A7C15ull ^ n;
                    ((uint8_t *)p[i])[n - 1] = (uint8_t)i;
                }
                for (int i = 0; i < BATCH; i++) {
                    if (((uint64_t *)p[i])[0] != ((uint64_t)i * 0x9E3779B97F4A7C15ull ^ n) ||
                        ((uint8_t *)p[i])[n - 1] != (uint8_t)i)
                        wl_fail("glibc-simple", "block changed while live");
                    free(p[i]);
                }
            }
            for (int i = 0; i < 20000; i++) {
                uint64_t *q = wl_malloc(n);
                q[0] = (uint64_t)i;
                sum += q[0];
                free(q);
            }
        }
    }
    uint64_t want = (uint64_t)passes * 5 * (20000ull * 19999 / 2);
    if (sum != want)
        wl_fail("glibc-simple", "pair-loop checksum");
    wl_ok("glibc-simple", NULL);
    return 0;
}

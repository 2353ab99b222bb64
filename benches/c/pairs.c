/* pairs: N hot malloc+free pairs through the C ABI, for exact instruction counts under callgrind
 * (`capi-count` runs each pattern twice and takes the difference, so start-up and the warm-up
 * cancel out). Built with -fno-builtin so that the compiler cannot remove a malloc/free pair.
 *
 *   pairs N         "hot": malloc then free at once, 16-256 B cycling in 16-byte steps. Every
 *                   free leaves its size class with no block in use (mimalloc then retires the
 *                   page on every free: its worst case).
 *   pairs N steady  "steady": a live set of 256 blocks of 16-64 B; each step frees the oldest
 *                   and allocates a new one, so no page or slab ever empties (the shape of a
 *                   program's steady state: cfrac, glibc-thread).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIVE 256

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    int steady = argc > 2 && strcmp(argv[2], "steady") == 0;
    unsigned long sum = 0;
    if (steady) {
        void *ring[LIVE];
        size_t sz = 16;
        for (int i = 0; i < LIVE; i++) {
            ring[i] = malloc(sz);
            sz = sz == 64 ? 16 : sz + 16;
        }
        for (long i = 0; i < n; i++) {
            int k = (int)(i % LIVE);
            free(ring[k]);
            ring[k] = malloc(sz);
            sum += (unsigned long)ring[k] & 0xff;
            sz = sz == 64 ? 16 : sz + 16;
        }
        for (int i = 0; i < LIVE; i++) free(ring[i]);
    } else {
        void *warm[64];
        for (int i = 0; i < 64; i++) warm[i] = malloc(16 + (size_t)i * 4);
        for (int i = 0; i < 64; i++) free(warm[i]);
        size_t sz = 16;
        for (long i = 0; i < n; i++) {
            void *p = malloc(sz);
            sum += (unsigned long)p & 0xff;
            free(p);
            sz += 16;
            if (sz > 256) sz = 16;
        }
    }
    printf("%lu\n", sum & 1);
    return 0;
}

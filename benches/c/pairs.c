/* pairs: N hot malloc+free pairs of 16-256 B (cycling in 16-byte steps) through the C ABI, for
 * exact instruction counts under callgrind (`capi-count` runs it twice and takes the
 * difference, so start-up and the warm-up cancel out). Built with -fno-builtin so that the
 * compiler cannot remove a malloc/free pair. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    void *warm[64];
    for (int i = 0; i < 64; i++) warm[i] = malloc(16 + (size_t)i * 4);
    for (int i = 0; i < 64; i++) free(warm[i]);
    size_t sz = 16;
    unsigned long sum = 0;
    for (long i = 0; i < n; i++) {
        void *p = malloc(sz);
        sum += (unsigned long)p & 0xff;
        free(p);
        sz += 16;
        if (sz > 256) sz = 16;
    }
    printf("%lu\n", sum & 1);
    return 0;
}

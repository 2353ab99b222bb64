/* Heap misuse that hotslab's default mode must stop: each subcommand makes one mistake and must
 * not return (the allocator aborts with one line naming the cache, the object and what was
 * wrong). Reaching the end of a case prints "unnoticed" and exits 3. The "ok" case makes no
 * mistake and must exit 0 (the control). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <pthread.h>

static void *volatile sink;

static void *remote_free(void *p) {
    free(p);
    return NULL;
}

int main(int argc, char **argv) {
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "ok")) {
        void *p = malloc(64), *q = malloc(64);
        free(p);
        free(q);
        puts("ok");
        return 0;
    }
    if (!strcmp(c, "double_free")) {
        char *p = malloc(64);
        free(p);
        free(p);
    } else if (!strcmp(c, "double_free_remote")) {
        /* Freed twice by another thread: the second free meets the object at the head of the
         * slab's cross-thread list. */
        char *p = malloc(48);
        pthread_t t;
        pthread_create(&t, NULL, remote_free, p);
        pthread_join(t, NULL);
        pthread_create(&t, NULL, remote_free, p);
        pthread_join(t, NULL);
    } else if (!strcmp(c, "double_free_after_reuse_of_others")) {
        /* free(a); free(b); free(b): b heads the local list. */
        char *a = malloc(200), *b = malloc(200);
        free(a);
        free(b);
        free(b);
    } else if (!strcmp(c, "interior")) {
        char *p = malloc(64);
        free(p + 16);
    } else if (!strcmp(c, "uncarved")) {
        /* A slot of the same slab that was never handed out (far beyond the carved batch). */
        char *p = malloc(32);
        uintptr_t slab = (uintptr_t)p & ~(uintptr_t)0xffff;
        free((void *)(slab + 32 * 1500));
    } else if (!strcmp(c, "overflow")) {
        /* One byte past the 40 bytes asked for (debug and secure modes: caught at free). */
        char *p = malloc(40);
        size_t n = malloc_usable_size(p);
        p[n] = 0x41;
        free(p);
    } else if (!strcmp(c, "underflow")) {
        char *p = malloc(40);
        p[-1] = 0x41;
        free(p);
    } else if (!strcmp(c, "use_after_free")) {
        /* A write into a freed object, then the program goes on allocating that size (debug
         * and secure modes: caught when the slot is reused). */
        char *p = malloc(40);
        char *keep[64];
        for (int i = 0; i < 64; i++) keep[i] = malloc(40);
        free(p);
        p[3] = 0x11;
        for (int i = 0; i < 64; i++) free(keep[i]);
        for (int i = 0; i < 200000; i++) (void)!malloc(40);
    } else if (!strcmp(c, "foreign")) {
        static char buf[64];
        free(buf + 8);
    } else {
        fprintf(stderr, "unknown case %s\n", c);
        return 2;
    }
    puts("unnoticed");
    return 3;
}

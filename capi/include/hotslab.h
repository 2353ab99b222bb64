/* hotslab.h: the C interface of libhotslab.so, the hotslab slab allocator (NUMA- and
 * memory-hotplug-aware) as a malloc for C programs.
 *
 * Two ways to use it:
 *   - LD_PRELOAD=/path/to/libhotslab.so program   (replaces malloc & co. for the whole process)
 *   - link with -lhotslab: the standard names are replaced too, and the hs_* names below are
 *     available for calling hotslab explicitly.
 *
 * Semantics are glibc's: failures return NULL with errno = ENOMEM; calloc/reallocarray check
 * for overflow; free(NULL) does nothing; realloc(p, 0) frees p and returns NULL;
 * posix_memalign returns EINVAL for an alignment that is not a power of two multiple of
 * sizeof(void *); aligned_alloc sets EINVAL for one that is not a power of two; memalign rounds
 * the alignment up to a power of two. Blocks above 8 bytes are 16-byte aligned. Freeing a
 * pointer hotslab never handed out prints a message and aborts.
 *
 * Environment (read once, when the allocator starts):
 *   HOTSLAB_MODE=onlinemems|legacy|slabnodes   locking mode of the default domain
 *   HOTSLAB_NODES=n                            simulated topology of n nodes over the real ones
 *   HOTSLAB_STATS=1 | /absolute/path           slabinfo table at exit (stderr, or appended)
 */
#ifndef HOTSLAB_H
#define HOTSLAB_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

void *hs_malloc(size_t size);
void hs_free(void *p);
void *hs_calloc(size_t n, size_t size);
void *hs_realloc(void *p, size_t size);
void *hs_reallocarray(void *p, size_t n, size_t size);
int hs_posix_memalign(void **out, size_t align, size_t size);
void *hs_aligned_alloc(size_t align, size_t size);
void *hs_memalign(size_t align, size_t size);
void *hs_valloc(size_t size);
void *hs_pvalloc(size_t size);
size_t hs_malloc_usable_size(void *p);
void hs_free_sized(void *p, size_t size);
void hs_free_aligned_sized(void *p, size_t align, size_t size);

/* Writes the slabinfo table (what HOTSLAB_STATS prints at exit) to fd without allocating.
 * Returns 0 on success, -1 otherwise. */
int hs_print_stats(int fd);

/* C23 names that older C libraries do not declare (libhotslab.so exports them). */
#if !defined(__STDC_VERSION__) || __STDC_VERSION__ < 202311L
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);
#endif

#ifdef __cplusplus
}
#endif

#endif /* HOTSLAB_H */

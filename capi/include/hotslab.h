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
 * pointer hotslab never handed out (or an interior pointer) prints a message and aborts.
 *
 * errno is left alone by every call that succeeds (and by free); a failure sets ENOMEM (or
 * EINVAL where glibc does). A request larger than physical RAM plus swap (sysinfo(2), read
 * once) cannot ever be backed and fails with ENOMEM at once (realloc leaves the block intact).
 *
 * Also exported, as glibc: __libc_malloc, __libc_free, __libc_calloc, __libc_realloc,
 * __libc_memalign, __libc_valloc, __libc_pvalloc, cfree; malloc_trim (gives back every empty
 * slab and cached large mapping; 1 if memory was released, else 0); mallinfo2/mallinfo
 * (arena = bytes of slabs, uordblks = bytes of slab slots in use, fordblks = arena - uordblks,
 * ordblks = free slots, hblks/hblkhd = live large objects and their mapped bytes, keepcost =
 * cached large mappings, the rest 0); mallopt (glibc's parameters accepted and ignored: 1; an
 * unknown one: 0); malloc_stats (glibc's summary and the slabinfo table on stderr);
 * malloc_info (glibc's XML; options must be 0). And the C++ operators new/new[]/delete/
 * delete[] in all their forms (sized, nothrow, align_val_t), under their Itanium-ABI names:
 * a failing throwing new calls the new-handler and throws std::bad_alloc (aborting with
 * "hotslab: operator new: out of memory" if libstdc++ is not loaded).
 *
 * Environment (read once, when the allocator starts):
 *   HOTSLAB_MODE=onlinemems|legacy|slabnodes   locking mode of the default domain
 *   HOTSLAB_NODES=n                            simulated topology of n nodes over the real ones
 *   HOTSLAB_STATS=1 | /absolute/path           slabinfo table at exit (stderr, or appended)
 *   HOTSLAB_DEBUG=1 | letters ZPH              debug mode of the kmalloc caches
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

/* malloc_trim: returns 1 if memory was released, 0 otherwise (pad is ignored). */
int hs_malloc_trim(size_t pad);

/* Writes the slabinfo table (what HOTSLAB_STATS prints at exit) to fd without allocating.
 * Returns 0 on success, -1 otherwise. */
int hs_print_stats(int fd);

/* Re-reads the calling thread's memory policy (get_mempolicy) and cpuset for its next slabs,
 * e.g. after set_mempolicy() or numa_set_membind(); hotslab otherwise reads them once per
 * thread. Never allocates. */
void hs_refresh_mempolicy(void);

/* C23 names that older C libraries do not declare (libhotslab.so exports them). */
#if !defined(__STDC_VERSION__) || __STDC_VERSION__ < 202311L
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);
#endif

#ifdef __cplusplus
}
#endif

#endif /* HOTSLAB_H */

// Every C++ allocation operator under LD_PRELOAD=libhotslab.so: each must resolve into
// libhotslab.so (not libstdc++), return hotslab blocks with the right alignment, and the
// throwing forms must call the new-handler and throw std::bad_alloc on failure.
// Prints "cxx ok ..." and exits 0, or prints what failed and exits 1. Run by tests/surface.rs.
#include <dlfcn.h>
#include <malloc.h>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <new>

static int failures;
#define CHECK(c, what)                                                        \
    do {                                                                      \
        if (!(c)) {                                                           \
            std::fprintf(stderr, "FAIL line %d: %s (%s)\n", __LINE__, #c, what); \
            failures++;                                                       \
        }                                                                     \
    } while (0)

static const char *lib_of(const char *sym) {
    Dl_info info;
    void *f = dlsym(RTLD_DEFAULT, sym);
    if (!f || !dladdr(f, &info) || !info.dli_fname) return "?";
    return info.dli_fname;
}

static bool ours(void *p, std::size_t n) { return p && malloc_usable_size(p) >= n; }

static int handler_calls;
static void handler() {
    if (++handler_calls == 3) std::set_new_handler(nullptr);
}

struct alignas(256) Wide {
    char bytes[300];
};

int main() {
    const char *syms[] = {
        "_Znwm", "_Znam", "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm", "_ZnwmRKSt9nothrow_t",
        "_ZnamRKSt9nothrow_t", "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t",
        "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t", "_ZnwmSt11align_val_tRKSt9nothrow_t",
        "_ZnamSt11align_val_tRKSt9nothrow_t", "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t",
        "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t",
        "_ZdlPvSt11align_val_tRKSt9nothrow_t", "_ZdaPvSt11align_val_tRKSt9nothrow_t"};
    for (const char *s : syms) CHECK(std::strstr(lib_of(s), "libhotslab"), s);

    long n = 0;
    for (std::size_t size : {1ul, 8ul, 24ul, 100ul, 4000ul, 40000ul, 1ul << 20}) {
        void *a = ::operator new(size);
        CHECK(ours(a, size), "new");
        std::memset(a, 1, size);
        ::operator delete(a);
        void *b = ::operator new[](size);
        CHECK(ours(b, size), "new[]");
        ::operator delete[](b);
        void *c = ::operator new(size);
        ::operator delete(c, size);
        void *d = ::operator new[](size);
        ::operator delete[](d, size);
        void *e = ::operator new(size, std::nothrow);
        CHECK(ours(e, size), "nothrow new");
        ::operator delete(e, std::nothrow);
        void *f = ::operator new[](size, std::nothrow);
        CHECK(ours(f, size), "nothrow new[]");
        ::operator delete[](f, std::nothrow);
        for (std::size_t al : {16ul, 64ul, 4096ul, 1ul << 16, 1ul << 21}) {
            std::align_val_t av{al};
            void *g = ::operator new(size, av);
            CHECK(ours(g, size) && reinterpret_cast<std::uintptr_t>(g) % al == 0, "aligned new");
            ::operator delete(g, av);
            void *h = ::operator new[](size, av);
            CHECK(ours(h, size) && reinterpret_cast<std::uintptr_t>(h) % al == 0, "aligned new[]");
            ::operator delete[](h, av);
            void *i = ::operator new(size, av);
            ::operator delete(i, size, av);
            void *j = ::operator new[](size, av);
            ::operator delete[](j, size, av);
            void *k = ::operator new(size, av, std::nothrow);
            CHECK(ours(k, size) && reinterpret_cast<std::uintptr_t>(k) % al == 0, "aligned nothrow new");
            ::operator delete(k, av, std::nothrow);
            void *l = ::operator new[](size, av, std::nothrow);
            CHECK(ours(l, size) && reinterpret_cast<std::uintptr_t>(l) % al == 0, "aligned nothrow new[]");
            ::operator delete[](l, av, std::nothrow);
            n += 6;
        }
        n += 6;
    }
    // Through new-expressions too (the compiler picks the sized / aligned forms).
    Wide *w = new Wide[3];
    CHECK(reinterpret_cast<std::uintptr_t>(w) % 256 == 0 && ours(w, 900), "new Wide[3]");
    delete[] w;
    Wide *one = new Wide;
    CHECK(reinterpret_cast<std::uintptr_t>(one) % 256 == 0, "new Wide");
    delete one;

    // Failure: nothrow gives null; throwing forms call the handler, then throw bad_alloc.
    const std::size_t huge = std::size_t(1) << 45;
    CHECK(::operator new(huge, std::nothrow) == nullptr, "nothrow huge");
    CHECK(::operator new[](huge, std::align_val_t{64}, std::nothrow) == nullptr, "aligned nothrow huge");
    bool caught = false;
    std::set_new_handler(handler);
    try {
        void *p = ::operator new(huge);
        ::operator delete(p);
    } catch (const std::bad_alloc &e) {
        caught = std::strcmp(e.what(), "std::bad_alloc") == 0;
    }
    CHECK(caught, "bad_alloc from new");
    CHECK(handler_calls == 3, "new-handler called until it removed itself");
    caught = false;
    try {
        char *p = new char[huge];
        delete[] p;
    } catch (std::bad_alloc &) {
        caught = true;
    }
    CHECK(caught, "bad_alloc from new[]");
    caught = false;
    try {
        void *p = ::operator new(huge, std::align_val_t{4096});
        ::operator delete(p, std::align_val_t{4096});
    } catch (std::exception &) {
        caught = true;
    }
    CHECK(caught, "bad_alloc from aligned new");
    if (failures) return 1;
    std::printf("cxx ok forms=%ld handler_calls=%d\n", n, handler_calls);
    return 0;
}

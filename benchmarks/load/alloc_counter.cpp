// Replacement global operator new/delete and aligned_alloc that count allocations (see
// alloc_counter.hpp). The counter is one relaxed atomic: with several io threads it is a shared
// cache line, a cost the counting build accepts.
#include "alloc_counter.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <new>

namespace {

std::atomic<std::uint64_t> g_allocations{0};

void* allocate(std::size_t n) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (n == 0) n = 1;
    for (;;) {
        if (void* p = std::malloc(n)) return p;
        std::new_handler h = std::get_new_handler();
        if (!h) throw std::bad_alloc();
        h();
    }
}

void* allocate_aligned(std::size_t n, std::align_val_t al) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    auto align = static_cast<std::size_t>(al);
    if (align < sizeof(void*)) align = sizeof(void*);
    if (n == 0) n = 1;
    for (;;) {
        void* p = nullptr;
        if (posix_memalign(&p, align, n) == 0) return p;
        std::new_handler h = std::get_new_handler();
        if (!h) throw std::bad_alloc();
        h();
    }
}

}  // namespace

namespace wsgate::bench {

std::uint64_t allocations() noexcept { return g_allocations.load(std::memory_order_relaxed); }

bool write_allocations(const char* path) noexcept {
    const unsigned long long count = allocations();
    char tmp[4096];
    const int tn = std::snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (tn < 0 || static_cast<std::size_t>(tn) >= sizeof tmp) return false;
    char line[32];
    const int len = std::snprintf(line, sizeof line, "%llu\n", count);
    const int fd = ::open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    bool ok = ::write(fd, line, static_cast<std::size_t>(len)) == len;
    ok = ::close(fd) == 0 && ok;
    if (!ok || std::rename(tmp, path) != 0) {
        ::unlink(tmp);
        return false;
    }
    return true;
}

}  // namespace wsgate::bench

// Every replaceable allocation function; the nothrow forms are the throwing ones behind a catch,
// as the standard specifies their behaviour. Deallocation ignores size and alignment: malloc and
// posix_memalign memory both go back through free.
void* operator new(std::size_t n) { return allocate(n); }
void* operator new[](std::size_t n) { return allocate(n); }
void* operator new(std::size_t n, std::align_val_t al) { return allocate_aligned(n, al); }
void* operator new[](std::size_t n, std::align_val_t al) { return allocate_aligned(n, al); }

void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    try {
        return allocate(n);
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    try {
        return allocate(n);
    } catch (...) {
        return nullptr;
    }
}
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
    try {
        return allocate_aligned(n, al);
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
    try {
        return allocate_aligned(n, al);
    } catch (...) {
        return nullptr;
    }
}

// Asio's aligned_new calls std::aligned_alloc; a definition in the executable takes the place of
// the C library's for every caller. Built on posix_memalign (not counted) so nothing counts twice;
// the aligned operator new above does the same.
extern "C" void* aligned_alloc(std::size_t align, std::size_t size) noexcept {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (align < sizeof(void*)) align = sizeof(void*);
    void* p = nullptr;
    if (const int rc = posix_memalign(&p, align, size); rc != 0) {
        errno = rc;
        return nullptr;
    }
    return p;
}

void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

// Allocation counting for the load benchmark's servers. alloc_counter.cpp replaces the global
// operator new/delete (every overload) and aligned_alloc, and counts each call to operator new
// or aligned_alloc; linking it into a binary is all it takes. malloc itself is not counted:
// Beast, wsgate and the standard library allocate through operator new, and Asio (1.79 and
// later) takes its handler memory, which its per-thread cache does not recycle when many
// operations are pending, from std::aligned_alloc.
#pragma once

#include <cstdint>

namespace wsgate::bench {

/// Calls to any global operator new or to aligned_alloc since the process started. Thread-safe (a relaxed atomic).
std::uint64_t allocations() noexcept;

/**
 * Writes allocations() in decimal and a newline to `path`: first to `path`.tmp, then renamed
 * over `path`, so a reader sees either no file or the whole line. Allocates nothing, so the
 * count it writes is the count it leaves. Returns false if the file could not be written.
 */
bool write_allocations(const char* path) noexcept;

}  // namespace wsgate::bench

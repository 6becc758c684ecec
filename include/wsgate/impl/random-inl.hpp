#pragma once
// Definitions for random.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/random.hpp>
#include <wsgate/detail/config.hpp>

#if defined(__linux__)
#include <sys/random.h>
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
#include <stdlib.h>
#else
#include <random>
#endif
#include <cerrno>

#include <stdexcept>

namespace wsgate {

namespace detail {
// The operating system's CSPRNG: getrandom(2) on Linux, arc4random_buf(3) on the BSDs and macOS.
inline void fill_random(char* out, std::size_t n) {
#if defined(__linux__)
    while (n > 0) {
        const ssize_t got = ::getrandom(out, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error("wsgate: getrandom failed");
        }
        out += got;
        n -= static_cast<std::size_t>(got);
    }
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
    ::arc4random_buf(out, n);
#else
    std::random_device device;
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<char>(device() & 0xff);
#endif
}
}  // namespace detail

WSGATE_INLINE std::string random_token(std::size_t bytes) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string raw(bytes, '\0');
    detail::fill_random(raw.data(), bytes);
    std::string out;
    out.reserve((bytes * 4 + 2) / 3);
    std::size_t i = 0;
    auto byte = [&](std::size_t k) { return static_cast<unsigned char>(raw[k]); };
    for (; i + 3 <= bytes; i += 3) {
        const unsigned v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        out += alphabet[v & 63];
    }
    if (bytes - i == 1) {
        const unsigned v = byte(i) << 16;
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
    } else if (bytes - i == 2) {
        const unsigned v = (byte(i) << 16) | (byte(i + 1) << 8);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
    }
    return out;
}

}  // namespace wsgate

// A lean RFC 6455 client side for the load generator's subscribers: the opening handshake on a
// blocking socket, masked client frames, and a frame reader that takes whatever a read() returned.
// The generator reads thousands of connections on one thread, so the cost it adds to a delivery
// must stay well below the server's: no per-message allocation, no handler, one read() per ready
// socket however many frames it holds.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <string_view>

namespace wsgate::bench {

/// A client frame (RFC 6455 §5.2): FIN, `opcode`, masked with a fresh key (§5.3).
inline std::string masked_frame(std::uint8_t opcode, std::string_view payload) {
    thread_local std::mt19937 rng{std::random_device{}()};
    std::string f;
    f.reserve(payload.size() + 14);
    f.push_back(static_cast<char>(0x80 | opcode));
    const std::size_t n = payload.size();
    if (n < 126) {
        f.push_back(static_cast<char>(0x80 | n));
    } else if (n <= 0xFFFF) {
        f.push_back(static_cast<char>(0x80 | 126));
        f.push_back(static_cast<char>(n >> 8));
        f.push_back(static_cast<char>(n & 0xFF));
    } else {
        f.push_back(static_cast<char>(0x80 | 127));
        for (int s = 56; s >= 0; s -= 8) f.push_back(static_cast<char>((static_cast<std::uint64_t>(n) >> s) & 0xFF));
    }
    const std::uint32_t key = rng();
    char k[4];
    std::memcpy(k, &key, 4);
    f.append(k, 4);
    for (std::size_t i = 0; i < n; ++i) f.push_back(static_cast<char>(payload[i] ^ k[i % 4]));
    return f;
}

/// Writes all of `bytes` to a socket (blocking or not: waits out EAGAIN). False on error.
inline bool write_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t w = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ::usleep(50);
                continue;
            }
            return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(w));
    }
    return true;
}

/// Connects to 127.0.0.1:`port` and completes the opening handshake for `target` (path and
/// query). Returns the blocking socket, TCP_NODELAY set, after the server's 101 and not a byte
/// more, or -1 with `error` set.
inline int ws_connect(unsigned port, const std::string& target, std::string& error) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        error = std::strerror(errno);
        return -1;
    }
    auto fail = [&](std::string why) {
        error = std::move(why);
        ::close(fd);
        return -1;
    };
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return fail(std::strerror(errno));
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // The key is any 16 bytes in base64 (§4.1); the server's accept value is not checked here,
    // the status line is.
    const std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                            "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: d3NnYXRlLWJlbmNoLWtleQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (!write_all(fd, req)) return fail(std::strerror(errno));
    // Peek until the header ends, then consume exactly the header: what follows is frames.
    char buf[4096];
    for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_PEEK);
        if (n <= 0) return fail(n == 0 ? "closed during the handshake" : std::strerror(errno));
        const std::string_view seen(buf, static_cast<std::size_t>(n));
        const auto end = seen.find("\r\n\r\n");
        if (end == std::string_view::npos) {
            if (static_cast<std::size_t>(n) == sizeof buf) return fail("handshake response too long");
            ::usleep(100);
            continue;
        }
        if (seen.substr(0, 12) != "HTTP/1.1 101") return fail(std::string(seen.substr(0, seen.find("\r\n"))));
        if (::recv(fd, buf, end + 4, 0) != static_cast<ssize_t>(end + 4)) return fail("short read of the handshake");
        return fd;
    }
}

/// Server frames (unmasked, §5.1) out of a byte stream in pieces. `feed` calls
/// `on_message(opcode, payload)` for every whole message: a data message with its fragments joined
/// (opcode 1 or 2), or a control frame (8, 9, 10). It returns false on a protocol error (a masked
/// server frame, a control frame over 125 bytes or fragmented, a continuation without a start).
class FrameReader {
public:
    template <class OnMessage>
    bool feed(const char* data, std::size_t size, OnMessage&& on_message) {
        std::string_view in(data, size);
        if (!pending_.empty()) {
            pending_.append(data, size);
            in = pending_;
        }
        std::size_t used = 0;
        bool ok = true;
        while (ok) {
            const std::size_t avail = in.size() - used;
            if (avail < 2) break;
            const auto* p = reinterpret_cast<const unsigned char*>(in.data() + used);
            const bool fin = p[0] & 0x80;
            const std::uint8_t opcode = p[0] & 0x0F;
            if (p[1] & 0x80) {
                ok = false;
                break;
            }
            std::uint64_t len = p[1] & 0x7F;
            std::size_t header = 2;
            if (len == 126) {
                if (avail < 4) break;
                len = (std::uint64_t{p[2]} << 8) | p[3];
                header = 4;
            } else if (len == 127) {
                if (avail < 10) break;
                len = 0;
                for (int i = 2; i < 10; ++i) len = (len << 8) | p[i];
                header = 10;
            }
            if (avail - header < len) break;
            const std::string_view payload(in.data() + used + header, static_cast<std::size_t>(len));
            used += header + static_cast<std::size_t>(len);
            if (opcode >= 8) {
                if (!fin || len > 125) ok = false;
                else on_message(opcode, payload);
            } else if (opcode == 0) {
                if (!in_message_) ok = false;
                else {
                    message_.append(payload);
                    if (fin) {
                        in_message_ = false;
                        on_message(message_opcode_, std::string_view(message_));
                        message_.clear();
                    }
                }
            } else if (in_message_) {
                ok = false;
            } else if (fin) {
                on_message(opcode, payload);
            } else {
                in_message_ = true;
                message_opcode_ = opcode;
                message_.assign(payload);
            }
        }
        // Keep the unparsed tail (a frame cut by the read) for the next feed.
        if (pending_.empty()) {
            pending_.assign(in.substr(used));
        } else {
            pending_.erase(0, used);
        }
        return ok;
    }

private:
    std::string pending_;
    std::string message_;
    std::uint8_t message_opcode_ = 0;
    bool in_message_ = false;
};

}  // namespace wsgate::bench

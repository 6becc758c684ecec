#pragma once
// Prepared WebSocket frames: a server-to-client text message framed once (RFC 6455 §5.2) and
// shared by every connection it goes to. Internal to wsgate::beast.
#include <wsgate/envelope.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace wsgate::beast::detail {

/// One whole frame as it goes on the wire: header, then the payload.
struct WireFrame {
    std::string bytes;
    std::size_t header_size = 0;

    /// The message the frame carries (what a connection that compresses writes through Beast).
    [[nodiscard]] std::string_view payload() const noexcept {
        return std::string_view{bytes}.substr(header_size);
    }
};

/// A frame shared by all the connections it is queued for.
using Frame = std::shared_ptr<const WireFrame>;

/// Largest header of an unmasked frame: 2 bytes, then 8 for a 64-bit length.
inline constexpr std::size_t max_frame_header = 10;

/**
 * Writes the header of a single-frame (FIN) text message of `length` payload bytes as a server
 * sends it (no mask, RFC 6455 §5.1) to `out`; returns its size. Lengths up to 125 fit in the
 * second byte, up to 65,535 take 126 and 16 bits, longer ones 127 and 64 bits, in network order
 * (§5.2: the minimal encoding).
 */
[[nodiscard]] inline std::size_t text_frame_header(std::uint64_t length, unsigned char* out) noexcept {
    out[0] = 0x81;  // FIN, opcode 1 (text)
    if (length <= 125) {
        out[1] = static_cast<unsigned char>(length);
        return 2;
    }
    if (length <= 0xFFFF) {
        out[1] = 126;
        out[2] = static_cast<unsigned char>(length >> 8);
        out[3] = static_cast<unsigned char>(length);
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; ++i) out[2 + i] = static_cast<unsigned char>(length >> (8 * (7 - i)));
    return 10;
}

/// Frames `payload` as one text message: one allocation for the frame and its bytes.
[[nodiscard]] inline Frame prepare_text_frame(std::string_view payload) {
    unsigned char header[max_frame_header];
    const std::size_t n = text_frame_header(payload.size(), header);
    auto f = std::make_shared<WireFrame>();
    f->bytes.reserve(n + payload.size());
    f->bytes.append(reinterpret_cast<const char*>(header), n);
    f->bytes.append(payload);
    f->header_size = n;
    return f;
}

/**
 * The frame for `payload`, framed once however many connections it goes to: the last payload
 * this thread framed is remembered (held, so its address cannot be reused), and sending the
 * same one again — one publish fanned out by single sends — reuses its frame.
 */
[[nodiscard]] inline Frame frame_for(const Payload& payload) {
    thread_local Payload last_payload;
    thread_local Frame last_frame;
    if (last_payload != payload || !last_frame) {
        last_frame = prepare_text_frame(*payload);
        last_payload = payload;
    }
    return last_frame;
}

}  // namespace wsgate::beast::detail

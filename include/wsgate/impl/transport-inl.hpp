#pragma once
// Definitions for transport.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/transport.hpp>
#include <wsgate/detail/config.hpp>

namespace wsgate {

WSGATE_INLINE std::string_view to_string(SendStatus s) noexcept {
    switch (s) {
        case SendStatus::ok: return "ok";
        case SendStatus::gone: return "gone";
        case SendStatus::backpressure: return "backpressure";
        case SendStatus::error: break;
    }
    return "error";
}

WSGATE_INLINE void Transport::send_many(std::span<const ConnectionId> ids, const Payload& payload, std::span<SendStatus> out) {
    for (std::size_t i = 0; i < ids.size() && i < out.size(); ++i) {
        try {
            out[i] = send(ids[i], payload);
        } catch (...) {
            out[i] = SendStatus::error;
        }
    }
}

}  // namespace wsgate

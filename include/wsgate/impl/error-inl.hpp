#pragma once
// Definitions for error.hpp: included by it under WSGATE_HEADER_ONLY, else compiled once into wsgate::wsgate.

#include <wsgate/error.hpp>
#include <wsgate/detail/config.hpp>
#include <wsgate/detail/error_category.hpp>

namespace wsgate {

namespace detail {

inline std::string describe_protocol(protocol_errc e) {
    switch (e) {
        case protocol_errc::malformed_json: return "message is not valid JSON";
        case protocol_errc::not_an_object: return "message must be a JSON object";
        case protocol_errc::missing_route: return "message route key is missing or not a string";
        case protocol_errc::unknown_route: return "unknown message type";
        case protocol_errc::invalid_message: return "message fields are missing or invalid";
        case protocol_errc::too_large: return "message too large";
        case protocol_errc::rate_limited: return "rate limit exceeded";
        case protocol_errc::forbidden: return "forbidden";
        case protocol_errc::unknown_connection: return "unknown connection";
        case protocol_errc::invalid_utf8: return "message is not valid UTF-8";
        case protocol_errc::handler_failed: return "internal error";
        case protocol_errc::store_unavailable: return "service unavailable";
        case protocol_errc::too_many_subscriptions: return "too many subscriptions";
        case protocol_errc::history_off: return "this topic keeps no history";
        case protocol_errc::cursors_off: return "this topic keeps no device cursors for this principal";
        case protocol_errc::presence_off: return "this topic does not enable presence";
        case protocol_errc::bad_position: return "position is not in this topic's stream";
        case protocol_errc::invalid_ref: return "'ref' must be a string or integer of at most 64 characters";
    }
    return "unknown protocol error";
}

inline std::string describe_store(store_errc e) {
    switch (e) {
        case store_errc::not_found: return "connection not found";
        case store_errc::unavailable: return "store unavailable";
        case store_errc::corrupt: return "store data is corrupt";
        case store_errc::read_only: return "store is read-only";
        case store_errc::busy: return "store is locked";
        case store_errc::invalid_argument: return "invalid argument";
        case store_errc::io_error: return "store I/O error";
    }
    return "unknown store error";
}

inline std::string describe_transport(transport_errc e) {
    switch (e) {
        case transport_errc::gone: return "connection gone";
        case transport_errc::backpressure: return "send queue full";
        case transport_errc::closed: return "connection closing";
        case transport_errc::forbidden: return "transport forbidden";
        case transport_errc::too_large: return "payload too large for transport";
        case transport_errc::throttled: return "throttled";
        case transport_errc::failed: return "send failed";
    }
    return "unknown transport error";
}

}  // namespace detail

WSGATE_INLINE const std::error_category& protocol_category() noexcept {
    return detail::error_category_of<protocol_errc, &detail::describe_protocol>("wsgate.protocol");
}
WSGATE_INLINE const std::error_category& store_category() noexcept {
    return detail::error_category_of<store_errc, &detail::describe_store>("wsgate.store");
}
WSGATE_INLINE const std::error_category& transport_category() noexcept {
    return detail::error_category_of<transport_errc, &detail::describe_transport>("wsgate.transport");
}

WSGATE_INLINE int status_of(protocol_errc e) noexcept {
    switch (e) {
        case protocol_errc::too_large: return 413;
        case protocol_errc::rate_limited:
        case protocol_errc::too_many_subscriptions: return 429;
        case protocol_errc::forbidden: return 403;
        case protocol_errc::unknown_connection: return 410;
        case protocol_errc::handler_failed: return 500;
        case protocol_errc::store_unavailable: return 503;
        default: return 400;
    }
}

WSGATE_INLINE int status_of(const std::error_code& ec) noexcept {
    if (!ec) return 200;
    return ec.category() == protocol_category() ? status_of(static_cast<protocol_errc>(ec.value())) : 500;
}

}  // namespace wsgate

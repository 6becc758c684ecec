#pragma once
/** @file error.hpp Typed error codes per area (protocol, store, transport), as `std::error_code`. */

#include <wsgate/detail/config.hpp>

#include <string>
#include <system_error>

namespace wsgate {

/// Why a client message was refused. Each maps to an HTTP-like status in the error envelope.
enum class protocol_errc {
    malformed_json = 1,    ///< not JSON (400)
    not_an_object,         ///< JSON but not an object (400)
    missing_route,         ///< the route key is absent or not a string (400)
    unknown_route,         ///< no handler for the route and the policy is `error` (400)
    invalid_message,       ///< a built-in route's fields are missing or of the wrong type (400)
    too_large,             ///< over `max_message_bytes` (413)
    rate_limited,          ///< the connection's token bucket is empty (429)
    forbidden,             ///< the principal lacks the permission (403)
    unknown_connection,    ///< the connection id is not (or no longer) known (410)
    invalid_utf8,          ///< a text frame that is not UTF-8 (400)
    handler_failed,        ///< a host handler threw (500)
    store_unavailable,     ///< the ConnectionStore failed (503)
    too_many_subscriptions,  ///< the connection holds RouterSettings::max_subscriptions topics (429)
    history_off,           ///< the topic's rule keeps no history (400)
    cursors_off,           ///< the topic's rule keeps no device cursors, or the principal has no device id (400)
    presence_off,          ///< the topic's rule does not enable presence (400)
    bad_position,          ///< an acknowledged position is ahead of the stream or of another epoch (400)
    invalid_ref,           ///< `ref` is not a string or integer of at most 64 characters (400)
};

/// ConnectionStore failures.
enum class store_errc {
    not_found = 1,  ///< no such connection
    unavailable,    ///< the backend cannot be reached
    corrupt,        ///< the backend holds data wsgate cannot read
    read_only,      ///< the backend refuses writes
    busy,           ///< the backend is locked by another writer
    invalid_argument,
    io_error,
};

/// Transport failures.
enum class transport_errc {
    gone = 1,      ///< the peer is gone (API Gateway 410)
    backpressure,  ///< the connection's queue is full
    closed,        ///< the connection is closing
    forbidden,     ///< the transport refused (API Gateway 403)
    too_large,     ///< the payload exceeds what the transport carries (API Gateway 413)
    throttled,     ///< retries exhausted on 429
    failed,        ///< any other failure
};

const std::error_category& protocol_category() noexcept;
const std::error_category& store_category() noexcept;
const std::error_category& transport_category() noexcept;

inline std::error_code make_error_code(protocol_errc e) noexcept { return {static_cast<int>(e), protocol_category()}; }
inline std::error_code make_error_code(store_errc e) noexcept { return {static_cast<int>(e), store_category()}; }
inline std::error_code make_error_code(transport_errc e) noexcept { return {static_cast<int>(e), transport_category()}; }

/// The status number an error envelope carries for `e` (400, 403, 413, 429, 500, 503).
[[nodiscard]] int status_of(protocol_errc e) noexcept;
/// status_of() for a protocol_errc code; 500 for an error of any other category, 200 for none.
[[nodiscard]] int status_of(const std::error_code& ec) noexcept;

/// Thrown by store backends for failures; the Gateway catches it at its boundary.
class StoreError : public std::system_error {
public:
    StoreError(store_errc e, const std::string& what) : std::system_error(make_error_code(e), what) {}
};

/// WebSocket close codes (RFC 6455 §7.4.1) and the wsgate application codes (4000–4999).
enum class CloseCode : unsigned short {
    normal = 1000,
    going_away = 1001,
    protocol_error = 1002,
    unsupported_data = 1003,
    invalid_payload = 1007,
    policy_violation = 1008,
    message_too_big = 1009,
    internal_error = 1011,
    try_again_later = 1013,
    /// wsgate application code (4000–4999 are private use): the token's `exp` passed without a
    /// refresh; the reason text is "token expired". Reconnect with a fresh token.
    token_expired = 4001,
};

}  // namespace wsgate

template <> struct std::is_error_code_enum<wsgate::protocol_errc> : std::true_type {};
template <> struct std::is_error_code_enum<wsgate::store_errc> : std::true_type {};
template <> struct std::is_error_code_enum<wsgate::transport_errc> : std::true_type {};

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/error-inl.hpp>
#endif

#pragma once
/** @file end_reason.hpp Why a connection ended, and what the reaper does for each reason: one table. */

#include <wsgate/error.hpp>

#include <array>
#include <cstddef>
#include <string_view>

namespace wsgate {

/// Why a connection ended; each is counted and reported to the host. `shutdown` stays last.
enum class EndReason {
    client_closed,  ///< the client (or the socket server) closed
    gone,           ///< a send reported Gone (410)
    ttl_expired,    ///< `expires_at` passed
    token_expired,  ///< the token's `exp` passed without a refresh (close 4001, "token expired")
    idle,           ///< no message and no touch() for `inactivity_timeout`
    max_age,        ///< connected longer than `max_age`
    heartbeat,      ///< the transport saw no pong
    backpressure,   ///< its queue overflowed under the `close` policy
    policy,         ///< it broke a limit under a closing policy (oversize, rate)
    kicked,         ///< the host ended it
    shutdown,       ///< the server is shutting down
};

/// What the reaper does for one EndReason.
struct EndReasonInfo {
    EndReason reason;
    std::string_view name;        ///< to_string(); the `reason` label of `wsgate_connections_ended_total`
    CloseCode close_code;         ///< the close code sent (close_code_for())
    std::string_view close_text;  ///< the close frame's reason text when the caller gives none
    bool sends_close;             ///< false when nobody is left to receive a close frame
};

/// One row per EndReason, in enumerator order: `end_reasons[static_cast<std::size_t>(r)]` is r's.
inline constexpr std::array<EndReasonInfo, 11> end_reasons{{
    {EndReason::client_closed, "client_closed", CloseCode::normal, "client_closed", false},
    {EndReason::gone, "gone", CloseCode::normal, "gone", false},
    {EndReason::ttl_expired, "ttl_expired", CloseCode::normal, "ttl_expired", true},
    {EndReason::token_expired, "token_expired", CloseCode::token_expired, "token expired", true},
    {EndReason::idle, "idle", CloseCode::going_away, "idle", true},
    {EndReason::max_age, "max_age", CloseCode::normal, "max_age", true},
    {EndReason::heartbeat, "heartbeat", CloseCode::going_away, "heartbeat", true},
    {EndReason::backpressure, "backpressure", CloseCode::policy_violation, "backpressure", true},
    {EndReason::policy, "policy", CloseCode::policy_violation, "policy", true},
    {EndReason::kicked, "kicked", CloseCode::normal, "kicked", true},
    {EndReason::shutdown, "shutdown", CloseCode::going_away, "shutdown", true},
}};

/// The number of EndReason enumerators (the table's size).
inline constexpr std::size_t end_reason_count = end_reasons.size();

namespace detail {
inline constexpr EndReasonInfo unknown_end_reason{EndReason::client_closed, "unknown", CloseCode::normal, "unknown", true};
constexpr bool end_reason_rows_in_order() noexcept {
    for (std::size_t i = 0; i < end_reasons.size(); ++i)
        if (static_cast<std::size_t>(end_reasons[i].reason) != i || end_reasons[i].name.empty()) return false;
    return true;
}
}  // namespace detail
static_assert(end_reason_count == static_cast<std::size_t>(EndReason::shutdown) + 1,
              "every EndReason needs its row in end_reasons (and shutdown stays last)");
static_assert(detail::end_reason_rows_in_order(), "end_reasons rows must follow the enumerator order");

/// The row of `r`; a value outside the enum gets a row named "unknown" (close 1000).
[[nodiscard]] constexpr const EndReasonInfo& end_reason_info(EndReason r) noexcept {
    const auto i = static_cast<std::size_t>(r);
    return i < end_reasons.size() ? end_reasons[i] : detail::unknown_end_reason;
}
[[nodiscard]] constexpr std::string_view to_string(EndReason r) noexcept { return end_reason_info(r).name; }
/// The close code the reaper sends for `r` (1000, 1001, 1008, 4001, ...).
[[nodiscard]] constexpr CloseCode close_code_for(EndReason r) noexcept { return end_reason_info(r).close_code; }

}  // namespace wsgate

#pragma once
/** @file connection.hpp Who is connected: ConnectionId, Principal, ConnectionRecord. */

#include <wsgate/detail/config.hpp>
#include <wsgate/clock.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate {

/// Opaque connection identifier; ≥128 random bits when wsgate makes it (see make_connection_id()).
using ConnectionId = std::string;

/// A fresh unguessable connection id: 128 bits from OpenSSL's CSPRNG, base64url (22 characters).
[[nodiscard]] ConnectionId make_connection_id();

/// What kind of credential a principal presented.
enum class PrincipalKind {
    anonymous,  ///< no credential (AnonymousAuthorizer)
    user,       ///< a user session token
    public_device,  ///< a public device token with explicit permissions
};

/// `"anonymous"`, `"user"` or `"public"`.
[[nodiscard]] std::string_view to_string(PrincipalKind k) noexcept;
/// Inverse of to_string(PrincipalKind); unknown text gives `anonymous`.
[[nodiscard]] PrincipalKind principal_kind_from_string(std::string_view s) noexcept;

/**
 * The identity behind a connection, as the Authorizer established it.
 * @par Thread Safety Value type; distinct objects are independent.
 */
struct Principal {
    PrincipalKind kind = PrincipalKind::anonymous;
    std::string user_id;     ///< empty for public and anonymous principals
    std::string session_id;
    std::string device_id;   ///< the key for "everyone but the sender"
    std::string nickname;
    std::vector<std::string> permissions;  ///< e.g. `read_leaderboard`; `*` grants everything
    std::optional<TimePoint> issued_at;
    /// The token's `exp`: the connection ends then (EndReason::token_expired) unless refreshed.
    std::optional<TimePoint> expires_at;
    nlohmann::json claims = nlohmann::json::object();  ///< the token's remaining claims

    /// True if `permissions` names `permission` or `*`. An empty `permission` is always held.
    [[nodiscard]] bool has_permission(std::string_view permission) const noexcept {
        if (permission.empty()) return true;
        return std::any_of(permissions.begin(), permissions.end(),
                           [&](const std::string& p) { return p == permission || p == "*"; });
    }
};

/**
 * One live connection as a ConnectionStore keeps it.
 * @par Thread Safety Value type.
 */
struct ConnectionRecord {
    ConnectionId id;
    Principal principal;
    TimePoint connected_at{};
    TimePoint expires_at{};  ///< deadline: the earlier of the TTL and the token's `exp`; `sweep` ends it then
    TimePoint last_seen{};   ///< last inbound message (idle timeout)
    std::string source_ip;
    std::string user_agent;
    std::string node_id;     ///< the node that owns the socket
    std::vector<std::string> topics;  ///< filled by stores on get(); ignored by put()
    std::map<std::string, std::string> attributes;  ///< host-defined
};

/// JSON form of a principal (used by durable stores, buses and the AWS authorizer context).
void to_json(nlohmann::json& j, const Principal& p);
void from_json(const nlohmann::json& j, Principal& p);
/// JSON form of a record; times as Unix milliseconds.
void to_json(nlohmann::json& j, const ConnectionRecord& r);
void from_json(const nlohmann::json& j, ConnectionRecord& r);

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/connection-inl.hpp>
#endif

#pragma once
/** @file audience.hpp Who a publish goes to, and what came of it (BroadcastReport). */

#include <wsgate/detail/config.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/connection.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate {

/**
 * The recipients of a publish: everyone, a topic's subscribers, one user's connections, a set of
 * users, or explicit connections; optionally minus one device or connection ("everyone but the
 * sender", keyed by device where the sender has one) and restricted to principals holding a
 * permission.
 *
 * @code
 * auto a = wsgate::Audience::user("u-1").except_device("phone-1");
 * auto b = wsgate::Audience::topic("leaderboard:42").requiring("read_leaderboard");
 * @endcode
 * @par Thread Safety Value type.
 */
struct Audience {
    enum class Kind { everyone, topic, user, users, connections };

    Kind kind = Kind::everyone;
    std::string topic_name;               ///< Kind::topic
    std::vector<std::string> user_ids;    ///< Kind::user (one) and Kind::users
    std::vector<ConnectionId> connection_ids;  ///< Kind::connections
    std::string excluded_device;          ///< skip connections whose principal has this device id
    std::string excluded_device_user;     ///< if set, the device exclusion applies to this user only
    ConnectionId excluded_connection;     ///< skip this connection
    std::string required_permission;      ///< skip principals lacking it (checked per publish)

    static Audience everyone() { return {}; }
    static Audience topic(std::string t) {
        Audience a;
        a.kind = Kind::topic;
        a.topic_name = std::move(t);
        return a;
    }
    static Audience user(std::string u) {
        Audience a;
        a.kind = Kind::user;
        a.user_ids.push_back(std::move(u));
        return a;
    }
    static Audience users(std::vector<std::string> us) {
        Audience a;
        a.kind = Kind::users;
        a.user_ids = std::move(us);
        return a;
    }
    static Audience connections(std::vector<ConnectionId> ids) {
        Audience a;
        a.kind = Kind::connections;
        a.connection_ids = std::move(ids);
        return a;
    }
    Audience& except_device(std::string d) & { excluded_device = std::move(d); return *this; }
    Audience&& except_device(std::string d) && { excluded_device = std::move(d); return std::move(*this); }
    Audience& except_connection(ConnectionId c) & { excluded_connection = std::move(c); return *this; }
    Audience&& except_connection(ConnectionId c) && { excluded_connection = std::move(c); return std::move(*this); }
    /// Excludes the sender: by its device id (scoped to its user) when it has one, else by its
    /// connection id; so it stays right when that device reconnects or lands on another node.
    Audience& except_sender(const ConnectionRecord& sender) & {
        if (!sender.principal.device_id.empty()) {
            excluded_device = sender.principal.device_id;
            excluded_device_user = sender.principal.user_id;
        } else {
            excluded_connection = sender.id;
        }
        return *this;
    }
    Audience&& except_sender(const ConnectionRecord& sender) && { except_sender(sender); return std::move(*this); }
    Audience& requiring(std::string permission) & { required_permission = std::move(permission); return *this; }
    Audience&& requiring(std::string permission) && { required_permission = std::move(permission); return std::move(*this); }

    /// True if `r` passes the exclusions and permission filter (not the kind selection).
    [[nodiscard]] bool admits(const ConnectionRecord& r) const noexcept {
        return admits(r.id, r.principal);
    }
    [[nodiscard]] bool admits(const ConnectionId& id, const Principal& p) const noexcept {
        if (!excluded_connection.empty() && id == excluded_connection) return false;
        if (!excluded_device.empty() && p.device_id == excluded_device &&
            (excluded_device_user.empty() || p.user_id == excluded_device_user))
            return false;
        return p.has_permission(required_permission);
    }
};

void to_json(nlohmann::json& j, const Audience& a);
void from_json(const nlohmann::json& j, Audience& a);

/// What one publish did. `targets` = delivered + gone_removed + failed + backpressured + filtered.
struct BroadcastReport {
    std::size_t targets = 0;        ///< connections the audience resolved to on this node
    std::size_t delivered = 0;      ///< queued for sending
    std::size_t gone_removed = 0;   ///< reported Gone and removed at once
    std::size_t failed = 0;         ///< transport error (connection kept)
    std::size_t backpressured = 0;  ///< queue full (dropped or closed, by policy)
    std::size_t filtered = 0;       ///< skipped by exclusion or permission
    /// The publication's offset in its topic's stream; 0 when the topic keeps none or the store
    /// could not give one (then it was delivered without a position).
    std::uint64_t offset = 0;
    /**
     * The publication may have missed part of its audience: the store, where it is the index
     * (`local_delivery_only` false), could not resolve it (this node delivered to its own
     * connections from its own index; with a shared store every node delivers from its own index
     * and never reports this), the bus refused it (other
     * nodes did not get it), or its topic's stream could not append it (delivered without a
     * position and not kept in history). An HTTP publish endpoint answers 503; `degraded_reason`
     * says which, comma-separated: `store_unavailable`, `bus_unavailable`, `history_unavailable`.
     */
    bool degraded = false;
    std::string degraded_reason;
    Duration elapsed{0};

    /// Marks the report degraded for `reason` (kept once).
    void degrade(std::string_view reason) {
        degraded = true;
        if (degraded_reason.find(reason) != std::string::npos) return;
        if (!degraded_reason.empty()) degraded_reason += ',';
        degraded_reason += reason;
    }
};

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/audience-inl.hpp>
#endif

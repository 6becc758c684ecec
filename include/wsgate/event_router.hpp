#pragma once
/** @file event_router.hpp Plug point: what a client message does. */

#include <wsgate/audience.hpp>
#include <wsgate/detail/config.hpp>
#include <wsgate/connection.hpp>
#include <wsgate/envelope.hpp>
#include <wsgate/error.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate {

class Gateway;

/**
 * A topic permission rule: who may subscribe to (and receive) topics matching `pattern`, and
 * who may publish to them from a client.
 *
 * | principal | subscribe / receive | client publish |
 * |---|---|---|
 * | user      | holds `read_permission` (empty: any user) | holds `publish_permission`; empty: nobody |
 * | public    | holds a non-empty `read_permission` | never |
 * | anonymous | `anonymous_read` and holds `read_permission` | never |
 *
 * A topic no rule matches is closed to everyone unless RouterSettings::open_topics lets users
 * read it; no client ever publishes to it. Server publishes (Gateway::publish) need no rule.
 */
struct TopicRule {
    std::string pattern;             ///< `leaderboard:*`, `game:42`, `*`
    std::string read_permission;     ///< e.g. `read_leaderboard`; empty: any user (never public/anonymous)
    std::string publish_permission;  ///< e.g. `publish_game`; empty: no client may publish
    bool anonymous_read = false;     ///< anonymous principals may read (holding `read_permission`)

    // ---- delivery guarantees (docs/delivery.md); all off by default, so a plain topic costs nothing

    /// Publications kept per topic for recovery and `history` requests. Above 0, every publish
    /// to a matching topic gets a stream position (`offset`, `epoch` in the envelope) and a
    /// subscribe may carry `since` to receive what it missed. 0: no positions, no history.
    std::size_t history_size = 0;
    /// Publications older than this are dropped from the history (0: kept until pushed out by
    /// `history_size`).
    Duration history_ttl{0};
    /// Device cursors: clients acknowledge positions (`{"type":"ack","topic":…,"offset":N}`),
    /// the store keeps the last one per device, and a subscribe without `since` resumes from it.
    /// Needs `history_size` > 0 and principals with a device id.
    bool device_cursors = false;
    /// How long a device cursor outlives its last acknowledgement.
    Duration cursor_ttl = std::chrono::hours{24 * 30};
    /// `{"type":"presence","topic":…}` lists the topic's subscribers to anyone who may read it.
    bool presence = false;
    /// Subscribers get `{"type":"join"|"leave","topic":…,"member":{…}}` as others come and go.
    /// Needs `presence`.
    bool presence_events = false;

    [[nodiscard]] bool matches(std::string_view topic) const noexcept;
};

/**
 * What to answer a message whose route has no handler, and a message that names no route: an
 * object without a string route key, a JSON array, number, string, boolean or null. Text that is
 * not JSON, a `ref` of the wrong type and a message nested too deeply are 400 errors under
 * either policy.
 */
enum class UnknownRoutePolicy {
    ack,    ///< `{"type":"ack","message":"Message received"}` to anything else (seed 000)
    error,  ///< `{"type":"error","status":400,...}`: unknown route, missing route key, not an object
};

/// How a client-originated delivery names its sender (`"from":{"userId":…,"deviceId":…}`).
struct SenderStamp {
    std::string field = "from";    ///< top-level envelope field; never empty
    bool user_id = true;           ///< include `userId`
    bool device_id = true;         ///< include `deviceId` (when the principal has one)
    bool nickname = false;         ///< include `nickname` (when the principal has one)
};

/// Who may call a host route.
enum class RouteAccess {
    authenticated,      ///< user and public principals (default); anonymous ones get 403
    include_anonymous,  ///< anonymous principals too
};

/// EventRouter settings; every field has a working default, and the defaults are closed.
struct RouterSettings {
    /// The field naming the route: a top-level name (`type`, `action`) or a JSON pointer (`/meta/kind`).
    /// Whatever it names, `{"type":"ping"}` is the `ping` route (every client's heartbeat).
    std::string route_key = "type";
    /// Second-level key for handlers registered with on(route, action, handler).
    std::string action_key = "action";
    UnknownRoutePolicy unknown_route = UnknownRoutePolicy::ack;
    /// First matching rule wins.
    std::vector<TopicRule> topic_rules;
    /// Topics no rule matches: may user principals subscribe? Public and anonymous principals
    /// never may. Off by default: a topic is readable only where a rule says so.
    bool open_topics = false;
    /// Event names a client may not choose in a publish (400), besides the server's own
    /// `ack`, `error` and `pong`, which are always refused.
    std::vector<std::string> reserved_event_types{"token_expiring", "unsubscribed", "join", "leave", "history",
                                                  "presence"};
    /// How client publishes are marked with their sender; server publishes are never marked.
    SenderStamp sender;
    /// Maximum topic name length accepted from a client.
    std::size_t max_topic_length = 256;
    /// Maximum event name length accepted in a client publish.
    std::size_t max_event_length = 128;
    /// Maximum subscriptions per connection (0 = unlimited).
    std::size_t max_subscriptions = 100;
};

/**
 * The message being handled, and what a handler may do about it.
 * @par Thread Safety One context per message; used by one thread.
 */
class MessageContext {
public:
    /// `msg`'s `ref` (a string or integer of at most 64 characters) is echoed in every reply.
    MessageContext(Gateway& gw, const ConnectionRecord& rec, const nlohmann::json& msg,
                   std::string route, TimePoint now);

    /// The caller's connection record (principal, topics, attributes).
    [[nodiscard]] const ConnectionRecord& connection() const noexcept { return rec_; }
    [[nodiscard]] const Principal& principal() const noexcept { return rec_.principal; }
    /// The parsed message (always an object).
    [[nodiscard]] const nlohmann::json& message() const noexcept { return msg_; }
    [[nodiscard]] const std::string& route() const noexcept { return route_; }
    [[nodiscard]] TimePoint now() const noexcept { return now_; }
    [[nodiscard]] Gateway& gateway() noexcept { return gw_; }
    /// The message's `ref` (null if it has none); every reply below echoes it.
    [[nodiscard]] const nlohmann::json& ref() const noexcept { return ref_; }

    /// Sends `e` to the caller only, with the message's `ref`.
    void reply(const Envelope& e);
    /// Sends `{"type":"error","status":status,"error":message}` to the caller, with the message's `ref`.
    void reply_error(int status, std::string_view message);
    /// Sends `{"type":"ack", ...fields}` to the caller, with the message's `ref`.
    void ack(nlohmann::json fields = nlohmann::json::object());
    /// Publishes through the Gateway (bus, permission filter, Gone cleanup).
    BroadcastReport publish(const Envelope& e, const Audience& a);
    /// True once reply/reply_error/ack was called.
    [[nodiscard]] bool replied() const noexcept { return replied_; }

private:
    Gateway& gw_;
    const ConnectionRecord& rec_;
    const nlohmann::json& msg_;
    std::string route_;
    TimePoint now_;
    nlohmann::json ref_;
    bool replied_ = false;
};

/**
 * Routes client messages: built-ins `ping`, `subscribe`, `unsubscribe`, `publish`, `refresh`,
 * `history`, `ack` and `presence` (README "The wire protocol", docs/delivery.md), then host handlers by
 * route key (and optionally by action), then the unknown-route policy. Every reply echoes the
 * message's `ref`. `{"type":"ping"}` gets `{"type":"pong"}` whatever the route key is.
 *
 * `{"type":"subscribe","topic":…,"since":{"offset":N,"epoch":…}}` on a topic with history
 * answers `{"type":"ack","action":"subscribe","topic":…,"position":{…},"recovered":…,"missed":K}`
 * (with `reason` when not recovered) and then sends the K missed publications before live ones.
 *
 * `{"type":"refresh","token":…}` replaces the connection's principal in place: the Gateway's
 * Authorizer verifies the token (Gateway::reauthorize); a denial is a 401 error and the connection
 * keeps its old deadline. A token of another principal (kind, user id or device id differ) is a
 * 403 error and ends the connection (EndReason::policy, close 1008). Otherwise the permissions
 * and the deadline are replaced, each subscription the new principal may not read is dropped with
 * `{"type":"unsubscribed","topic":…,"reason":"permission"}`, and the reply is
 * `{"type":"ack","action":"refresh","expires_at":…}` (ISO-8601, the new deadline).
 *
 * @code
 * router.on("timer", "update", [](wsgate::MessageContext& ctx) { ... });
 * router.on("get_leaderboard", [](wsgate::MessageContext& ctx) { ctx.reply(...); });
 * @endcode
 * A handler that throws gets the caller a 500 error envelope; other connections are unaffected.
 *
 * Data flows one way: the router parses and validates a message and maps it to a Gateway
 * operation (Gateway::subscribe, unsubscribe, publish, reauthorize, drop_unreadable); the topic
 * policy and the store belong to the Gateway, and the router never reaches into the store.
 *
 * The class is final and nothing in it is virtual: a host changes what a message does by
 * registering a handler with on(), which may replace any built-in, and the Gateway owns its one
 * router. A subclass could not be installed, and a second way in would bypass the route access
 * checks that dispatch() applies.
 * @par Thread Safety Registering and dispatching may happen concurrently.
 */
class EventRouter final {
public:
    using Handler = std::function<void(MessageContext&)>;

    /// @throws std::invalid_argument if `route_key` is an invalid JSON pointer or `sender.field`
    /// is empty or an envelope field of its own (`type`, `timestamp`, `id`, `topic`, `data`).
    explicit EventRouter(RouterSettings s = {});
    EventRouter(const EventRouter&) = delete;
    EventRouter& operator=(const EventRouter&) = delete;
    ~EventRouter() = default;

    /// Registers (or replaces) the handler for `route`. Host handlers may override built-ins.
    /// Anonymous principals get 403 unless `access` lets them in.
    void on(const std::string& route, Handler h, RouteAccess access = RouteAccess::authenticated);
    /// Registers the handler for `route` + `action` (the `action_key` field).
    void on(const std::string& route, const std::string& action, Handler h,
            RouteAccess access = RouteAccess::authenticated);

    [[nodiscard]] const RouterSettings& settings() const noexcept { return settings_; }

    /// The route of `msg`, or an error: not a string / absent → missing_route. A message whose
    /// top-level `type` is `"ping"` is the `ping` route before the route key is read.
    [[nodiscard]] std::error_code route_of(const nlohmann::json& msg, std::string& route) const;
    /// Is `type` an event name a client may not publish (the server's own and the reserved list)?
    [[nodiscard]] bool reserved_event(std::string_view type) const noexcept;
    /// The permission a topic's audience must hold ("" if none).
    [[nodiscard]] std::string read_permission(std::string_view topic) const;

    /// Runs the message through built-ins, handlers and the unknown-route policy.
    void dispatch(MessageContext& ctx);
    /// Replies `{"type":"ack","message":"Message received"}`: the answer of UnknownRoutePolicy::ack,
    /// which the Gateway also gives to messages that name no route under that policy.
    void acknowledge(MessageContext& ctx);

private:
    void builtin_ping(MessageContext& ctx);
    void builtin_refresh(MessageContext& ctx);
    void builtin_subscribe(MessageContext& ctx);
    void builtin_unsubscribe(MessageContext& ctx);
    void builtin_publish(MessageContext& ctx);
    void builtin_history(MessageContext& ctx);
    void builtin_ack(MessageContext& ctx);
    void builtin_presence(MessageContext& ctx);
    /// A valid topic name from the message, or replies an error and returns false.
    bool topic_from(MessageContext& ctx, std::string& topic) const;

    RouterSettings settings_;
    std::optional<nlohmann::json::json_pointer> route_pointer_;
    mutable std::shared_mutex mu_;
    struct Route {
        Handler fn;
        RouteAccess access = RouteAccess::authenticated;
    };
    std::map<std::string, Route, std::less<>> handlers_;
    std::map<std::string, std::map<std::string, Route, std::less<>>, std::less<>> action_handlers_;
};

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
// The router's definitions need the complete Gateway; gateway.hpp brings both.
#include <wsgate/gateway.hpp>
#endif

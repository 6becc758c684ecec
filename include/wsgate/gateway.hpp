#pragma once
/** @file gateway.hpp The facade: connect → authorize → store; message → limits → route; publish → fan-out. */

#include <wsgate/audience.hpp>
#include <wsgate/detail/config.hpp>
#include <wsgate/authorizer.hpp>
#include <wsgate/bus.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/connection.hpp>
#include <wsgate/connection_store.hpp>
#include <wsgate/end_reason.hpp>
#include <wsgate/envelope.hpp>
#include <wsgate/error.hpp>
#include <wsgate/event_router.hpp>
#include <wsgate/metrics.hpp>
#include <wsgate/transport.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace wsgate {

/// What to do when a limit is broken.
enum class LimitPolicy {
    reply_error,  ///< answer an error envelope; the connection survives
    close,        ///< close the connection (1009 for size, 1008 for rate)
};

/// Gateway settings; every field has a working default.
struct GatewaySettings {
    /// This node's id (stored on every record). When empty, the store's stable_node_id() (SQLite
    /// keeps one in its file), else a random id.
    std::string node_id;
    /**
     * How long this node's lease in the store lasts without renewal; 0 turns leases off. At
     * construction the Gateway removes the records a previous incarnation of its node id left
     * behind; sweep() renews the lease (at most every `node_lease`/3) and reaps the records of
     * nodes whose lease ran out, so a node that dies (kill -9) loses its records within
     * `node_lease` + the sweep interval. Not used when `local_delivery_only` is false: connections
     * then outlive the process that accepted them (API Gateway).
     */
    Duration node_lease = std::chrono::seconds{30};
    Duration ttl = std::chrono::hours{1};                 ///< record TTL
    /// No message and no touch() (a pong the transport saw) for this long ends the connection
    /// (EndReason::idle) at the next sweep. 0 = off (API Gateway: 10 min).
    Duration inactivity_timeout = std::chrono::minutes{10};
    Duration max_age = std::chrono::hours{2};             ///< 0 = off (API Gateway: 2 h)
    bool extend_ttl_on_message = false;                   ///< slide `expires_at` on each message (never past the token's `exp`)
    /// Send `{"type":"token_expiring","expires_at":…}` this long before the token's `exp` (once per
    /// token, from sweep()); 0 = off.
    Duration token_expiry_warning = std::chrono::seconds{60};
    std::size_t max_message_bytes = 128 * 1024;
    LimitPolicy oversize_policy = LimitPolicy::reply_error;
    double rate_per_second = 20.0;   ///< token bucket refill; 0 = no rate limit
    double rate_burst = 40.0;        ///< token bucket size
    LimitPolicy rate_policy = LimitPolicy::reply_error;
    std::size_t max_connections_per_user = 20;  ///< 0 = unlimited; beyond it a connect gets 429
    std::size_t max_connections = 0;            ///< per node; 0 = unlimited
    /// Anonymous connections per source IP on this node (429 beyond it); 0 = unlimited.
    /// Connections without a source IP (in-process hosts) are not counted.
    std::size_t max_anonymous_per_ip = 8;
    /// Deliver only to connections this node accepted (true when the store is shared and a bus
    /// carries publishes to the others). False for API Gateway, where any process reaches all.
    std::optional<bool> local_delivery_only;
    RouterSettings router;
};

/// The result of on_connect().
struct ConnectResult {
    bool accepted = false;
    ConnectionId id;       ///< the new connection's id when accepted
    int status = 401;      ///< 200, or 401/403/429/503 on denial
    std::string reason;    ///< denial reason code (`missing_token`, `too_many_connections`, ...)
    Principal principal;
};

/// How a subscribe to a topic with history resumed its stream (docs/delivery.md).
struct Recovery {
    /// A position to resume from was given (`since`) or found (the device cursor).
    bool attempted = false;
    /// Everything after that position was replayed: no gap. False: the client must resync.
    bool recovered = false;
    /// Why not: `epoch_changed`, `too_old`, `unknown_position` (ahead of the stream),
    /// `store_unavailable`; empty when recovered.
    std::string reason;
    std::size_t missed = 0;    ///< publications replayed
    std::string from;          ///< `since` or `cursor`
};

/// The result of Gateway::subscribe() and Gateway::unsubscribe().
struct SubscriptionResult {
    /// Empty on success; else protocol_errc::forbidden (403), too_many_subscriptions (429),
    /// unknown_connection (410) or store_unavailable (503).
    std::error_code error;
    bool changed = false;  ///< subscribe: newly subscribed; unsubscribe: it was subscribed
    /// The topic's stream position when the subscription took effect (topics with history).
    std::optional<StreamPosition> position;
    Recovery recovery;
    [[nodiscard]] explicit operator bool() const noexcept { return !error; }
};

/// How Gateway::subscribe() resumes a topic's stream.
struct SubscribeOptions {
    /// The last position the client received. Empty: the device's cursor if the topic's rule
    /// keeps cursors, else the subscription starts live.
    std::optional<StreamPosition> since;
    /// Called once the subscription is in place and before any replayed publication is sent
    /// (the `subscribe` route sends its ack here), also on failure.
    std::function<void(const SubscriptionResult&)> before_replay;
};

/// The result of Gateway::history().
struct HistoryResult {
    std::error_code error;  ///< forbidden, history_off (400) or store_unavailable
    StreamPosition position;
    std::vector<std::string> frames;  ///< the publications as subscribers got them, oldest first
};

/// One member in Gateway::presence(): a principal and how many connections it has on the topic.
struct PresenceEntry {
    PrincipalKind kind = PrincipalKind::user;
    std::string user_id;
    std::string device_id;
    std::size_t connections = 0;
};

/// The result of Gateway::presence().
struct PresenceResult {
    std::error_code error;  ///< forbidden, presence_off (400) or store_unavailable
    std::vector<PresenceEntry> members;  ///< one per (kind, user, device), ordered
    std::size_t connections = 0;
    std::size_t users = 0;  ///< distinct non-empty user ids
};

/// The result of sweep().
struct SweepReport {
    std::size_t ttl_expired = 0;
    std::size_t token_expired = 0;
    std::size_t token_warnings = 0;  ///< `token_expiring` events sent
    std::size_t idle = 0;
    std::size_t max_age = 0;
    std::size_t node_lost = 0;  ///< records of other nodes whose lease ran out, reaped
    /// This node's connections registered again because the store had lost them (see
    /// Gateway::health()); 0 on most sweeps.
    std::size_t reregistered = 0;
};

/// The size of a Gateway's delivery index (Gateway::local_index_size()).
struct LocalIndexSize {
    std::size_t topics = 0;            ///< topics with at least one subscriber on this node
    std::size_t subscriptions = 0;     ///< (topic, connection) entries
    std::size_t users = 0;             ///< users with at least one connection on this node
    std::size_t user_connections = 0;  ///< (user, connection) entries
    [[nodiscard]] bool empty() const noexcept { return topics == 0 && subscriptions == 0 && users == 0 && user_connections == 0; }
};

/// What Gateway::health() finds: whether the shared store and the bus are serving this node.
struct GatewayHealth {
    /// No store call failed in the last 5 s, the last probe of this node's lease reached the
    /// store, and the connections are registered there (after a loss, once they are again).
    bool store_ok = true;
    /// The bus says it is connected, and no bus publish failed in the last 5 s (true without a bus).
    bool bus_ok = true;
    [[nodiscard]] bool ok() const noexcept { return store_ok && bus_ok; }
    /// `ok` or `degraded`, as `/healthz` reports it.
    [[nodiscard]] const char* status() const noexcept { return ok() ? "ok" : "degraded"; }
};

/**
 * The domain logic of a real-time WebSocket back end, with no I/O of its own.
 *
 * @code
 * auto store = std::make_shared<wsgate::InMemoryConnectionStore>();
 * auto transport = std::make_shared<wsgate::InMemoryTransport>();
 * wsgate::Gateway gw{{}, store, transport, std::make_shared<wsgate::AnonymousAuthorizer>()};
 * auto c = gw.on_connect({});
 * transport->open(c.id);
 * gw.on_message(c.id, R"({"type":"subscribe","topic":"news"})");
 * gw.publish(wsgate::Envelope{"headline"}.data("hi"), wsgate::Audience::topic("news"));
 * @endcode
 *
 * The per-message path never throws: plug-in failures are caught, counted and answered.
 * @par Thread Safety Safe: many socket threads may call every member at once.
 */
class Gateway {
public:
    using EndHook = std::function<void(const ConnectionRecord&, EndReason)>;

    Gateway(GatewaySettings settings, std::shared_ptr<ConnectionStore> store,
            std::shared_ptr<Transport> transport, std::shared_ptr<Authorizer> authorizer,
            std::shared_ptr<const Clock> clock = std::make_shared<SystemClock>(),
            std::shared_ptr<Bus> bus = nullptr);
    Gateway(const Gateway&) = delete;
    Gateway& operator=(const Gateway&) = delete;
    ~Gateway();

    /// Authorizes and registers a connection. The transport must accept sends to the returned id
    /// as soon as this returns (open the socket's queue first, or register it right after).
    ConnectResult on_connect(const ConnectRequest& request);
    /// Registers an already-authorized connection (API Gateway's authorizer ran upstream).
    ConnectResult on_connect(const ConnectRequest& request, Principal principal);
    /// Handles one text message from `id`: limits, parse, route. Replies go through the Transport.
    /// Returns the error answered to the client, or an empty code. A connection past its deadline
    /// (token `exp` or TTL) is ended instead (unknown_connection), even before the next sweep().
    std::error_code on_message(const ConnectionId& id, std::string_view text);
    /// The client or socket closed.
    void on_disconnect(const ConnectionId& id);
    /**
     * Notes activity that is not a message (a WebSocket pong): restarts the connection's
     * `inactivity_timeout`. Cheap enough for every pong: updates this node's copy only, no store
     * call. Returns false if this node does not hold `id`.
     */
    bool touch(const ConnectionId& id);
    /// Publishes to an audience on every node (through the bus, if any) and delivers locally.
    BroadcastReport publish(const Envelope& e, const Audience& a);
    /// Sends `e` to one connection.
    SendStatus send_to(const ConnectionId& id, const Envelope& e);
    /// Sends to all of `user_id`'s connections except those of `except_device` (if non-empty).
    BroadcastReport send_to_user(const std::string& user_id, const Envelope& e, std::string except_device = {});
    /**
     * Ends connections past TTL, token expiry, inactivity timeout or maximum age; sends due
     * `token_expiring` events; renews this node's lease and reaps the records of nodes whose lease
     * ran out (see GatewaySettings::node_lease). Call it every second or so.
     *
     * With leases on, each sweep also asks the store whether this node's lease is still there. If
     * it is not (the store restarted empty, or reaped this node after an outage longer than the
     * lease), the node registers its live connections and their subscriptions again, so delivery
     * and presence resume without clients reconnecting (docs/stores.md, "Store and bus outages").
     */
    SweepReport sweep(TimePoint now);
    SweepReport sweep() { return sweep(clock_->now()); }
    /**
     * The one reaper: removes the record once, closes the socket once with `close_code_for(r)`,
     * counts the reason and calls the end hook. Idempotent: returns true only for the call that
     * ended it. `code` overrides the close code (e.g. 1009 for an oversize policy close).
     */
    bool end(const ConnectionId& id, EndReason r, std::string_view reason_text = {},
             std::optional<CloseCode> code = {});
    /// Replaces a live connection's principal (token refresh). False if unknown.
    bool refresh_principal(const ConnectionId& id, Principal p, std::optional<TimePoint> new_expiry = {});
    /**
     * Runs the Authorizer again for a live connection that presents a new token (the built-in
     * `refresh` route). The ConnectRequest carries the connection's id, source IP and user agent,
     * and `token` as query parameter `token`, as `Authorization: Bearer` and as a
     * `Sec-WebSocket-Protocol: bearer, <token>` entry. A throwing authorizer is a 401 `auth_error`.
     */
    [[nodiscard]] AuthDecision reauthorize(const ConnectionRecord& rec, const std::string& token);
    /// The deadline of a connection holding `p` at `now`: the earlier of its TTL deadline and `p.expires_at`.
    [[nodiscard]] TimePoint deadline_for(const ConnectionRecord& rec, const Principal& p, TimePoint now) const;

    // ---- topic policy: GatewaySettings::router.topic_rules (first matching rule wins) ------

    /// The first rule matching `topic`, or nullptr.
    [[nodiscard]] const TopicRule* rule_for(std::string_view topic) const noexcept;
    /// May `p` subscribe to (and receive) `topic`? See TopicRule for the table.
    [[nodiscard]] bool may_read(const Principal& p, std::string_view topic) const noexcept;
    /// May `p` publish to `topic` from a client? Only a user holding the matching rule's non-empty
    /// `publish_permission`.
    [[nodiscard]] bool may_publish(const Principal& p, std::string_view topic) const noexcept;
    /// The permission a topic's audience must hold ("" if none).
    [[nodiscard]] std::string read_permission(std::string_view topic) const;

    // ---- subscriptions --------------------------------------------------------------------

    /**
     * Subscribes `rec.id` to `topic` if `rec.principal` may read it, within
     * RouterSettings::max_subscriptions. The cap is checked and applied by the store in one step
     * (ConnectionStore::subscribe_capped), so concurrent subscribes of one connection never exceed
     * it; a refused subscribe changes nothing. Subscribing to a topic held already succeeds
     * (`changed` false), even at the cap. Never throws: a store failure is store_unavailable.
     */
    SubscriptionResult subscribe(const ConnectionRecord& rec, const std::string& topic);
    /**
     * subscribe() that resumes a topic's stream: on a topic with history, after the subscription
     * is in place, replays every kept publication after `o.since` (or the device cursor) in
     * order, then continues live. On this node the hand-over is atomic per connection: live
     * publications arriving during the replay are held and sent after it, and none is sent twice
     * (by offset). `result.recovery` says whether it recovered and, if not, why.
     */
    SubscriptionResult subscribe(const ConnectionRecord& rec, const std::string& topic, const SubscribeOptions& o);
    /// The last `limit` kept publications of `topic` for a reader `p` (capped at the rule's
    /// history_size).
    HistoryResult history(const Principal& p, const std::string& topic, std::size_t limit);
    /**
     * Saves `rec`'s device cursor on `topic` (cumulative: it never moves back within an epoch).
     * Errors: forbidden (not readable), cursors_off (the rule keeps none, or the principal has no
     * device id), bad_position (ahead of the stream or of another epoch), store_unavailable.
     */
    std::error_code acknowledge(const ConnectionRecord& rec, const std::string& topic, const StreamPosition& p);
    /// Who is subscribed to `topic`, for a reader `p`, when its rule enables presence.
    PresenceResult presence(const Principal& p, const std::string& topic);
    /// The key device cursors are kept under: kind, user id and device id; empty without a device id.
    [[nodiscard]] static std::string device_key(const Principal& p);
    /// Removes `id`'s subscription to `topic`; `changed` tells whether it had one. Never throws.
    SubscriptionResult unsubscribe(const ConnectionId& id, const std::string& topic);
    /**
     * Drops each of `id`'s subscriptions that `p` may not read (after a token refresh narrowed its
     * permissions) and returns those topics. Never throws: on a store failure returns what it
     * dropped so far.
     */
    std::vector<std::string> drop_unreadable(const ConnectionId& id, const Principal& p);

    /// Called after a connection ended (from the thread that ended it).
    void set_end_hook(EndHook h);

    [[nodiscard]] EventRouter& router() noexcept { return *router_; }
    [[nodiscard]] ConnectionStore& store() noexcept { return *store_; }
    [[nodiscard]] Transport& transport() noexcept { return *transport_; }
    [[nodiscard]] Metrics& metrics() noexcept { return metrics_; }
    [[nodiscard]] const Metrics& metrics() const noexcept { return metrics_; }
    [[nodiscard]] const Clock& clock() const noexcept { return *clock_; }
    [[nodiscard]] const GatewaySettings& settings() const noexcept { return settings_; }
    [[nodiscard]] const std::string& node_id() const noexcept { return settings_.node_id; }
    /// The number of connections this node holds.
    [[nodiscard]] std::size_t local_count() const;
    /**
     * The size of this node's delivery index: its own connections per topic and per user, kept
     * in step with subscribe, unsubscribe, token refresh and end. Every entry belongs to a
     * connection local_count() counts; all zero once every connection ended.
     */
    [[nodiscard]] LocalIndexSize local_index_size() const;
    /// Whether the store and the bus are serving this node (what `/healthz` reports).
    [[nodiscard]] GatewayHealth health() const;

    /**
     * Delivers a frame to this node's share of `a` (what the bus handler calls). `offset` is the
     * frame's position in the topic's stream (0: none), which recovering connections need.
     * With `local_delivery_only` (a shared store), the audience comes from this node's own index
     * (no store call; the cost follows the audience's local members); otherwise from
     * ConnectionStore::resolve(), and from the index only while the store fails (degraded).
     */
    BroadcastReport deliver_local(const Payload& payload, const Audience& a, std::uint64_t offset = 0);
    /// Sends an error envelope to one connection; a non-null `ref` is echoed.
    void send_error(const ConnectionId& id, int status, std::string_view message,
                    const nlohmann::json& ref = nullptr);

private:
    struct Local;
    struct LocalIndex;
    using GatedList = std::vector<std::pair<ConnectionId, std::shared_ptr<Local>>>;
    std::shared_ptr<Local> local_of(const ConnectionId& id) const;
    Audience with_topic_permission(const Audience& a) const;
    /// Sends a publication to the bus and to this node's share of `a`.
    BroadcastReport fan_out(const Payload& payload, const Audience& a, std::uint64_t offset);
    /// Sends `payload` (offset `offset` of `topic`) to a connection that recovered that topic:
    /// held while its replay runs, dropped if the replay sent it already.
    SendStatus send_gated(Local& local, const ConnectionId& id, const std::string& topic, std::uint64_t offset,
                          const Payload& payload);
    /// Sends `{"type":"join"|"leave",...}` about `member` to `topic`'s other subscribers.
    void announce(const std::string& type, const std::string& topic, const ConnectionRecord& member);
    [[nodiscard]] static HistoryRetention retention_of(const TopicRule& r) noexcept;
    [[nodiscard]] static TimePoint not_before(const TopicRule& r, TimePoint now) noexcept;
    ConnectResult admit(const ConnectRequest& request, Principal principal);
    /// Gives back one of `ip`'s anonymous connection slots; the caller holds local_mu_.
    void release_anonymous_slot(const std::string& ip);
    bool renew_lease(TimePoint now, bool force);
    /// Asks the store whether this node's lease is still held; registers every live connection
    /// again if not. Returns how many it registered.
    std::size_t check_registration(TimePoint now);
    /// This node's share of `a`, from its delivery index and its copies of the records: the
    /// selection and Audience::admits() as ConnectionStore::resolve() applies them. With `gated`,
    /// connections that recovered a topic go there instead of into the result's ids.
    ResolvedAudience resolve_local(const Audience& a, GatedList* gated = nullptr) const;
    /// resolve_local() into `out` (reset first), reusing the storage of its ids.
    void resolve_local_into(const Audience& a, GatedList* gated, ResolvedAudience& out) const;
    /// Keeps the local copy of `id`'s topics, and the index, in step with the store (call it
    /// holding the connection's `subs_mu`, with the store call); true if it held `topic` before.
    /// `indexed`, if given, is set to whether the index changed (an entry added or removed).
    bool note_topic(const ConnectionId& id, const std::string& topic, bool subscribed, bool* indexed = nullptr);
    /// Takes `local` (its user and topics) out of the index; the caller holds local_mu_ uniquely.
    /// Appends the routes of the entries it removed to `released`, if given.
    void unindex(Local& local, std::vector<BusRoute>* released = nullptr);
    /// With a routed bus, one listen() per index entry (a local connection in a topic, a local
    /// connection of a user), called before the entry is added; a failure is counted and the
    /// subscribe or connect goes on. Never called holding local_mu_ or a `subs_mu`.
    void bus_listen(const BusRoute& route);
    /// The unlisten() of each route whose index entry went away (no locks held).
    void bus_unlisten(const std::vector<BusRoute>& routes);
    /// Counts a store (bus) failure and notes when it happened, for health().
    void store_failed() noexcept;
    void bus_failed() noexcept;
    void finish(const ConnectionRecord& rec, EndReason r, bool was_local, std::string_view reason_text,
                std::optional<CloseCode> code = {});

    GatewaySettings settings_;
    std::shared_ptr<ConnectionStore> store_;
    std::shared_ptr<Transport> transport_;
    std::shared_ptr<Authorizer> authorizer_;
    std::shared_ptr<const Clock> clock_;
    std::shared_ptr<Bus> bus_;
    std::unique_ptr<EventRouter> router_;
    Metrics metrics_;
    bool local_only_ = false;
    bool leases_ = false;
    bool bus_routed_ = false;  ///< bus_ delivers by interest: the index's entries are listened for

    std::mutex lease_mu_;
    std::optional<TimePoint> lease_renewed_;  // empty until a renewal succeeded (or after one failed)
    std::mutex register_mu_;                  // one check_registration() at a time
    bool reregister_due_ = false;             // the lease was lost; guarded by register_mu_
    std::atomic<bool> store_lost_{false};     // the last probe failed, or a re-registration is due
    std::atomic<std::int64_t> store_failed_at_{0}, bus_failed_at_{0};  // steady clock, ns; 0 = never
    std::mutex unremoved_mu_;
    std::vector<ConnectionId> unremoved_;  // ended while the store failed: removed by a later sweep

    std::mutex connect_mu_;
    mutable std::shared_mutex local_mu_;
    /// Keyed by a view of the Local's own `rec.id` (never changed; the entry holds the Local).
    std::unordered_map<std::string_view, std::shared_ptr<Local>> local_;
    std::unique_ptr<LocalIndex> index_;  ///< guarded by local_mu_ (see LocalIndex)
    std::unordered_map<std::string, std::size_t> anonymous_per_ip_;  ///< guarded by local_mu_
    std::atomic<std::size_t> gated_{0};  ///< local connections that recovered a topic (see send_gated)
    mutable std::mutex hook_mu_;
    EndHook end_hook_;
};

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/gateway-inl.hpp>
#include <wsgate/impl/event_router-inl.hpp>
#endif

#pragma once
/** @file redis_bus.hpp A Bus over Redis pub/sub, routed by topic and user (`wsgate::redis`). */

#include <wsgate/bus.hpp>
#include <wsgate/redis/redis_endpoint.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace wsgate {

/// Settings for RedisBus; every field has a working default.
struct RedisBusSettings {
    RedisEndpoint endpoint;
    /// The common channel every node subscribes to, and the prefix of the per-route channels.
    std::string channel = "wsgate:bus";
    /**
     * Route publishes by topic and user: a topic publish goes on `<channel>:t:<topic>`, a user
     * publish on `<channel>:u:<user>` (Redis 7 sharded pub/sub: SPUBLISH, SSUBSCRIBE), and a node
     * subscribes to those only while it has local members; everything else goes on `channel`.
     * False: every publish goes on `channel` and every node receives all of them (wsgate 0.1's
     * bus). All nodes of a cluster must agree: a node with false (or a 0.1 node) never hears the
     * topic and user channels, so its clients miss what routing nodes publish to them (a routing
     * node does deliver what arrives on `channel`). Upgrade a 0.1 cluster with false on every
     * node first, then switch every node to true.
     */
    bool per_topic_channels = true;
    /// An Audience::users publish to at most this many distinct users goes as one message per
    /// user on the users' channels; with more, as one message on the common channel.
    std::size_t max_user_routes = 32;
    /// Reconnect delay after the first failure; doubles on each further failure...
    Duration reconnect_initial = std::chrono::milliseconds{50};
    /// ...up to this cap.
    Duration reconnect_max = std::chrono::milliseconds{2000};
    /// After this long without traffic the subscriber PINGs; unanswered for as long again, it
    /// reconnects (a frozen server or a silently dropped connection). 0 turns it off.
    Duration health_check_interval = std::chrono::seconds{5};
};

/// Counters of a RedisBus (monotonic unless marked as a gauge).
struct RedisBusStats {
    std::uint64_t published = 0;         ///< publishes Redis accepted (each publish() once, whatever its legs)
    std::uint64_t publish_failures = 0;  ///< publishes that failed (Redis unreachable)
    std::uint64_t received = 0;          ///< messages the handler has been through
    std::uint64_t malformed = 0;         ///< messages on the channels that did not decode
    std::uint64_t reconnects = 0;        ///< subscriber reconnections after a lost connection
    std::uint64_t route_messages = 0;    ///< messages Redis accepted on per-route channels (SPUBLISH)
    std::uint64_t channels = 0;          ///< gauge: channels subscribed at the server now, the common one included
    std::uint64_t routes = 0;            ///< gauge: routes with at least one listen()
    std::uint64_t listen_failures = 0;   ///< listen() calls that returned false (timed out, or Redis known down)
    std::uint64_t route_subscribes = 0;  ///< SSUBSCRIBE commands sent (resubscriptions after a reconnect included)
    std::uint64_t route_unsubscribes = 0;  ///< SUNSUBSCRIBE commands sent
    std::uint64_t subscribe_errors = 0;  ///< error replies on the subscriber connection (it reconnects)
};

/**
 * Bus over Redis pub/sub. A dedicated subscriber connection runs on its own thread and reconnects
 * with capped exponential backoff when Redis goes away; publish() uses another connection, which
 * also reconnects (not more often than the backoff allows) and returns false while Redis is down,
 * so the Gateway can count the gap. Pub/sub is at-most-once: messages published while this node's
 * subscriber is disconnected are not replayed.
 *
 * Routing (RedisBusSettings::per_topic_channels, the default; needs Redis 7): a node receives a
 * topic's or a user's publishes only while it has local members (listen()). Every node subscribes
 * to the common channel (SUBSCRIBE), which carries Audience::everyone, Audience::connections and
 * Audience::users beyond `max_user_routes`. A topic goes on `<channel>:t:<topic>`, a user on
 * `<channel>:u:<user>`, with SPUBLISH and one SSUBSCRIBE per channel, so each can go to its shard
 * once Redis Cluster is supported. listen() returns when Redis confirmed a subscription that no
 * SUNSUBSCRIBE followed; the last unlisten() of a route unsubscribes it. After a reconnect the
 * common channel and every route with listeners are subscribed again before subscribed() turns
 * true.
 *
 * Order: publish() calls are serialized on one connection, so another node receives one node's
 * messages on one channel in the order it published them. On one Redis server the subscriber
 * connection also receives them in that order across channels (a topic and a user, two topics);
 * with Redis Cluster, order would hold per channel only.
 *
 * @code
 * auto bus = std::make_shared<wsgate::RedisBus>(wsgate::RedisBusSettings{});
 * wsgate::Gateway gw{settings, store, transport, authorizer, clock, bus};
 * @endcode
 * @par Thread Safety Safe: publish() may be called from any thread (serialized on one connection);
 * the handler runs on the bus thread.
 */
class RedisBus final : public Bus {
public:
    /// Starts the subscriber thread; never blocks on the network.
    explicit RedisBus(RedisBusSettings settings = {});
    /// Stops the subscriber thread.
    ~RedisBus() override;

    bool publish(const BusMessage& m) override;
    /// Replaces the handler; when it returns, the previous handler is not running and will not run
    /// again. Must not be called from inside the handler.
    void set_handler(Handler h) override;

    /// True if `settings().per_topic_channels`.
    [[nodiscard]] bool routed() const noexcept override;
    /**
     * Counts one listener of `route` and waits (at most the endpoint's command_timeout) until its
     * channel is subscribed at the server; false (counted in listen_failures) if that did not
     * happen in time, and false at once while the bus knows Redis is unreachable (its last
     * connection attempt or session failed), so an outage costs no caller a timeout. The count
     * stays either way: the channel is subscribed when Redis is back.
     * `everyone` waits for the common channel. Returns true at once without routing.
     */
    bool listen(const BusRoute& route) override;
    /// Drops one listener of `route`; the last one unsubscribes its channel (SUNSUBSCRIBE).
    void unlisten(const BusRoute& route) override;
    /// The Redis channel a route travels on (the common channel for `everyone` or without routing).
    [[nodiscard]] std::string channel_of(const BusRoute& route) const;

    /// True while the subscriber is connected and subscribed (common channel and every route).
    [[nodiscard]] bool subscribed() const noexcept;
    /// subscribed(): a bus that cannot hear the other nodes is not healthy.
    [[nodiscard]] bool healthy() const noexcept override { return subscribed(); }
    /// Waits until subscribed() (or `timeout` passes); what a test does before publishing.
    bool wait_subscribed(Duration timeout);
    [[nodiscard]] RedisBusStats stats() const noexcept;
    [[nodiscard]] const RedisBusSettings& settings() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace wsgate

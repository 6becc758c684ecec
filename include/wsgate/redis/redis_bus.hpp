#pragma once
/** @file redis_bus.hpp A Bus over Redis pub/sub (`wsgate::redis`). */

#include <wsgate/bus.hpp>
#include <wsgate/redis/redis_endpoint.hpp>

#include <cstdint>
#include <memory>
#include <string>

namespace wsgate {

/// Settings for RedisBus; every field has a working default.
struct RedisBusSettings {
    RedisEndpoint endpoint;
    std::string channel = "wsgate:bus";
    /// Reconnect delay after the first failure; doubles on each further failure...
    Duration reconnect_initial = std::chrono::milliseconds{50};
    /// ...up to this cap.
    Duration reconnect_max = std::chrono::milliseconds{2000};
    /// After this long without traffic the subscriber PINGs; unanswered for as long again, it
    /// reconnects (a frozen server or a silently dropped connection). 0 turns it off.
    Duration health_check_interval = std::chrono::seconds{5};
};

/// Counters of a RedisBus (monotonic).
struct RedisBusStats {
    std::uint64_t published = 0;         ///< publishes Redis accepted
    std::uint64_t publish_failures = 0;  ///< publishes that failed (Redis unreachable)
    std::uint64_t received = 0;          ///< messages the handler has been through
    std::uint64_t malformed = 0;         ///< messages on the channel that did not decode
    std::uint64_t reconnects = 0;        ///< subscriber reconnections after a lost connection
};

/**
 * Bus over Redis pub/sub. A dedicated subscriber connection runs on its own thread and reconnects
 * with capped exponential backoff when Redis goes away; publish() uses another connection, which
 * also reconnects (not more often than the backoff allows) and returns false while Redis is down,
 * so the Gateway can count the gap. Pub/sub is at-most-once: messages published while this node's
 * subscriber is disconnected are not replayed.
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

    /// True while the subscriber is connected and subscribed.
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

#pragma once
/** @file bus.hpp Plug point: carries publishes between nodes (Redis pub/sub in `wsgate::redis`). */

#include <wsgate/detail/config.hpp>
#include <wsgate/audience.hpp>

#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace wsgate {

/// One publish as it crosses nodes: the serialized frame and the audience to resolve locally.
struct BusMessage {
    std::string origin_node;  ///< the publishing node; it does not deliver its own message twice
    Audience audience;
    std::string payload;      ///< the serialized envelope
    /// The publication's offset in its topic's stream (0: the topic keeps no stream), so receiving
    /// nodes hand it over to recovering connections without parsing the payload.
    std::uint64_t offset = 0;
};

/**
 * What a routed bus delivers by: every node (`everyone`), the nodes with local subscribers of one
 * topic, or the nodes with local connections of one user.
 * @par Thread Safety Value type.
 */
struct BusRoute {
    enum class Kind { everyone, topic, user };
    Kind kind = Kind::everyone;
    std::string name;  ///< the topic or the user id; empty for `everyone`

    static BusRoute everyone() { return {}; }
    static BusRoute topic(std::string t) { return {Kind::topic, std::move(t)}; }
    static BusRoute user(std::string u) { return {Kind::user, std::move(u)}; }
    friend bool operator==(const BusRoute&, const BusRoute&) = default;
    friend auto operator<=>(const BusRoute&, const BusRoute&) = default;
};

/// One leg of a publish on a routed bus: the route it travels on and the message it carries.
struct RoutedBusMessage {
    BusRoute route;
    BusMessage message;
};

/**
 * The route(s) `m` travels on: `everyone` for Audience::everyone and Audience::connections; the
 * topic for Audience::topic; for Audience::user and Audience::users with at most
 * `max_user_routes` distinct users, one message per user, narrowed to Audience::user with the
 * exclusions and required permission kept (a connection has one user, so no node delivers one
 * twice); with more users, `everyone`. Empty user ids select no connection and get no leg; an
 * audience with no user at all gives no leg.
 */
[[nodiscard]] std::vector<RoutedBusMessage> route_bus_message(const BusMessage& m, std::size_t max_user_routes = 32);

/// The JSON wire form of a bus message (what RedisBus publishes).
[[nodiscard]] std::string encode_bus_message(const BusMessage& m);
/// Parses encode_bus_message(); false (and `out` untouched) on malformed input.
[[nodiscard]] bool decode_bus_message(std::string_view text, BusMessage& out);

/**
 * Publishes to and receives from the other nodes.
 *
 * A plain bus carries every publish to every node. A routed bus (routed() true) carries a
 * publish only to the nodes that declared interest in one of its routes (route_bus_message()):
 * the Gateway calls listen() once per local connection that joins a topic and per local
 * connection of a user, and unlisten() when it leaves; `everyone` needs no listen. The defaults
 * describe a plain bus, so an implementation that overrides none of them keeps working.
 * @par Thread Safety Implementations must be safe for concurrent publish(), listen() and
 * unlisten(); the handler may be called from a bus thread.
 */
class Bus {
public:
    using Handler = std::function<void(const BusMessage&)>;
    Bus() = default;
    Bus(const Bus&) = delete;
    Bus& operator=(const Bus&) = delete;
    virtual ~Bus() = default;

    /// Sends to every node (including, possibly, this one). Returns false if it could not.
    virtual bool publish(const BusMessage& m) = 0;
    /// Sets the function called for each message received. Called once, before traffic.
    virtual void set_handler(Handler h) = 0;
    /// False while the bus knows it cannot carry messages (e.g. its connection is down); reported
    /// by Gateway::health(). The default says true.
    [[nodiscard]] virtual bool healthy() const noexcept { return true; }

    /// True if the bus delivers by interest (listen()), false if every node receives everything.
    [[nodiscard]] virtual bool routed() const noexcept { return false; }
    /**
     * Adds one unit of interest in `route` (the bus counts them per route). Returns once messages
     * published on `route` from then on reach this node's handler, or false after a bounded wait
     * when it cannot say so (its connection is down); the interest is kept either way, and the bus
     * subscribes when it can. Every call, whatever it returned, is balanced by one unlisten().
     * Blocks on the network: never call it holding a lock the handler needs. The default (a plain
     * bus hears everything) returns true.
     */
    virtual bool listen(const BusRoute& route) {
        (void)route;
        return true;
    }
    /// Removes one unit of interest added by listen(); at zero the bus may stop receiving `route`.
    virtual void unlisten(const BusRoute& route) { (void)route; }
};

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/bus-inl.hpp>
#endif

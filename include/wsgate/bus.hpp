#pragma once
/** @file bus.hpp Plug point: carries every publish to every node (Redis pub/sub in `wsgate::redis`). */

#include <wsgate/detail/config.hpp>
#include <wsgate/audience.hpp>

#include <cstdint>
#include <functional>
#include <string>

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

/// The JSON wire form of a bus message (what RedisBus publishes).
[[nodiscard]] std::string encode_bus_message(const BusMessage& m);
/// Parses encode_bus_message(); false (and `out` untouched) on malformed input.
[[nodiscard]] bool decode_bus_message(std::string_view text, BusMessage& out);

/**
 * Publishes to and receives from every node.
 * @par Thread Safety Implementations must be safe for concurrent publish(); the handler may be
 * called from a bus thread.
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
};

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/bus-inl.hpp>
#endif

#pragma once
/** @file transport.hpp Plug point: how bytes reach a connection. */

#include <wsgate/detail/config.hpp>
#include <wsgate/connection.hpp>
#include <wsgate/envelope.hpp>
#include <wsgate/error.hpp>

#include <span>
#include <string_view>

namespace wsgate {

/// Outcome of one send.
enum class SendStatus {
    ok,            ///< queued (or delivered)
    gone,          ///< the peer no longer exists (API Gateway 410); the Gateway removes the record
    backpressure,  ///< the connection's bounded queue is full; the frame was dropped
    error,         ///< any other failure; the connection is kept
};

[[nodiscard]] std::string_view to_string(SendStatus s) noexcept;

/**
 * How frames reach connections. A send only queues: it must never block on the network.
 *
 * Implementations: InMemoryTransport, the Beast WebSocket server (`wsgate::beast`), API Gateway
 * @connections (`wsgate::aws`).
 *
 * @par Thread Safety
 * Implementations must be safe for concurrent use from many threads.
 */
class Transport {
public:
    Transport() = default;
    Transport(const Transport&) = delete;
    Transport& operator=(const Transport&) = delete;
    virtual ~Transport() = default;

    /// Queues `payload` for `id`.
    virtual SendStatus send(const ConnectionId& id, const Payload& payload) = 0;
    /**
     * Queues one shared `payload` for every id; `out[i]` receives the status for `ids[i]`
     * (`out.size() == ids.size()`). The default calls send() for each; transports that can do
     * better (parallel HTTP, one lock) override it.
     */
    virtual void send_many(std::span<const ConnectionId> ids, const Payload& payload,
                           std::span<SendStatus> out);
    /// Closes the connection with a WebSocket close code. Idempotent; unknown ids are ignored.
    virtual void close(const ConnectionId& id, CloseCode code, std::string_view reason) = 0;
};

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/transport-inl.hpp>
#endif

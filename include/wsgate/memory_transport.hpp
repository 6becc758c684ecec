#pragma once
/** @file memory_transport.hpp A Transport that queues frames in memory (tests, examples, embedding). */

#include <wsgate/detail/config.hpp>
#include <wsgate/transport.hpp>

#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace wsgate {

/// What InMemoryTransport does when a connection's queue is full.
enum class OverflowPolicy {
    drop_newest,  ///< report backpressure and drop the new frame
    report_gone,  ///< report Gone, as a dead peer would (tests of the Gone path)
};

/**
 * In-memory Transport with a bounded queue per connection. Connections must be open()ed before
 * frames reach them; a send to an unknown or closed id reports Gone, as API Gateway's 410 does.
 *
 * @par Thread Safety Safe.
 */
class InMemoryTransport final : public Transport {
public:
    explicit InMemoryTransport(std::size_t queue_capacity = 1024,
                               OverflowPolicy policy = OverflowPolicy::drop_newest)
        : capacity_(queue_capacity), policy_(policy) {}

    SendStatus send(const ConnectionId& id, const Payload& payload) override;
    void send_many(std::span<const ConnectionId> ids, const Payload& payload,
                   std::span<SendStatus> out) override;
    void close(const ConnectionId& id, CloseCode code, std::string_view reason) override;

    /// Makes `id` reachable. Idempotent.
    void open(const ConnectionId& id);
    /// Makes `id` unreachable without a close (a vanished peer): later sends report Gone.
    void vanish(const ConnectionId& id);
    /// Removes and returns every queued frame for `id`.
    std::vector<std::string> drain(const ConnectionId& id);
    /// The queued frames for `id`, left in place.
    [[nodiscard]] std::vector<std::string> peek(const ConnectionId& id) const;
    /// Number of queued frames for `id`.
    [[nodiscard]] std::size_t queued(const ConnectionId& id) const;
    /// The close code `id` was closed with, if it was.
    [[nodiscard]] std::optional<CloseCode> close_code(const ConnectionId& id) const;
    /// How many times close() reached an open `id` (the reaper must make this at most 1).
    [[nodiscard]] std::size_t close_count(const ConnectionId& id) const;

private:
    struct Conn {
        std::deque<Payload> queue;
        bool open = true;
        std::optional<CloseCode> closed_with;
        std::size_t closes = 0;
    };
    SendStatus send_locked(const ConnectionId& id, const Payload& payload);

    std::size_t capacity_;
    OverflowPolicy policy_;
    mutable std::mutex mu_;
    std::unordered_map<ConnectionId, Conn> conns_;
};

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/memory_transport-inl.hpp>
#endif

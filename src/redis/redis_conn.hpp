#pragma once
// One hiredis connection with reconnect and typed errors (internal to wsgate::redis).

#include <wsgate/error.hpp>
#include <wsgate/redis/redis_endpoint.hpp>

#include <hiredis/hiredis.h>

#include "redis_cluster.hpp"

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsgate::detail {

struct ReplyDeleter {
    void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

/// Command arguments; views must outlive the call.
using Args = std::vector<std::string_view>;

/// The message of an error reply, or empty.
std::string_view error_of(const redisReply* r) noexcept;
/// Throws StoreError for an error reply (WRONGTYPE → corrupt, READONLY → read_only, LOADING/BUSY →
/// busy, others → unavailable).
void throw_if_error(const redisReply* r, std::string_view what);
std::string_view str_of(const redisReply* r) noexcept;

/**
 * A blocking hiredis connection. Any I/O failure frees the context (the next call reconnects) and
 * throws StoreError(unavailable). Not thread-safe: callers serialize.
 *
 * With a cluster endpoint and a slot, ensure() connects to the master serving that slot (asking
 * the endpoint, the last redirect's target or any master it knew of for the slot map), and a
 * MOVED reply drops the connection so the next ensure() follows it; command() follows it at once.
 * Without a slot, the connection goes to the endpoint as given.
 */
class RedisConn {
public:
    explicit RedisConn(RedisEndpoint ep, int slot = -1, std::shared_ptr<ClusterSeeds> seeds = nullptr)
        : ep_(std::move(ep)), slot_(slot), seeds_(seeds ? std::move(seeds) : std::make_shared<ClusterSeeds>()) {}
    RedisConn(const RedisConn&) = delete;
    RedisConn& operator=(const RedisConn&) = delete;
    ~RedisConn() { reset(); }

    /// Connects (AUTH, SELECT) if not connected; returns true if it had to connect.
    bool ensure();
    /// Connects without throwing; false if the server is unreachable.
    bool try_ensure() noexcept;
    void reset() noexcept;
    /**
     * For a request/response connection between calls (nothing outstanding): if the socket is
     * readable, the server closed it (a restart, a failover) or sent what nobody asked for, so
     * drop it and let the next call reconnect instead of failing on it. One poll(2), no wait.
     * Returns true if it dropped the connection. Never for a subscriber connection.
     */
    bool drop_if_closed() noexcept;
    [[nodiscard]] bool connected() const noexcept { return c_ != nullptr; }
    [[nodiscard]] redisContext* raw() noexcept { return c_; }

    /// One command, one round trip. Error replies are returned, not thrown.
    Reply command(const Args& args);
    /// Queues a command for a pipelined round trip.
    void append(const Args& args);
    /// The next reply of the pipeline.
    Reply next();

    [[nodiscard]] const RedisEndpoint& endpoint() const noexcept { return ep_; }
    /// host:port this connection is (or was last) connected to.
    [[nodiscard]] std::string peer() const;

private:
    [[noreturn]] void io_failure(std::string_view what);
    /// Opens a connection to host:port (AUTH, SELECT); throws StoreError(unavailable).
    void open(const std::string& host, int port);
    /// Cluster mode: connects to the master serving slot_.
    void open_slot_owner();
    /// Drops the connection on a MOVED reply and remembers where the slot went.
    void note_redirect(const redisReply* r);

    RedisEndpoint ep_;
    int slot_ = -1;
    redisContext* c_ = nullptr;
    std::string host_;  // where c_ is (or was last) connected
    int port_ = 0;
    /// Cluster mode: the last MOVED target, tried first, then the seeds.
    std::string hint_host_;
    int hint_port_ = 0;
    std::shared_ptr<ClusterSeeds> seeds_;
};

}  // namespace wsgate::detail

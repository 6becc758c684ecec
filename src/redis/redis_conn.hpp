#pragma once
// One hiredis connection with reconnect and typed errors (internal to wsgate::redis).

#include <wsgate/error.hpp>
#include <wsgate/redis/redis_endpoint.hpp>

#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <string_view>
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
 */
class RedisConn {
public:
    explicit RedisConn(RedisEndpoint ep) : ep_(std::move(ep)) {}
    RedisConn(const RedisConn&) = delete;
    RedisConn& operator=(const RedisConn&) = delete;
    ~RedisConn() { reset(); }

    /// Connects (AUTH, SELECT) if not connected; returns true if it had to connect.
    bool ensure();
    /// Connects without throwing; false if the server is unreachable.
    bool try_ensure() noexcept;
    void reset() noexcept;
    [[nodiscard]] bool connected() const noexcept { return c_ != nullptr; }
    [[nodiscard]] redisContext* raw() noexcept { return c_; }

    /// One command, one round trip. Error replies are returned, not thrown.
    Reply command(const Args& args);
    /// Queues a command for a pipelined round trip.
    void append(const Args& args);
    /// The next reply of the pipeline.
    Reply next();

    [[nodiscard]] const RedisEndpoint& endpoint() const noexcept { return ep_; }

private:
    [[noreturn]] void io_failure(std::string_view what);
    RedisEndpoint ep_;
    redisContext* c_ = nullptr;
};

}  // namespace wsgate::detail

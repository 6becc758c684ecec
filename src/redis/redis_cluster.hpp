#pragma once
// Redis Cluster routing for RedisConn and RedisBus (internal to wsgate::redis): key slots and the
// slot map a cluster reports with CLUSTER SLOTS.

#include <wsgate/redis/redis_endpoint.hpp>

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

namespace wsgate::detail {

class RedisConn;

inline constexpr int cluster_slots = 16384;

/// The cluster slot of a key or channel: CRC16 (XMODEM) of its hash tag (the text between the
/// first `{` and the next `}`, if not empty) or of the whole name, modulo 16384.
[[nodiscard]] int key_slot(std::string_view key) noexcept;

/// True if `key` has a non-empty `{hash tag}`, so keys sharing it share a slot.
[[nodiscard]] bool has_hash_tag(std::string_view key) noexcept;

/// The masters of a cluster and the slots each serves.
class SlotMap {
public:
    struct Range {
        int first = 0;
        int last = 0;
        std::string host;
        int port = 0;
    };

    /// Asks `seed` (CLUSTER SLOTS). A master reported without a host is on `seed`'s host. Throws
    /// StoreError(unavailable) if the server is not a cluster or the reply is unreadable.
    static SlotMap load(RedisConn& seed);

    /// The master serving `slot`, or nullptr if no master serves it (a cluster that is down).
    [[nodiscard]] const Range* owner(int slot) const noexcept;
    [[nodiscard]] bool empty() const noexcept { return ranges_.empty(); }
    [[nodiscard]] const std::vector<Range>& ranges() const noexcept { return ranges_; }

private:
    std::vector<Range> ranges_;  // sorted by first
};

/**
 * The nodes to ask for a slot map: the endpoint first, then the masters the last map named (the
 * endpoint may be the node that went away). Shared by the connections of one store or bus.
 * @par Thread Safety Safe.
 */
class ClusterSeeds {
public:
    using Node = std::pair<std::string, int>;
    /// The endpoint, then the remembered masters (without repeating the endpoint).
    [[nodiscard]] std::vector<Node> candidates(const RedisEndpoint& ep) const;
    /// Remembers the masters of `map`.
    void remember(const SlotMap& map);

private:
    mutable std::mutex mu_;
    std::vector<Node> masters_;
};

/// A MOVED or ASK redirection in an error reply: where the slot is now.
struct Redirect {
    bool moved = false;  ///< MOVED (the slot's owner changed) rather than ASK (migrating)
    int slot = -1;
    std::string host;
    int port = 0;
};
/// Parses "MOVED 3999 127.0.0.1:6381" / "ASK …"; false for any other error.
bool parse_redirect(std::string_view error, Redirect& out);

}  // namespace wsgate::detail

#pragma once
/** @file redis_store.hpp A ConnectionStore in Redis (`wsgate::redis`), shared by every node of a cluster. */

#include <wsgate/connection_store.hpp>
#include <wsgate/redis/redis_endpoint.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate {

/// Settings for RedisConnectionStore; every field has a working default.
struct RedisStoreSettings {
    RedisEndpoint endpoint;
    /// Prefix of every key, so several deployments can share one Redis.
    std::string key_prefix = "wsgate:";
    /// Connections in the pool; each call uses one of them exclusively.
    std::size_t pool_size = 4;
    /// How long a record key outlives its `expires_at` before Redis drops it by itself (the safety
    /// net for a node that died without sweeping).
    Duration key_ttl_grace = std::chrono::minutes{1};
    /// After a call finds Redis unreachable (refused, or no reply within the command timeout),
    /// further calls fail at once for this long instead of each waiting out the timeout, so a
    /// frozen server costs one timeout per interval, not one per call; 0 turns it off.
    Duration retry_after = std::chrono::seconds{1};
};

/**
 * ConnectionStore in Redis, correct when several nodes share one server.
 *
 * Layout (with the default prefix): record hashes `wsgate:conn:<id>` (fields include the owning
 * `node`), topic index sets `wsgate:topic:<t>`, user index sets `wsgate:user:<u>`, a connection's
 * topics `wsgate:subs:<id>`, the expiry sorted set `wsgate:expiry` (score = `expires_at` in Unix
 * ms), the id index `wsgate:ids` (sorted by id, for scan() and count()) and the hash
 * `wsgate:meta` (id → when the record key's TTL fires, and the device, user and permissions that
 * resolve() filters on), node index sets `wsgate:node:<n>` and the lease sorted set
 * `wsgate:leases` (score = lease deadline on the server's clock, in Unix ms), so a lookup checks liveness and filters with one HMGET per 4000
 * members instead of a call per member. Every write is one
 * Lua script, so it is atomic and one round trip; remove() is true for exactly one caller (the
 * script's DEL result). Record, subscription and index keys also carry a native TTL of
 * (`expires_at` − the record's last activity) + `key_ttl_grace`, set relative to the server's
 * clock, so a node that dies never leaves immortal records even if no node sweeps again.
 * Index members whose record is gone are filtered out on read and removed lazily;
 * subscribers(topic) is one round trip however large the topic.
 *
 * Topic streams (supports_streams() is true): per topic, the hash `wsgate:stream:<t>` with fields
 * `epoch` and `top`, and the history `wsgate:history:<t>`, a Redis Stream whose entries have the
 * explicit id `<offset>-1` and the fields `at` (Unix ms, the appending node's clock) and `body`.
 * The epoch is created with HSETNX from a random token the caller sends, so if Redis loses the
 * hash (restart without persistence, FLUSHALL, eviction) the next append creates a fresh epoch and
 * drops any history left under the old one. append() is one script: ensure the epoch, HINCRBY the
 * top, XADD with `MAXLEN = max_count`, then drop entries older than `max_age` from the front (the
 * oldest entries' `at`, so no gap ever opens). With `max_age` > 0 both keys expire together
 * `max_age + key_ttl_grace` after the last append (losing them is signalled by a new epoch);
 * otherwise they are permanent. Reads never write: a topic without the hash reads as {0, ""}.
 * Device cursors are hashes `wsgate:cursor:<len>:<device_key>:<topic>` (`<len>` = the
 * device key's length, so no two pairs share a key) with fields `offset` and `epoch`, saved by a
 * script that keeps the larger offset within an epoch and PEXPIREs the key by `keep_for` (the
 * server's clock) on every save. presence() is one script over the topic set, the meta hash and
 * the record hashes.
 *
 * Uses Lua scripts over keys built inside them: standalone Redis (or a single Cluster slot via a
 * `{hash-tag}` prefix such as `{wsgate}:`).
 *
 * Errors: an unreachable server throws StoreError(`unavailable`); a failed call drops its
 * connection and the next call reconnects.
 *
 * @par Thread Safety Safe: a pool of `pool_size` hiredis connections, each used by one call at a
 * time under its own mutex.
 */
class RedisConnectionStore final : public ConnectionStore {
public:
    /// Connects lazily: construction never blocks on the network.
    explicit RedisConnectionStore(RedisStoreSettings settings = {});
    ~RedisConnectionStore() override;

    void put(const ConnectionRecord& r) override;
    [[nodiscard]] std::optional<ConnectionRecord> get(const ConnectionId& id) override;
    bool remove(const ConnectionId& id) override;
    bool touch(const ConnectionId& id, TimePoint now, std::optional<TimePoint> new_expiry = {}) override;
    bool subscribe(const ConnectionId& id, const std::string& topic) override;
    SubscribeResult subscribe_capped(const ConnectionId& id, const std::string& topic, std::size_t max_topics) override;
    bool unsubscribe(const ConnectionId& id, const std::string& topic) override;
    [[nodiscard]] std::vector<std::string> topics_of(const ConnectionId& id) override;
    [[nodiscard]] std::vector<ConnectionId> subscribers(const std::string& topic) override;
    [[nodiscard]] std::vector<ConnectionId> connections_of_user(const std::string& user_id) override;
    [[nodiscard]] ScanPage scan(const std::string& cursor, std::size_t limit) override;
    std::vector<ConnectionRecord> expire(TimePoint now) override;
    /// Records in the id index (records dropped by key TTL count until the next expire()).
    [[nodiscard]] std::size_t count() override;
    [[nodiscard]] ResolvedAudience resolve(const Audience& a) override;
    [[nodiscard]] bool shared() const noexcept override { return true; }
    std::size_t remove_node(const std::string& node_id) override;
    /// Leases are measured on the Redis server's clock (`now` is not used), so clock skew between
    /// nodes never makes a live node look dead.
    void renew_lease(const std::string& node_id, TimePoint now, Duration lease) override;
    /// On the server's clock, as leases are renewed.
    [[nodiscard]] bool holds_lease(const std::string& node_id, TimePoint now) override;
    /// Compares lease deadlines with the Redis server's clock (`now` is not used).
    std::size_t reap_expired_nodes(TimePoint now, std::size_t limit) override;

    [[nodiscard]] bool supports_streams() const noexcept override { return true; }
    /// One script; `at` is `now` (the caller's clock), age trimming compares with `now` too.
    StreamPosition append(const std::string& topic, std::string_view body, TimePoint now,
                          const HistoryRetention& keep) override;
    /**
     * One read-only script call. Age is judged from the front, as
     * append() trims: `first_retained` is the oldest entry with `at` ≥ `not_before`, and every entry
     * after it is returned even if its `at` looks older (clock skew between the appending nodes),
     * so the publications returned never have a gap.
     */
    [[nodiscard]] StreamRead read_stream(const std::string& topic, std::uint64_t after, std::size_t limit,
                                         TimePoint not_before) override;
    [[nodiscard]] StreamRead latest(const std::string& topic, std::size_t limit, TimePoint not_before) override;
    /// `keep_for` is measured on the Redis server's clock (`now` is not used).
    void save_cursor(const std::string& device_key, const std::string& topic, const StreamPosition& p, TimePoint now,
                     Duration keep_for) override;
    [[nodiscard]] std::optional<StreamPosition> load_cursor(const std::string& device_key, const std::string& topic,
                                                            TimePoint now) override;
    /// One script: the topic set, liveness from the meta hash, then each live record's fields.
    [[nodiscard]] std::vector<PresenceMember> presence(const std::string& topic) override;

    /// put() for many records in one pipelined round trip.
    void put_many(std::span<const ConnectionRecord> records);
    /// remove() for many ids in one pipelined round trip; the number that existed.
    std::size_t remove_many(std::span<const ConnectionId> ids);
    /// True if the server answers PING.
    [[nodiscard]] bool ping();

    [[nodiscard]] const RedisStoreSettings& settings() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace wsgate

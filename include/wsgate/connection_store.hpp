#pragma once
/** @file connection_store.hpp Plug point: where connection records, subscriptions and TTLs live. */

#include <wsgate/audience.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/connection.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace wsgate {

/// One page of ConnectionStore::scan(); pass `next_cursor` back until it is empty.
struct ScanPage {
    std::vector<ConnectionRecord> records;
    std::string next_cursor;  ///< empty when the scan is complete
};

/// The connections an Audience resolved to, after exclusions and permission filtering.
struct ResolvedAudience {
    std::vector<ConnectionId> ids;
    std::size_t filtered = 0;  ///< matched the audience kind but were excluded or lacked permission
};

/**
 * Where connection records, topic subscriptions and TTLs live.
 *
 * Implementations: InMemoryConnectionStore (default), SqliteConnectionStore (`wsgate::sqlite`),
 * RedisConnectionStore (`wsgate::redis`). Every implementation passes the contract suite in
 * `tests/contract/`.
 *
 * Errors: backend failures are thrown as StoreError; the Gateway catches them at its boundary.
 * Absent connections are not errors (get() gives nullopt, remove() false).
 *
 * @par Thread Safety
 * Implementations must be safe for concurrent use from many threads.
 */
class ConnectionStore {
public:
    ConnectionStore() = default;
    ConnectionStore(const ConnectionStore&) = delete;
    ConnectionStore& operator=(const ConnectionStore&) = delete;
    virtual ~ConnectionStore() = default;

    /// Inserts or replaces the record with `r.id` (its `topics` field is ignored; subscriptions
    /// of a replaced record are kept).
    virtual void put(const ConnectionRecord& r) = 0;
    /// The record with its `topics` filled, or nullopt.
    [[nodiscard]] virtual std::optional<ConnectionRecord> get(const ConnectionId& id) = 0;
    /// Removes the record and its subscriptions. True if it existed (so exactly one caller of
    /// several racing ones sees true).
    virtual bool remove(const ConnectionId& id) = 0;
    /// Sets `last_seen` (and, if `new_expiry` is given, `expires_at`). False if absent.
    virtual bool touch(const ConnectionId& id, TimePoint now, std::optional<TimePoint> new_expiry = {}) = 0;
    /// Adds a subscription. False if the connection is absent. Idempotent.
    virtual bool subscribe(const ConnectionId& id, const std::string& topic) = 0;
    /// Removes a subscription. False if it did not exist.
    virtual bool unsubscribe(const ConnectionId& id, const std::string& topic) = 0;
    [[nodiscard]] virtual std::vector<std::string> topics_of(const ConnectionId& id) = 0;
    /// The subscribers of `topic`; cost grows with the topic, not with all connections.
    [[nodiscard]] virtual std::vector<ConnectionId> subscribers(const std::string& topic) = 0;
    /// The connections whose principal has `user_id`; indexed.
    [[nodiscard]] virtual std::vector<ConnectionId> connections_of_user(const std::string& user_id) = 0;
    /// Up to `limit` records after `cursor` ("" starts). Order is implementation-defined but stable
    /// across pages; records added or removed during a scan may or may not appear.
    [[nodiscard]] virtual ScanPage scan(const std::string& cursor, std::size_t limit) = 0;
    /// Records whose `expires_at` ≤ `now`, removed and returned (each returned once across callers).
    virtual std::vector<ConnectionRecord> expire(TimePoint now) = 0;
    /// The number of records.
    [[nodiscard]] virtual std::size_t count() = 0;

    /**
     * The connections `a` resolves to, filtered by its exclusions and permission. The default
     * builds on the primitives above; backends override it to do the work in one pass.
     */
    [[nodiscard]] virtual ResolvedAudience resolve(const Audience& a);

    /// True if other processes share this store (Redis): the Gateway then delivers only to its
    /// own node's connections and relies on the Bus for the rest.
    [[nodiscard]] virtual bool shared() const noexcept { return false; }
};

}  // namespace wsgate

#pragma once
/** @file connection_store.hpp Plug point: where connection records, subscriptions and TTLs live. */

#include <wsgate/detail/config.hpp>
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

/// The outcome of ConnectionStore::subscribe_capped().
enum class SubscribeResult {
    subscribed,          ///< added now
    already_subscribed,  ///< it was there already (never refused by the cap)
    limit_reached,       ///< refused: the connection holds `max_topics` subscriptions; nothing changed
    not_found,           ///< no such connection; nothing changed
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
    /**
     * Adds a subscription unless the connection already holds `max_topics` others (0: no cap).
     * The count is checked and the subscription written in one step (under the store's lock, in
     * one transaction or one server-side script), so racing calls never take the connection past
     * the cap; a refused call changes nothing. Idempotent: a topic already held is
     * `already_subscribed`, even at the cap.
     */
    virtual SubscribeResult subscribe_capped(const ConnectionId& id, const std::string& topic,
                                             std::size_t max_topics) = 0;
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

    // ---- node lifetime: restart cleanup and leases ---------------------------------------

    /**
     * A node id that stays the same across restarts of the process using this store, or empty if
     * the store cannot give one (the default; the Gateway then picks a random id). SQLite keeps
     * one in the database file for the first process that opens it.
     */
    [[nodiscard]] virtual std::string stable_node_id() { return {}; }
    /**
     * Removes every record (with its subscriptions and index entries) whose `node_id` is
     * `node_id`; returns how many. The Gateway calls it at construction for its own id: what a
     * previous incarnation of the node left behind cannot be live, the new process holds no
     * sockets yet. The default pages through scan(); backends override it with an index.
     */
    virtual std::size_t remove_node(const std::string& node_id);
    /**
     * Records that `node_id` is alive until `now + lease` (creating or extending its lease). The
     * default does nothing: a store without leases relies on record TTLs alone.
     */
    virtual void renew_lease(const std::string& node_id, TimePoint now, Duration lease) {
        (void)node_id, (void)now, (void)lease;
    }
    /**
     * Removes up to `limit` records of nodes whose lease ran out by `now`, with their
     * subscriptions and index entries, and forgets a node's lease once none of its records are
     * left. Returns how many records it removed (each counted by one caller only); idempotent, so
     * every node may call it. Nodes that never held a lease are left alone. The default does
     * nothing.
     */
    virtual std::size_t reap_expired_nodes(TimePoint now, std::size_t limit) {
        (void)now, (void)limit;
        return 0;
    }
};

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/connection_store-inl.hpp>
#endif

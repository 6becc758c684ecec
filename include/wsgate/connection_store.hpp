#pragma once
/** @file connection_store.hpp Plug point: where connection records, subscriptions and TTLs live. */

#include <wsgate/detail/config.hpp>
#include <wsgate/audience.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/connection.hpp>

#include <cstddef>
#include <cstdint>
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
    /// Storage of ids that reset() kept, which add_id() takes before it allocates anew.
    std::vector<ConnectionId> spare;

    /// Empties it for reuse, keeping the storage of its ids: an audience reused for audiences
    /// of the same size allocates nothing for them (the Gateway's publish path).
    void reset() {
        for (auto& id : ids) spare.push_back(std::move(id));
        ids.clear();
        filtered = 0;
    }
    /// Appends `id`, in the storage of an id reset() kept when there is one.
    void add_id(const ConnectionId& id) {
        if (spare.empty()) {
            ids.push_back(id);
            return;
        }
        ids.push_back(std::move(spare.back()));
        spare.pop_back();
        ids.back().assign(id);
    }
};

/// The outcome of ConnectionStore::subscribe_capped().
enum class SubscribeResult {
    subscribed,          ///< added now
    already_subscribed,  ///< it was there already (never refused by the cap)
    limit_reached,       ///< refused: the connection holds `max_topics` subscriptions; nothing changed
    not_found,           ///< no such connection; nothing changed
};

// ---- topic streams (delivery guarantees) ----------------------------------------------------

/// A position in a topic's stream: the offset of a publication within an epoch.
struct StreamPosition {
    std::uint64_t offset = 0;  ///< the last publication's offset; 0 before the first one
    /// Changes whenever the stream's history may have been lost; empty for a stream never
    /// appended to (a position {0, ""} means "seen nothing").
    std::string epoch;
    friend bool operator==(const StreamPosition&, const StreamPosition&) = default;
};

/// How much of a topic's stream a store keeps (TopicRule::history_size / history_ttl).
struct HistoryRetention {
    std::size_t max_count = 0;  ///< keep at most this many publications (0: positions only, no history)
    Duration max_age{0};        ///< drop publications older than this (0: no age bound)
};

/// One publication kept in a topic's history.
struct StoredPublication {
    std::uint64_t offset = 0;
    TimePoint at{};    ///< when it was appended (the appending node's clock)
    std::string body;  ///< the serialized envelope without `offset`/`epoch` (a JSON object's text)
};

/// What ConnectionStore::read_stream() returns.
struct StreamRead {
    StreamPosition top;  ///< the stream's current position (its epoch is created on first use)
    /// Ascending offsets, each > the `after` asked for, none older than `not_before`.
    std::vector<StoredPublication> publications;
    /// The oldest offset the history still holds at `not_before`; top.offset + 1 when it holds none.
    std::uint64_t first_retained = 1;
};

/// One subscriber of a topic, as ConnectionStore::presence() lists it.
struct PresenceMember {
    ConnectionId id;
    PrincipalKind kind = PrincipalKind::user;
    std::string user_id;
    std::string device_id;
    std::string node_id;
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
    /**
     * resolve() into `out` (reset() first): the form the Gateway calls on every publish, with an
     * `out` it reuses. The default moves resolve()'s result in; a backend that resolves in
     * memory overrides it to fill `out` with add_id() and allocate nothing per connection.
     */
    virtual void resolve_into(const Audience& a, ResolvedAudience& out);

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
     * True if `node_id` holds a lease that has not run out by `now`. A live node that finds its
     * lease gone knows the store lost its records (a restart without persistence) or reaped them
     * (an outage longer than the lease), and registers its connections again. The default says
     * true: a store without leases cannot tell.
     */
    [[nodiscard]] virtual bool holds_lease(const std::string& node_id, TimePoint now) {
        (void)node_id, (void)now;
        return true;
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

    // ---- topic streams: positions, history, device cursors ---------------------------------
    // Used only for topics whose TopicRule enables history; the Gateway refuses such rules at
    // construction when supports_streams() is false. The defaults throw StoreError.

    /// True if this store implements the stream members below.
    [[nodiscard]] virtual bool supports_streams() const noexcept { return false; }
    /**
     * Appends one publication to `topic`'s stream and returns its position: offset = the
     * previous top + 1 within the stream's epoch (a new stream starts at 1 with a fresh random
     * epoch). Keeps `body` if `keep.max_count` > 0, then trims the history to `keep` (count, and
     * age against `now`). Atomic: concurrent appends, from any process sharing the store, get
     * distinct consecutive offsets, and a reader never sees offset N+1 kept without N.
     */
    virtual StreamPosition append(const std::string& topic, std::string_view body, TimePoint now,
                                  const HistoryRetention& keep);
    /**
     * The stream's top and up to `limit` kept publications with offset > `after` and
     * `at` ≥ `not_before`, ascending. With `limit` 0 only the top and `first_retained`. Reads
     * never write: a stream never appended to (or whose keys the backend lost) reads as top
     * {0, ""} and creates nothing, so clients naming arbitrary topics cannot grow the store.
     */
    [[nodiscard]] virtual StreamRead read_stream(const std::string& topic, std::uint64_t after, std::size_t limit,
                                                 TimePoint not_before);
    /// The last `limit` kept publications with `at` ≥ `not_before` (ascending), and the top.
    [[nodiscard]] virtual StreamRead latest(const std::string& topic, std::size_t limit, TimePoint not_before);
    /**
     * Saves a device's cursor on `topic`: within one epoch it only moves forward (a smaller
     * offset is ignored); a different epoch replaces it. It is forgotten `keep_for` after the last
     * save (Redis measures that on its own clock).
     */
    virtual void save_cursor(const std::string& device_key, const std::string& topic, const StreamPosition& p,
                             TimePoint now, Duration keep_for);
    /// The device's cursor on `topic`, or nullopt (never saved, or forgotten).
    [[nodiscard]] virtual std::optional<StreamPosition> load_cursor(const std::string& device_key,
                                                                    const std::string& topic, TimePoint now);
    /**
     * Who is subscribed to `topic`, cluster-wide for a shared store: one entry per live
     * connection. The default calls subscribers() and get() for each; backends override it to
     * answer in one pass.
     */
    [[nodiscard]] virtual std::vector<PresenceMember> presence(const std::string& topic);
};

/// `body` (a JSON object's text) with `"offset"` and `"epoch"` appended: the frame subscribers get.
[[nodiscard]] std::string with_position(std::string_view body, const StreamPosition& p);

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/connection_store-inl.hpp>
#endif

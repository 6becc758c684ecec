#pragma once
/** @file sqlite_store.hpp A ConnectionStore in one SQLite file (`wsgate::sqlite`): survives restarts. */

#include <wsgate/connection_store.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate {

/// Settings for SqliteConnectionStore; every field but `path` has a working default.
struct SqliteStoreSettings {
    /// The database file (created if absent; its directory must exist). `:memory:` works for tests.
    std::string path;
    /// How long a write waits for another process's lock before failing with `store_errc::busy`.
    Duration busy_timeout = std::chrono::milliseconds{5000};
    /// `PRAGMA synchronous=FULL` (true) or `NORMAL` (false). In WAL mode both keep every committed
    /// record across a process crash; FULL also keeps the last transactions across a power loss.
    bool synchronous_full = false;
    /// Open without write access: reads work, writes throw StoreError(`read_only`).
    bool read_only = false;
};

/**
 * ConnectionStore in a SQLite database file: WAL journal, prepared statements, indexes on topic,
 * user, node and `expires_at`, a schema version table, node leases (`wsgate_nodes`), the file's
 * stable node id (`wsgate_meta`) and topic streams (positions, history, device cursors). Records,
 * subscriptions and streams written before a restart (or a crash of the writing process) are there
 * after reopening the file; expire() also forgets device cursors past their time.
 *
 * Errors: construction and every operation throw StoreError on backend failure, mapped as
 * SQLITE_BUSY/LOCKED → `busy`, READONLY → `read_only`, CORRUPT/NOTADB → `corrupt`,
 * CANTOPEN → `io_error` (the message names the path), other I/O → `io_error`.
 *
 * @code
 * auto store = std::make_shared<wsgate::SqliteConnectionStore>(
 *     wsgate::SqliteStoreSettings{.path = "/var/lib/app/connections.db"});
 * @endcode
 * @par Thread Safety Safe: one database connection guarded by a mutex. Several processes may open
 * the same file; SQLite's locking (with `busy_timeout`) serializes their writes.
 */
class SqliteConnectionStore final : public ConnectionStore {
public:
    /// Opens (and if needed creates) the database. Throws StoreError when it cannot.
    explicit SqliteConnectionStore(SqliteStoreSettings settings);
    /// Shorthand for a file path with default settings.
    explicit SqliteConnectionStore(std::string path);
    ~SqliteConnectionStore() override;

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
    [[nodiscard]] std::size_t count() override;
    [[nodiscard]] ResolvedAudience resolve(const Audience& a) override;
    /**
     * The node id kept in the database file (created on first use). Only one process at a time
     * gets it (it holds a lock on the sibling file `PATH-node` until it closes the store or dies);
     * others, and read-only stores, get an empty id.
     */
    [[nodiscard]] std::string stable_node_id() override;
    std::size_t remove_node(const std::string& node_id) override;
    void renew_lease(const std::string& node_id, TimePoint now, Duration lease) override;
    [[nodiscard]] bool holds_lease(const std::string& node_id, TimePoint now) override;
    std::size_t reap_expired_nodes(TimePoint now, std::size_t limit) override;

    // Topic streams: the stream's epoch and top offset, its history and the device cursors live
    // in the file (`wsgate_streams`, `wsgate_publications`, `wsgate_cursors`), so offsets and epoch
    // survive a restart and processes sharing the file append to one sequence. The tables are
    // added by any writable open (a file from a build without streams opens unchanged); a
    // read-only store on such a file throws StoreError from the stream members.

    [[nodiscard]] bool supports_streams() const noexcept override { return true; }
    /// One write transaction: the next offset, the kept body, and the trim by count and age.
    StreamPosition append(const std::string& topic, std::string_view body, TimePoint now,
                          const HistoryRetention& keep) override;
    [[nodiscard]] StreamRead read_stream(const std::string& topic, std::uint64_t after, std::size_t limit,
                                         TimePoint not_before) override;
    [[nodiscard]] StreamRead latest(const std::string& topic, std::size_t limit, TimePoint not_before) override;
    void save_cursor(const std::string& device_key, const std::string& topic, const StreamPosition& p, TimePoint now,
                     Duration keep_for) override;
    [[nodiscard]] std::optional<StreamPosition> load_cursor(const std::string& device_key, const std::string& topic,
                                                            TimePoint now) override;
    /// One query joining the topic's subscriptions with their records.
    [[nodiscard]] std::vector<PresenceMember> presence(const std::string& topic) override;

    /// The schema version this build writes and reads (the `wsgate_schema` table).
    static constexpr int schema_version = 1;
    /// The database path.
    [[nodiscard]] const std::string& path() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace wsgate

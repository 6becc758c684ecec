#include <wsgate/error.hpp>
#include <wsgate/sqlite/sqlite_store.hpp>

#include <wsgate/detail/store_util.hpp>

#include <sqlite3.h>

#include <wsgate/random.hpp>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <unordered_set>
#include <utility>

#ifndef _WIN32
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>
#endif

namespace wsgate {
namespace {

store_errc errc_of(int rc) noexcept {
    switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED: return store_errc::busy;
        case SQLITE_READONLY: return store_errc::read_only;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB: return store_errc::corrupt;
        case SQLITE_CANTOPEN:
        case SQLITE_IOERR:
        case SQLITE_FULL:
        case SQLITE_PERM: return store_errc::io_error;
        case SQLITE_MISUSE:
        case SQLITE_RANGE:
        case SQLITE_TOOBIG:
        case SQLITE_CONSTRAINT: return store_errc::invalid_argument;
        default: return store_errc::unavailable;
    }
}

[[noreturn]] void fail(sqlite3* db, int rc, std::string_view what, const std::string& path) {
    std::string msg = "sqlite store '" + path + "': " + std::string(what) + ": ";
    msg += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    throw StoreError(errc_of(rc), msg);
}

constexpr const char* schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS wsgate_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS wsgate_connections (
  id           TEXT PRIMARY KEY NOT NULL,
  user_id      TEXT NOT NULL,
  device_id    TEXT NOT NULL,
  permissions  TEXT NOT NULL,
  node_id      TEXT NOT NULL,
  connected_at INTEGER NOT NULL,
  expires_at   INTEGER NOT NULL,
  last_seen    INTEGER NOT NULL,
  source_ip    TEXT NOT NULL,
  user_agent   TEXT NOT NULL,
  principal    TEXT NOT NULL,
  attributes   TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS wsgate_connections_user ON wsgate_connections(user_id);
CREATE INDEX IF NOT EXISTS wsgate_connections_expiry ON wsgate_connections(expires_at);
CREATE TABLE IF NOT EXISTS wsgate_subscriptions (
  topic         TEXT NOT NULL,
  connection_id TEXT NOT NULL,
  PRIMARY KEY (topic, connection_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS wsgate_subscriptions_connection ON wsgate_subscriptions(connection_id, topic);
-- Added after the first release of schema 1; additive (IF NOT EXISTS), so files stay readable by
-- either build and need no version bump.
CREATE INDEX IF NOT EXISTS wsgate_connections_node ON wsgate_connections(node_id);
CREATE TABLE IF NOT EXISTS wsgate_nodes (
  node_id     TEXT PRIMARY KEY NOT NULL,
  lease_until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wsgate_meta (
  key   TEXT PRIMARY KEY NOT NULL,
  value TEXT NOT NULL
) WITHOUT ROWID;
-- Topic streams, also additive. A stream's row holds its epoch and its last offset (`top`);
-- `wsgate_publications` holds the kept history, always a contiguous run of offsets ending at or
-- before `top`, since trimming only cuts the oldest end.
CREATE TABLE IF NOT EXISTS wsgate_streams (
  topic TEXT PRIMARY KEY NOT NULL,
  epoch TEXT NOT NULL,
  top   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wsgate_publications (
  topic TEXT NOT NULL,
  seq   INTEGER NOT NULL,
  at_ms INTEGER NOT NULL,
  body  TEXT NOT NULL,
  PRIMARY KEY (topic, seq)
);
CREATE TABLE IF NOT EXISTS wsgate_cursors (
  device_key TEXT NOT NULL,
  topic      TEXT NOT NULL,
  seq        INTEGER NOT NULL,
  epoch      TEXT NOT NULL,
  expires_ms INTEGER NOT NULL,
  PRIMARY KEY (device_key, topic)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS wsgate_cursors_expiry ON wsgate_cursors(expires_ms);
)sql";

// The stream statements are prepared on first use, so a file from a build without streams still
// opens read-only (its tables are created only by a writable open).
constexpr const char* stream_get_sql = "SELECT epoch, top FROM wsgate_streams WHERE topic=?1";
constexpr const char* stream_bump_sql = "UPDATE wsgate_streams SET top=top+1 WHERE topic=?1";
constexpr const char* stream_new_sql = "INSERT OR IGNORE INTO wsgate_streams(topic, epoch, top) VALUES(?1,?2,?3)";
constexpr const char* pub_ins_sql = "INSERT INTO wsgate_publications(topic, seq, at_ms, body) VALUES(?1,?2,?3,?4)";
constexpr const char* pub_trim_count_sql = "DELETE FROM wsgate_publications WHERE topic=?1 AND seq<=?2";
// Cuts the run of publications older than ?2 from the oldest end: it visits only what it deletes
// (plus one row), where `at_ms<?2` over the whole topic would visit every kept publication.
constexpr const char* pub_trim_age_sql =
    "DELETE FROM wsgate_publications WHERE topic=?1 AND seq<coalesce("
    "(SELECT seq FROM wsgate_publications WHERE topic=?1 AND at_ms>=?2 ORDER BY seq LIMIT 1), ?3+1)";
constexpr const char* pub_first_sql =
    "SELECT seq FROM wsgate_publications WHERE topic=?1 AND at_ms>=?2 ORDER BY seq LIMIT 1";
constexpr const char* pub_after_sql =
    "SELECT seq, at_ms, body FROM wsgate_publications WHERE topic=?1 AND seq>?2 AND at_ms>=?3 ORDER BY seq LIMIT ?4";
constexpr const char* pub_latest_sql =
    "SELECT seq, at_ms, body FROM wsgate_publications WHERE topic=?1 AND at_ms>=?2 ORDER BY seq DESC LIMIT ?3";
// Within one live epoch the offset only grows; another epoch, or a cursor already forgotten
// (expired but not yet swept), is replaced. Every save restarts the cursor's time.
constexpr const char* cur_save_sql =
    "INSERT INTO wsgate_cursors(device_key, topic, seq, epoch, expires_ms) VALUES(?1,?2,?3,?4,?5) "
    "ON CONFLICT(device_key, topic) DO UPDATE SET "
    "seq=CASE WHEN epoch=excluded.epoch AND expires_ms>?6 THEN max(seq, excluded.seq) ELSE excluded.seq END, "
    "epoch=excluded.epoch, expires_ms=excluded.expires_ms";
constexpr const char* cur_load_sql =
    "SELECT seq, epoch FROM wsgate_cursors WHERE device_key=?1 AND topic=?2 AND expires_ms>?3";
constexpr const char* cur_expire_sql = "DELETE FROM wsgate_cursors WHERE expires_ms<=?1";
constexpr const char* presence_sql =
    "SELECT c.id, json_extract(c.principal, '$.kind'), c.user_id, c.device_id, c.node_id "
    "FROM wsgate_subscriptions s JOIN wsgate_connections c ON c.id=s.connection_id WHERE s.topic=?1";

std::int64_t clamp_i64(std::uint64_t v) noexcept {
    return static_cast<std::int64_t>(std::min<std::uint64_t>(v, static_cast<std::uint64_t>(INT64_MAX)));
}

constexpr const char* record_columns =
    "id, user_id, device_id, permissions, node_id, connected_at, expires_at, last_seen, source_ip, "
    "user_agent, principal, attributes";

}  // namespace

struct SqliteConnectionStore::Impl {
    SqliteStoreSettings settings;
    sqlite3* db = nullptr;
    std::mutex mu;

    // A prepared statement, reset (and its bindings cleared) when a Use goes out of scope.
    struct Stmt {
        sqlite3_stmt* s = nullptr;
    };
    Stmt put, get, topics, del_conn, del_subs, touch, touch_exp, exists, sub_ins, unsub, subscribers,
        of_user, scan, expired, count, all_filter, topic_filter, user_filter, id_filter, begin, commit,
        rollback, node_del_subs, node_del_conns, lease_put, lease_get, lease_expired, node_ids, lease_del, begin_read;
    // Prepared on first use (see stream_get_sql).
    Stmt stream_get, stream_bump, stream_new, pub_ins, pub_trim_count, pub_trim_age, pub_first, pub_after, pub_latest,
        cur_save, cur_load, cur_expire, presence_q;
    std::optional<std::string> node_id;  // stable_node_id(), once asked
    int node_lock_fd = -1;                // held while this store owns the file's stable node id

    class Use {
    public:
        Use(Impl& impl, Stmt& st) : impl_(impl), s_(st.s) {}
        Use(const Use&) = delete;
        Use& operator=(const Use&) = delete;
        ~Use() {
            sqlite3_reset(s_);
            sqlite3_clear_bindings(s_);
        }
        Use& text(int i, std::string_view v) {
            impl_.check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT),
                        "bind");
            return *this;
        }
        Use& integer(int i, std::int64_t v) {
            impl_.check(sqlite3_bind_int64(s_, i, v), "bind");
            return *this;
        }
        /// True while a row is available.
        bool step() {
            const int rc = sqlite3_step(s_);
            if (rc == SQLITE_ROW) return true;
            if (rc == SQLITE_DONE) return false;
            impl_.fail_now(rc, "step");
        }
        void run() { (void)step(); }
        [[nodiscard]] std::string_view col_text(int i) const {
            const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
            return p == nullptr ? std::string_view{} : std::string_view{p, static_cast<std::size_t>(sqlite3_column_bytes(s_, i))};
        }
        [[nodiscard]] std::int64_t col_int(int i) const { return sqlite3_column_int64(s_, i); }

    private:
        Impl& impl_;
        sqlite3_stmt* s_;
    };

    // BEGIN IMMEDIATE (or, given `begin_read`, a deferred BEGIN: one snapshot for several reads)
    // ... COMMIT, rolled back if an exception leaves the scope.
    class Txn {
    public:
        explicit Txn(Impl& impl) : Txn(impl, impl.begin) {}
        Txn(Impl& impl, Stmt& begin_stmt) : impl_(impl) { Use(impl_, begin_stmt).run(); }
        Txn(const Txn&) = delete;
        Txn& operator=(const Txn&) = delete;
        void commit() {
            Use(impl_, impl_.commit).run();
            done_ = true;
        }
        ~Txn() {
            if (!done_) {
                sqlite3_reset(impl_.rollback.s);
                sqlite3_step(impl_.rollback.s);
                sqlite3_reset(impl_.rollback.s);
            }
        }

    private:
        Impl& impl_;
        bool done_ = false;
    };

    explicit Impl(SqliteStoreSettings s) : settings(std::move(s)) {
        if (settings.path.empty()) throw StoreError(store_errc::invalid_argument, "sqlite store: empty path");
        const int flags = (settings.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) |
                          SQLITE_OPEN_NOMUTEX;
        const int rc = sqlite3_open_v2(settings.path.c_str(), &db, flags, nullptr);
        if (rc != SQLITE_OK) {
            std::string msg = "cannot open sqlite database '" + settings.path + "': " +
                              (db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
            sqlite3_close(db);
            db = nullptr;
            throw StoreError(errc_of(rc), msg);
        }
        try {
            sqlite3_extended_result_codes(db, 1);
            sqlite3_busy_timeout(db, static_cast<int>(settings.busy_timeout.count()));
            if (!settings.read_only) {
                exec("PRAGMA journal_mode=WAL", "enable WAL");
                exec(settings.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                     "set synchronous");
                exec("BEGIN IMMEDIATE", "create schema");
                try {
                    exec(schema_sql, "create schema");
                    exec("INSERT INTO wsgate_schema(version) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM wsgate_schema)",
                         "create schema");
                    exec("COMMIT", "create schema");
                } catch (...) {
                    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
                    throw;
                }
            }
            check_version();
            prepare_all();
        } catch (...) {
            finalize_all();
            sqlite3_close(db);
            db = nullptr;
            throw;
        }
    }

    ~Impl() {
        finalize_all();
        sqlite3_close(db);
#ifndef _WIN32
        if (node_lock_fd >= 0) ::close(node_lock_fd);
#endif
    }

    [[noreturn]] void fail_now(int rc, std::string_view what) const { fail(db, rc, what, settings.path); }
    void check(int rc, std::string_view what) const {
        if (rc != SQLITE_OK) fail_now(rc, what);
    }
    void exec(const char* sql, std::string_view what) const {
        check(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), what);
    }

    void check_version() {
        sqlite3_stmt* s = nullptr;
        check(sqlite3_prepare_v2(db, "SELECT max(version) FROM wsgate_schema", -1, &s, nullptr), "read schema version");
        const int rc = sqlite3_step(s);
        const std::int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
        sqlite3_finalize(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) fail_now(rc, "read schema version");
        if (v != schema_version)
            throw StoreError(store_errc::corrupt, "sqlite store '" + settings.path + "': schema version " +
                                                      std::to_string(v) + ", this build reads " +
                                                      std::to_string(schema_version));
    }

    void prepare(Stmt& st, const std::string& sql) {
        check(sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &st.s, nullptr), "prepare");
    }

    void prepare_all() {
        const std::string cols = record_columns;
        prepare(put,
                "INSERT INTO wsgate_connections(" + cols +
                    ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12) ON CONFLICT(id) DO UPDATE SET "
                    "user_id=excluded.user_id, device_id=excluded.device_id, permissions=excluded.permissions, "
                    "node_id=excluded.node_id, connected_at=excluded.connected_at, expires_at=excluded.expires_at, "
                    "last_seen=excluded.last_seen, source_ip=excluded.source_ip, user_agent=excluded.user_agent, "
                    "principal=excluded.principal, attributes=excluded.attributes");
        prepare(get, "SELECT " + cols + " FROM wsgate_connections WHERE id=?1");
        prepare(topics, "SELECT topic FROM wsgate_subscriptions WHERE connection_id=?1 ORDER BY topic");
        prepare(del_conn, "DELETE FROM wsgate_connections WHERE id=?1");
        prepare(del_subs, "DELETE FROM wsgate_subscriptions WHERE connection_id=?1");
        prepare(touch, "UPDATE wsgate_connections SET last_seen=?2 WHERE id=?1");
        prepare(touch_exp, "UPDATE wsgate_connections SET last_seen=?2, expires_at=?3 WHERE id=?1");
        prepare(exists, "SELECT 1 FROM wsgate_connections WHERE id=?1");
        prepare(sub_ins, "INSERT OR IGNORE INTO wsgate_subscriptions(topic, connection_id) VALUES(?1,?2)");
        prepare(unsub, "DELETE FROM wsgate_subscriptions WHERE topic=?1 AND connection_id=?2");
        prepare(subscribers, "SELECT connection_id FROM wsgate_subscriptions WHERE topic=?1");
        prepare(of_user, "SELECT id FROM wsgate_connections WHERE user_id=?1");
        prepare(scan, "SELECT " + cols + " FROM wsgate_connections WHERE id>?1 ORDER BY id LIMIT ?2");
        prepare(expired, "SELECT " + cols + " FROM wsgate_connections WHERE expires_at<=?1 ORDER BY expires_at, id");
        prepare(count, "SELECT count(*) FROM wsgate_connections");
        prepare(all_filter, "SELECT id, device_id, permissions, user_id FROM wsgate_connections");
        prepare(topic_filter,
                "SELECT c.id, c.device_id, c.permissions, c.user_id FROM wsgate_subscriptions s JOIN wsgate_connections c "
                "ON c.id=s.connection_id WHERE s.topic=?1");
        prepare(user_filter, "SELECT id, device_id, permissions, user_id FROM wsgate_connections WHERE user_id=?1");
        prepare(id_filter, "SELECT id, device_id, permissions, user_id FROM wsgate_connections WHERE id=?1");
        prepare(begin, "BEGIN IMMEDIATE");
        prepare(commit, "COMMIT");
        prepare(rollback, "ROLLBACK");
        prepare(node_del_subs,
                "DELETE FROM wsgate_subscriptions WHERE connection_id IN "
                "(SELECT id FROM wsgate_connections WHERE node_id=?1)");
        prepare(node_del_conns, "DELETE FROM wsgate_connections WHERE node_id=?1");
        prepare(lease_put,
                "INSERT INTO wsgate_nodes(node_id, lease_until) VALUES(?1,?2) "
                "ON CONFLICT(node_id) DO UPDATE SET lease_until=excluded.lease_until");
        prepare(lease_get, "SELECT lease_until FROM wsgate_nodes WHERE node_id=?1");
        prepare(lease_expired, "SELECT node_id FROM wsgate_nodes WHERE lease_until<=?1 ORDER BY lease_until");
        prepare(node_ids, "SELECT id FROM wsgate_connections WHERE node_id=?1 LIMIT ?2");
        prepare(lease_del, "DELETE FROM wsgate_nodes WHERE node_id=?1 AND lease_until<=?2");
        prepare(begin_read, "BEGIN");
    }

    Stmt& lazy(Stmt& st, const char* sql) {
        if (st.s == nullptr) prepare(st, sql);
        return st;
    }

    void finalize_all() {
        for (Stmt* st : {&put, &get, &topics, &del_conn, &del_subs, &touch, &touch_exp, &exists, &sub_ins, &unsub,
                         &subscribers, &of_user, &scan, &expired, &count, &all_filter, &topic_filter, &user_filter,
                         &id_filter, &begin, &commit, &rollback, &node_del_subs, &node_del_conns, &lease_put, &lease_get,
                         &lease_expired, &node_ids, &lease_del, &begin_read, &stream_get, &stream_bump, &stream_new,
                         &pub_ins, &pub_trim_count, &pub_trim_age, &pub_first, &pub_after, &pub_latest, &cur_save,
                         &cur_load, &cur_expire, &presence_q}) {
            sqlite3_finalize(st->s);
            st->s = nullptr;
        }
    }

    ConnectionRecord read_record(const Use& u) const {
        ConnectionRecord r;
        r.id = std::string(u.col_text(0));
        r.node_id = std::string(u.col_text(4));
        r.connected_at = from_unix_ms(u.col_int(5));
        r.expires_at = from_unix_ms(u.col_int(6));
        r.last_seen = from_unix_ms(u.col_int(7));
        r.source_ip = std::string(u.col_text(8));
        r.user_agent = std::string(u.col_text(9));
        auto principal = nlohmann::json::parse(u.col_text(10), nullptr, false);
        auto attributes = nlohmann::json::parse(u.col_text(11), nullptr, false);
        if (principal.is_discarded() || !principal.is_object() || attributes.is_discarded() || !attributes.is_object())
            throw StoreError(store_errc::corrupt, "sqlite store '" + settings.path + "': unreadable record " + r.id);
        try {
            r.principal = principal.get<Principal>();
            r.attributes = attributes.get<std::map<std::string, std::string>>();
        } catch (const nlohmann::json::exception&) {
            throw StoreError(store_errc::corrupt, "sqlite store '" + settings.path + "': unreadable record " + r.id);
        }
        return r;
    }

    std::vector<std::string> read_topics(const ConnectionId& id) {
        Use u(*this, topics);
        u.text(1, id);
        std::vector<std::string> out;
        while (u.step()) out.emplace_back(u.col_text(0));
        return out;
    }

    bool exists_locked(const ConnectionId& id) {
        Use u(*this, exists);
        u.text(1, id);
        return u.step();
    }

    bool remove_locked(const ConnectionId& id) {
        {
            Use u(*this, del_conn);
            u.text(1, id).run();
        }
        if (sqlite3_changes(db) == 0) return false;
        Use u(*this, del_subs);
        u.text(1, id).run();
        return true;
    }

    std::optional<StreamPosition> stream_top(const std::string& topic) {
        Use u(*this, lazy(stream_get, stream_get_sql));
        u.text(1, topic);
        if (!u.step()) return std::nullopt;
        return StreamPosition{static_cast<std::uint64_t>(u.col_int(1)), std::string(u.col_text(0))};
    }

    /// Creates the stream row at `top` with a fresh epoch unless it exists.
    void create_stream(const std::string& topic, std::uint64_t top) {
        Use u(*this, lazy(stream_new, stream_new_sql));
        u.text(1, topic).text(2, random_token(12)).integer(3, clamp_i64(top)).run();
    }

    std::vector<StoredPublication> read_publications(Use& u) const {
        std::vector<StoredPublication> out;
        while (u.step())
            out.push_back({static_cast<std::uint64_t>(u.col_int(0)), from_unix_ms(u.col_int(1)), std::string(u.col_text(2))});
        return out;
    }

    /// The top, `first_retained` and (through `fill`) the publications of one snapshot. A stream
    /// never appended to reads as {0, ""} and nothing is written.
    template <class Fill>
    StreamRead read_snapshot(const std::string& topic, TimePoint not_before, Fill fill) {
        const auto nb = to_unix_ms(not_before);
        StreamRead out;
        Txn t(*this, begin_read);
        if (auto top = stream_top(topic)) {
            out.top = std::move(*top);
            {
                Use u(*this, lazy(pub_first, pub_first_sql));
                u.text(1, topic).integer(2, nb);
                out.first_retained = u.step() ? static_cast<std::uint64_t>(u.col_int(0)) : out.top.offset + 1;
            }
            fill(out, nb);
        }
        t.commit();
        return out;
    }

    void filter_rows(Use& u, const Audience& a, ResolvedAudience& out, std::unordered_set<std::string>* seen) const {
        while (u.step()) {
            const auto id = u.col_text(0);
            if (seen != nullptr && !seen->emplace(id).second) continue;
            if (detail::admits(a, id, u.col_text(3), u.col_text(1), u.col_text(2))) out.ids.emplace_back(id);
            else ++out.filtered;
        }
    }
};

SqliteConnectionStore::SqliteConnectionStore(SqliteStoreSettings settings)
    : impl_(std::make_unique<Impl>(std::move(settings))) {}
SqliteConnectionStore::SqliteConnectionStore(std::string path)
    : SqliteConnectionStore(SqliteStoreSettings{.path = std::move(path)}) {}
SqliteConnectionStore::~SqliteConnectionStore() = default;

const std::string& SqliteConnectionStore::path() const noexcept { return impl_->settings.path; }

void SqliteConnectionStore::put(const ConnectionRecord& r) {
    const std::string principal = nlohmann::json(r.principal).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    const std::string attributes = nlohmann::json(r.attributes).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    const std::string perms = detail::join_permissions(r.principal.permissions);
    std::lock_guard lk(impl_->mu);
    Impl::Use u(*impl_, impl_->put);
    u.text(1, r.id)
        .text(2, r.principal.user_id)
        .text(3, r.principal.device_id)
        .text(4, perms)
        .text(5, r.node_id)
        .integer(6, to_unix_ms(r.connected_at))
        .integer(7, to_unix_ms(r.expires_at))
        .integer(8, to_unix_ms(r.last_seen))
        .text(9, r.source_ip)
        .text(10, r.user_agent)
        .text(11, principal)
        .text(12, attributes)
        .run();
}

std::optional<ConnectionRecord> SqliteConnectionStore::get(const ConnectionId& id) {
    std::lock_guard lk(impl_->mu);
    std::optional<ConnectionRecord> r;
    {
        Impl::Use u(*impl_, impl_->get);
        u.text(1, id);
        if (!u.step()) return std::nullopt;
        r = impl_->read_record(u);
    }
    r->topics = impl_->read_topics(id);
    return r;
}

bool SqliteConnectionStore::remove(const ConnectionId& id) {
    std::lock_guard lk(impl_->mu);
    Impl::Txn t(*impl_);
    const bool removed = impl_->remove_locked(id);
    t.commit();
    return removed;
}

bool SqliteConnectionStore::touch(const ConnectionId& id, TimePoint now, std::optional<TimePoint> new_expiry) {
    std::lock_guard lk(impl_->mu);
    if (new_expiry) {
        Impl::Use u(*impl_, impl_->touch_exp);
        u.text(1, id).integer(2, to_unix_ms(now)).integer(3, to_unix_ms(*new_expiry)).run();
    } else {
        Impl::Use u(*impl_, impl_->touch);
        u.text(1, id).integer(2, to_unix_ms(now)).run();
    }
    return sqlite3_changes(impl_->db) > 0;
}

bool SqliteConnectionStore::subscribe(const ConnectionId& id, const std::string& topic) {
    std::lock_guard lk(impl_->mu);
    Impl::Txn t(*impl_);
    if (!impl_->exists_locked(id)) return false;  // the Txn rolls back
    {
        Impl::Use u(*impl_, impl_->sub_ins);
        u.text(1, topic).text(2, id).run();
    }
    t.commit();
    return true;
}

SubscribeResult SqliteConnectionStore::subscribe_capped(const ConnectionId& id, const std::string& topic,
                                                        std::size_t max_topics) {
    std::lock_guard lk(impl_->mu);
    // BEGIN IMMEDIATE holds the database's write lock from the count to the insert, so no other
    // connection or process can interleave; an early return rolls back.
    Impl::Txn t(*impl_);
    if (!impl_->exists_locked(id)) return SubscribeResult::not_found;
    const auto held = impl_->read_topics(id);
    if (std::find(held.begin(), held.end(), topic) != held.end()) return SubscribeResult::already_subscribed;
    if (max_topics > 0 && held.size() >= max_topics) return SubscribeResult::limit_reached;
    {
        Impl::Use u(*impl_, impl_->sub_ins);
        u.text(1, topic).text(2, id).run();
    }
    t.commit();
    return SubscribeResult::subscribed;
}

bool SqliteConnectionStore::unsubscribe(const ConnectionId& id, const std::string& topic) {
    std::lock_guard lk(impl_->mu);
    Impl::Use u(*impl_, impl_->unsub);
    u.text(1, topic).text(2, id).run();
    return sqlite3_changes(impl_->db) > 0;
}

std::vector<std::string> SqliteConnectionStore::topics_of(const ConnectionId& id) {
    std::lock_guard lk(impl_->mu);
    return impl_->read_topics(id);
}

std::vector<ConnectionId> SqliteConnectionStore::subscribers(const std::string& topic) {
    std::lock_guard lk(impl_->mu);
    Impl::Use u(*impl_, impl_->subscribers);
    u.text(1, topic);
    std::vector<ConnectionId> out;
    while (u.step()) out.emplace_back(u.col_text(0));
    return out;
}

std::vector<ConnectionId> SqliteConnectionStore::connections_of_user(const std::string& user_id) {
    std::vector<ConnectionId> out;
    if (user_id.empty()) return out;
    std::lock_guard lk(impl_->mu);
    Impl::Use u(*impl_, impl_->of_user);
    u.text(1, user_id);
    while (u.step()) out.emplace_back(u.col_text(0));
    return out;
}

ScanPage SqliteConnectionStore::scan(const std::string& cursor, std::size_t limit) {
    if (limit == 0) limit = 1;
    ScanPage page;
    std::lock_guard lk(impl_->mu);
    {
        Impl::Use u(*impl_, impl_->scan);
        u.text(1, cursor).integer(2, static_cast<std::int64_t>(limit) + 1);
        while (u.step()) {
            if (page.records.size() == limit) {
                page.next_cursor = page.records.back().id;
                break;
            }
            page.records.push_back(impl_->read_record(u));
        }
    }
    for (auto& r : page.records) r.topics = impl_->read_topics(r.id);
    return page;
}

std::vector<ConnectionRecord> SqliteConnectionStore::expire(TimePoint now) {
    std::lock_guard lk(impl_->mu);
    Impl::Txn t(*impl_);
    std::vector<ConnectionRecord> out;
    {
        Impl::Use u(*impl_, impl_->expired);
        u.integer(1, to_unix_ms(now));
        while (u.step()) out.push_back(impl_->read_record(u));
    }
    for (auto& r : out) {
        r.topics = impl_->read_topics(r.id);
        impl_->remove_locked(r.id);
    }
    {
        Impl::Use u(*impl_, impl_->lazy(impl_->cur_expire, cur_expire_sql));
        u.integer(1, to_unix_ms(now)).run();
    }
    t.commit();
    return out;
}

std::size_t SqliteConnectionStore::count() {
    std::lock_guard lk(impl_->mu);
    Impl::Use u(*impl_, impl_->count);
    return u.step() ? static_cast<std::size_t>(u.col_int(0)) : 0;
}

ResolvedAudience SqliteConnectionStore::resolve(const Audience& a) {
    ResolvedAudience out;
    std::lock_guard lk(impl_->mu);
    switch (a.kind) {
        case Audience::Kind::everyone: {
            Impl::Use u(*impl_, impl_->all_filter);
            impl_->filter_rows(u, a, out, nullptr);
            break;
        }
        case Audience::Kind::topic: {
            Impl::Use u(*impl_, impl_->topic_filter);
            u.text(1, a.topic_name);
            impl_->filter_rows(u, a, out, nullptr);
            break;
        }
        case Audience::Kind::user:
        case Audience::Kind::users: {
            std::unordered_set<std::string> seen;
            for (const auto& user : a.user_ids) {
                if (user.empty()) continue;
                Impl::Use u(*impl_, impl_->user_filter);
                u.text(1, user);
                impl_->filter_rows(u, a, out, &seen);
            }
            break;
        }
        case Audience::Kind::connections: {
            std::unordered_set<std::string> seen;
            for (const auto& id : a.connection_ids) {
                Impl::Use u(*impl_, impl_->id_filter);
                u.text(1, id);
                impl_->filter_rows(u, a, out, &seen);
            }
            break;
        }
    }
    return out;
}

std::string SqliteConnectionStore::stable_node_id() {
    std::lock_guard lk(impl_->mu);
    if (impl_->node_id) return *impl_->node_id;
    impl_->node_id.emplace();
    if (impl_->settings.read_only) return {};
#ifndef _WIN32
    // One process at a time owns the file's node id: a lock on a sibling file, which the kernel
    // releases when the process dies however it dies. Other processes on the same file get none
    // (so the Gateway picks a random id, covered by leases) rather than a live node's id.
    if (impl_->settings.path != ":memory:") {
        const std::string lock_path = impl_->settings.path + "-node";
        const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return {};
        if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
            ::close(fd);
            return {};
        }
        impl_->node_lock_fd = fd;
    }
#endif
    const std::string fresh = "sqlite-" + random_token(9);
    Impl::Txn t(*impl_);
    sqlite3_stmt* s = nullptr;
    impl_->check(sqlite3_prepare_v2(impl_->db, "INSERT OR IGNORE INTO wsgate_meta(key, value) VALUES('node_id', ?1)", -1,
                                    &s, nullptr),
                 "prepare");
    sqlite3_bind_text(s, 1, fresh.data(), static_cast<int>(fresh.size()), SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) impl_->fail_now(rc, "store node id");
    impl_->check(sqlite3_prepare_v2(impl_->db, "SELECT value FROM wsgate_meta WHERE key='node_id'", -1, &s, nullptr),
                 "prepare");
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) impl_->node_id = std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)));
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW) impl_->fail_now(rc, "read node id");
    t.commit();
    return *impl_->node_id;
}

std::size_t SqliteConnectionStore::remove_node(const std::string& node_id) {
    std::lock_guard lk(impl_->mu);
    Impl::Txn t(*impl_);
    {
        Impl::Use u(*impl_, impl_->node_del_subs);
        u.text(1, node_id).run();
    }
    std::size_t removed = 0;
    {
        Impl::Use u(*impl_, impl_->node_del_conns);
        u.text(1, node_id).run();
        removed = static_cast<std::size_t>(sqlite3_changes(impl_->db));
    }
    t.commit();
    return removed;
}

void SqliteConnectionStore::renew_lease(const std::string& node_id, TimePoint now, Duration lease) {
    std::lock_guard lk(impl_->mu);
    Impl::Use u(*impl_, impl_->lease_put);
    u.text(1, node_id).integer(2, to_unix_ms(now + lease)).run();
}

bool SqliteConnectionStore::holds_lease(const std::string& node_id, TimePoint now) {
    std::lock_guard lk(impl_->mu);
    Impl::Use u(*impl_, impl_->lease_get);
    u.text(1, node_id);
    return u.step() && u.col_int(0) > to_unix_ms(now);
}

std::size_t SqliteConnectionStore::reap_expired_nodes(TimePoint now, std::size_t limit) {
    const auto now_ms = to_unix_ms(now);
    std::lock_guard lk(impl_->mu);
    std::vector<std::string> nodes;
    auto expired_nodes = [&] {
        nodes.clear();
        Impl::Use u(*impl_, impl_->lease_expired);
        u.integer(1, now_ms);
        while (u.step()) nodes.emplace_back(u.col_text(0));
    };
    // A read first, so a sweep with nothing to reap takes no write lock; then again inside one
    // write transaction, so processes sharing the file reap each record once and a lease renewed
    // meanwhile is respected.
    expired_nodes();
    if (nodes.empty()) return 0;
    Impl::Txn t(*impl_);
    expired_nodes();
    std::size_t removed = 0;
    for (const auto& node : nodes) {
        if (removed >= limit) break;
        std::vector<std::string> ids;
        {
            Impl::Use u(*impl_, impl_->node_ids);
            u.text(1, node).integer(2, static_cast<std::int64_t>(limit - removed) + 1);
            while (u.step()) ids.emplace_back(u.col_text(0));
        }
        const bool all = ids.size() <= limit - removed;
        if (!all) ids.resize(limit - removed);
        for (const auto& id : ids) removed += impl_->remove_locked(id) ? 1 : 0;
        if (all) {
            Impl::Use u(*impl_, impl_->lease_del);
            u.text(1, node).integer(2, now_ms).run();
        }
    }
    t.commit();
    return removed;
}

// ---- topic streams ----------------------------------------------------------------------------

StreamPosition SqliteConnectionStore::append(const std::string& topic, std::string_view body, TimePoint now,
                                             const HistoryRetention& keep) {
    const auto now_ms = to_unix_ms(now);
    std::lock_guard lk(impl_->mu);
    // One write transaction from the bump of `top` to the trim: processes sharing the file get
    // consecutive offsets, and no reader sees an offset kept without the ones before it.
    Impl::Txn t(*impl_);
    {
        Impl::Use u(*impl_, impl_->lazy(impl_->stream_bump, stream_bump_sql));
        u.text(1, topic).run();
    }
    if (sqlite3_changes(impl_->db) == 0) impl_->create_stream(topic, 1);
    auto pos = impl_->stream_top(topic);
    if (!pos) throw StoreError(store_errc::unavailable, "sqlite store '" + impl_->settings.path + "': stream row vanished");
    if (keep.max_count > 0) {
        Impl::Use u(*impl_, impl_->lazy(impl_->pub_ins, pub_ins_sql));
        u.text(1, topic).integer(2, clamp_i64(pos->offset)).integer(3, now_ms).text(4, body).run();
    }
    // The history is contiguous up to `top`, so "at most max_count" is "nothing at or below
    // top - max_count" (with max_count 0: nothing at all).
    if (pos->offset > keep.max_count) {
        Impl::Use u(*impl_, impl_->lazy(impl_->pub_trim_count, pub_trim_count_sql));
        u.text(1, topic).integer(2, clamp_i64(pos->offset - keep.max_count)).run();
    }
    if (keep.max_age > Duration::zero() && keep.max_count > 0) {
        Impl::Use u(*impl_, impl_->lazy(impl_->pub_trim_age, pub_trim_age_sql));
        u.text(1, topic).integer(2, now_ms - keep.max_age.count()).integer(3, clamp_i64(pos->offset)).run();
    }
    t.commit();
    return std::move(*pos);
}

StreamRead SqliteConnectionStore::read_stream(const std::string& topic, std::uint64_t after, std::size_t limit,
                                              TimePoint not_before) {
    std::lock_guard lk(impl_->mu);
    return impl_->read_snapshot(topic, not_before, [&](StreamRead& out, std::int64_t nb) {
        if (limit == 0 || after >= out.top.offset) return;
        Impl::Use u(*impl_, impl_->lazy(impl_->pub_after, pub_after_sql));
        u.text(1, topic).integer(2, clamp_i64(after)).integer(3, nb).integer(4, clamp_i64(limit));
        out.publications = impl_->read_publications(u);
    });
}

StreamRead SqliteConnectionStore::latest(const std::string& topic, std::size_t limit, TimePoint not_before) {
    std::lock_guard lk(impl_->mu);
    return impl_->read_snapshot(topic, not_before, [&](StreamRead& out, std::int64_t nb) {
        if (limit == 0 || out.first_retained > out.top.offset) return;
        Impl::Use u(*impl_, impl_->lazy(impl_->pub_latest, pub_latest_sql));
        u.text(1, topic).integer(2, nb).integer(3, clamp_i64(limit));
        out.publications = impl_->read_publications(u);
        std::reverse(out.publications.begin(), out.publications.end());
    });
}

void SqliteConnectionStore::save_cursor(const std::string& device_key, const std::string& topic,
                                        const StreamPosition& p, TimePoint now, Duration keep_for) {
    const auto now_ms = to_unix_ms(now);
    std::lock_guard lk(impl_->mu);
    Impl::Use u(*impl_, impl_->lazy(impl_->cur_save, cur_save_sql));
    u.text(1, device_key)
        .text(2, topic)
        .integer(3, clamp_i64(p.offset))
        .text(4, p.epoch)
        .integer(5, now_ms + keep_for.count())
        .integer(6, now_ms)
        .run();
}

std::optional<StreamPosition> SqliteConnectionStore::load_cursor(const std::string& device_key,
                                                                 const std::string& topic, TimePoint now) {
    std::lock_guard lk(impl_->mu);
    Impl::Use u(*impl_, impl_->lazy(impl_->cur_load, cur_load_sql));
    u.text(1, device_key).text(2, topic).integer(3, to_unix_ms(now));
    if (!u.step()) return std::nullopt;
    return StreamPosition{static_cast<std::uint64_t>(u.col_int(0)), std::string(u.col_text(1))};
}

std::vector<PresenceMember> SqliteConnectionStore::presence(const std::string& topic) {
    std::lock_guard lk(impl_->mu);
    Impl::Use u(*impl_, impl_->lazy(impl_->presence_q, presence_sql));
    u.text(1, topic);
    std::vector<PresenceMember> out;
    while (u.step())
        out.push_back({std::string(u.col_text(0)), principal_kind_from_string(u.col_text(1)), std::string(u.col_text(2)),
                       std::string(u.col_text(3)), std::string(u.col_text(4))});
    return out;
}

}  // namespace wsgate

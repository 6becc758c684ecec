#include <wsgate/error.hpp>
#include <wsgate/sqlite/sqlite_store.hpp>

#include <wsgate/detail/store_util.hpp>

#include <sqlite3.h>

#include <wsgate/random.hpp>

#include <algorithm>
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
)sql";

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
        rollback, node_del_subs, node_del_conns, lease_put, lease_expired, node_ids, lease_del;
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

    // BEGIN IMMEDIATE ... COMMIT, rolled back if an exception leaves the scope.
    class Txn {
    public:
        explicit Txn(Impl& impl) : impl_(impl) { Use(impl_, impl_.begin).run(); }
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
        prepare(lease_expired, "SELECT node_id FROM wsgate_nodes WHERE lease_until<=?1 ORDER BY lease_until");
        prepare(node_ids, "SELECT id FROM wsgate_connections WHERE node_id=?1 LIMIT ?2");
        prepare(lease_del, "DELETE FROM wsgate_nodes WHERE node_id=?1 AND lease_until<=?2");
    }

    void finalize_all() {
        for (Stmt* st : {&put, &get, &topics, &del_conn, &del_subs, &touch, &touch_exp, &exists, &sub_ins, &unsub,
                         &subscribers, &of_user, &scan, &expired, &count, &all_filter, &topic_filter, &user_filter,
                         &id_filter, &begin, &commit, &rollback, &node_del_subs, &node_del_conns, &lease_put,
                         &lease_expired, &node_ids, &lease_del}) {
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

}  // namespace wsgate

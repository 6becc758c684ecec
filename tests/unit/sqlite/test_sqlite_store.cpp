// SqliteConnectionStore beyond the contract: restarts, crashes, and databases it cannot use.

#include "catch.hpp"
#include "temp_dir.hpp"

#include <wsgate/error.hpp>
#include <wsgate/sqlite/sqlite_store.hpp>

#include <sqlite3.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <set>
#include <thread>

using namespace wsgate;
using namespace std::chrono_literals;
using wsgate::test::TempDir;

namespace {

const TimePoint t0 = from_unix_ms(1'700'000'000'000);

ConnectionRecord rec(const std::string& id, const std::string& user = "u1") {
    ConnectionRecord r;
    r.id = id;
    r.principal.kind = PrincipalKind::user;
    r.principal.user_id = user;
    r.principal.device_id = "dev-" + id;
    r.principal.permissions = {"chat"};
    r.connected_at = t0;
    r.last_seen = t0;
    r.expires_at = t0 + 1h;
    r.node_id = "n1";
    r.attributes = {{"k", "v"}};
    return r;
}

store_errc code_of(const std::function<void()>& fn, std::string* what = nullptr) {
    try {
        fn();
    } catch (const StoreError& e) {
        if (what != nullptr) *what = e.what();
        REQUIRE(e.code().category() == store_category());
        return static_cast<store_errc>(e.code().value());
    }
    FAIL("expected a StoreError");
    return store_errc::not_found;
}

// A raw connection for the test's own view of the file.
struct RawDb {
    sqlite3* db = nullptr;
    explicit RawDb(const std::string& path) { REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK); }
    ~RawDb() { sqlite3_close(db); }
    int exec(const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr); }
    std::string scalar(const char* sql) {
        sqlite3_stmt* s = nullptr;
        REQUIRE(sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK);
        std::string out;
        if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0) != nullptr)
            out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
        return out;
    }
    /// The details of EXPLAIN QUERY PLAN, joined.
    std::string plan(const std::string& sql) {
        sqlite3_stmt* s = nullptr;
        REQUIRE(sqlite3_prepare_v2(db, ("EXPLAIN QUERY PLAN " + sql).c_str(), -1, &s, nullptr) == SQLITE_OK);
        std::string out;
        while (sqlite3_step(s) == SQLITE_ROW) out += reinterpret_cast<const char*>(sqlite3_column_text(s, 3)) + std::string("; ");
        sqlite3_finalize(s);
        return out;
    }
};

}  // namespace

TEST_CASE("sqlite: records and subscriptions are there after reopening the file", "[store][sqlite]") {
    TempDir dir;
    const auto path = dir.file("c.db");
    {
        SqliteConnectionStore s{path};
        s.put(rec("a", "u1"));
        s.put(rec("b", "u1"));
        s.put(rec("c", "u2"));
        REQUIRE(s.subscribe("a", "news"));
        REQUIRE(s.subscribe("c", "news"));
        REQUIRE(s.touch("b", t0 + 1min, t0 + 2h));
        REQUIRE(s.remove("c"));
    }
    SqliteConnectionStore s{path};
    CHECK(s.count() == 2);
    auto a = s.get("a");
    REQUIRE(a);
    CHECK(a->topics == std::vector<std::string>{"news"});
    CHECK(a->attributes.at("k") == "v");
    CHECK(a->principal.permissions == std::vector<std::string>{"chat"});
    CHECK(s.get("b")->expires_at == t0 + 2h);
    CHECK(s.subscribers("news") == std::vector<std::string>{"a"});
    CHECK(s.connections_of_user("u1").size() == 2);
    CHECK_FALSE(s.get("c"));

    RawDb raw{path};
    CHECK(raw.scalar("PRAGMA journal_mode") == "wal");
    CHECK(raw.scalar("SELECT version FROM wsgate_schema") == "1");
    // the lookups the store makes are served by indexes, not table scans
    CHECK_THAT(raw.plan("SELECT id FROM wsgate_connections WHERE user_id='u1'"),
               Catch::Matchers::Contains("USING COVERING INDEX wsgate_connections_user") ||
                   Catch::Matchers::Contains("USING INDEX wsgate_connections_user"));
    CHECK_THAT(raw.plan("SELECT id FROM wsgate_connections WHERE expires_at<=5"),
               Catch::Matchers::Contains("wsgate_connections_expiry"));
    CHECK_THAT(raw.plan("SELECT c.id FROM wsgate_subscriptions s JOIN wsgate_connections c ON c.id=s.connection_id "
                        "WHERE s.topic='news'"),
               Catch::Matchers::Contains("SEARCH s USING PRIMARY KEY (topic=?)"));
    CHECK(raw.scalar("SELECT count(*) FROM sqlite_master WHERE type='index' AND name IN "
                     "('wsgate_connections_user','wsgate_connections_expiry','wsgate_subscriptions_connection')") == "3");
}

TEST_CASE("sqlite: a database in a missing directory is a clear io_error naming the path", "[store][sqlite]") {
    TempDir dir;
    const auto path = dir.file("no/such/dir/c.db");
    std::string what;
    CHECK(code_of([&] { SqliteConnectionStore s{path}; }, &what) == store_errc::io_error);
    CHECK(what.find(path) != std::string::npos);
}

TEST_CASE("sqlite: a file that is not a database is reported corrupt", "[store][sqlite]") {
    TempDir dir;
    const auto path = dir.file("garbage.db");
    {
        std::ofstream out{path, std::ios::binary};
        for (int i = 0; i < 4096; ++i) out.put(static_cast<char>((i * 7919) % 251));
    }
    std::string what;
    CHECK(code_of([&] { SqliteConnectionStore s{path}; }, &what) == store_errc::corrupt);
    CHECK(what.find(path) != std::string::npos);
}

TEST_CASE("sqlite: a database with a damaged page is reported corrupt, not crashed on", "[store][sqlite]") {
    TempDir dir;
    const auto path = dir.file("damaged.db");
    {
        SqliteConnectionStore s{SqliteStoreSettings{.path = path}};
        for (int i = 0; i < 400; ++i) s.put(rec("conn-" + std::to_string(i)));
    }
    {
        RawDb raw{path};
        REQUIRE(raw.exec("PRAGMA wal_checkpoint(TRUNCATE)") == SQLITE_OK);
    }
    {
        // overwrite every page after the first two with noise (the header and schema stay readable)
        std::fstream f{path, std::ios::in | std::ios::out | std::ios::binary};
        f.seekg(0, std::ios::end);
        const auto size = static_cast<long>(f.tellg());
        REQUIRE(size > 4 * 4096);
        for (long off = 2 * 4096; off < size; off += 4096) {
            f.seekp(off + 16);
            for (int i = 0; i < 200; ++i) f.put(static_cast<char>(0xA5 ^ i));
        }
    }
    const auto code = code_of([&] {
        SqliteConnectionStore s{path};
        for (int i = 0; i < 400; ++i) (void)s.get("conn-" + std::to_string(i));
        (void)s.scan("", 1000);
    });
    CHECK(code == store_errc::corrupt);
}

TEST_CASE("sqlite: a schema from a newer version is refused", "[store][sqlite]") {
    TempDir dir;
    const auto path = dir.file("future.db");
    { SqliteConnectionStore s{path}; }
    {
        RawDb raw{path};
        REQUIRE(raw.exec("UPDATE wsgate_schema SET version = 99") == SQLITE_OK);
    }
    std::string what;
    CHECK(code_of([&] { SqliteConnectionStore s{path}; }, &what) == store_errc::corrupt);
    CHECK(what.find("99") != std::string::npos);
}

TEST_CASE("sqlite: a database locked by another writer gives busy, then works once released", "[store][sqlite]") {
    TempDir dir;
    const auto path = dir.file("locked.db");
    SqliteConnectionStore s{SqliteStoreSettings{.path = path, .busy_timeout = 20ms}};
    s.put(rec("a"));

    RawDb other{path};
    REQUIRE(other.exec("BEGIN EXCLUSIVE") == SQLITE_OK);
    CHECK(code_of([&] { s.put(rec("b")); }) == store_errc::busy);
    CHECK(code_of([&] { s.remove("a"); }) == store_errc::busy);
    CHECK(code_of([&] { SqliteConnectionStore again{SqliteStoreSettings{.path = path, .busy_timeout = 20ms}}; }) ==
          store_errc::busy);
    REQUIRE(other.exec("COMMIT") == SQLITE_OK);

    s.put(rec("b"));  // the failed transaction left nothing half-done
    CHECK(s.count() == 2);
    CHECK(s.remove("a"));
}

TEST_CASE("sqlite: a read-only store reads and refuses writes with read_only", "[store][sqlite]") {
    TempDir dir;
    const auto path = dir.file("ro.db");
    {
        SqliteConnectionStore s{path};
        s.put(rec("a"));
        REQUIRE(s.subscribe("a", "t"));
    }
    SqliteConnectionStore ro{SqliteStoreSettings{.path = path, .read_only = true}};
    CHECK(ro.get("a"));
    CHECK(ro.subscribers("t") == std::vector<std::string>{"a"});
    CHECK(code_of([&] { ro.put(rec("b")); }) == store_errc::read_only);
    CHECK(code_of([&] { ro.remove("a"); }) == store_errc::read_only);
    CHECK(code_of([&] { ro.subscribe("a", "u"); }) == store_errc::read_only);
    CHECK(code_of([&] { (void)ro.expire(t0 + 2h); }) == store_errc::read_only);
    CHECK(ro.count() == 1);

    // read-only open of a file that does not exist: cannot open, with the path
    std::string what;
    CHECK(code_of([&] { SqliteConnectionStore s{SqliteStoreSettings{.path = dir.file("absent.db"), .read_only = true}}; },
                  &what) == store_errc::io_error);
    CHECK(what.find("absent.db") != std::string::npos);
}

TEST_CASE("sqlite: a file without write permission gives read_only", "[store][sqlite]") {
    TempDir dir;
    const auto path = dir.file("perm.db");
    {
        SqliteConnectionStore s{path};
        s.put(rec("a"));
    }
    REQUIRE(::chmod(path.c_str(), 0444) == 0);
    REQUIRE(::chmod(dir.path().c_str(), 0555) == 0);
    if (::geteuid() == 0) {
        // root is not bound by file modes: the store must simply work, not invent an error
        // (the refusal itself is covered by the read_only setting test)
        SqliteConnectionStore s{path};
        CHECK_NOTHROW(s.put(rec("b")));
        CHECK(s.count() == 2);
        ::chmod(dir.path().c_str(), 0755);
        return;
    }
    const auto code = code_of([&] {
        SqliteConnectionStore s{path};
        s.put(rec("b"));
    });
    ::chmod(dir.path().c_str(), 0755);
    CHECK((code == store_errc::read_only || code == store_errc::io_error));
}

TEST_CASE("sqlite: two stores on one file see each other; racing removers get one true", "[store][sqlite]") {
    TempDir dir;
    const auto path = dir.file("shared.db");
    SqliteConnectionStore a{path};
    SqliteConnectionStore b{path};
    constexpr int n = 100;
    for (int i = 0; i < n; ++i) a.put(rec("r" + std::to_string(i)));
    REQUIRE(a.subscribe("r1", "t"));
    CHECK(b.count() == n);
    CHECK(b.subscribers("t") == std::vector<std::string>{"r1"});

    std::vector<std::atomic<int>> wins(n);
    auto remover = [&](SqliteConnectionStore& s) {
        for (int i = 0; i < n; ++i)
            if (s.remove("r" + std::to_string(i))) wins[i].fetch_add(1);
    };
    std::thread ta([&] { remover(a); });
    std::thread tb([&] { remover(b); });
    ta.join();
    tb.join();
    for (int i = 0; i < n; ++i) CHECK(wins[i].load() == 1);
    CHECK(a.count() == 0);
}

TEST_CASE("sqlite: SIGKILL of the writing process loses no committed record", "[store][sqlite]") {
    TempDir dir;
    const auto path = dir.file("crash.db");
    { SqliteConnectionStore init{path}; }  // schema exists before the child starts

    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        // The writer: acknowledges each record on the pipe only after put()/subscribe() returned.
        ::close(fds[0]);
        try {
            SqliteConnectionStore s{path};
            for (std::uint32_t i = 0;; ++i) {
                const auto id = "k" + std::to_string(i);
                s.put(rec(id, "u" + std::to_string(i % 10)));
                s.subscribe(id, "topic-" + std::to_string(i % 5));
                if (::write(fds[1], &i, sizeof i) != static_cast<ssize_t>(sizeof i)) ::_exit(2);
            }
        } catch (...) {
            ::_exit(3);
        }
    }
    ::close(fds[1]);
    std::uint32_t last = 0;
    std::size_t acks = 0;
    while (acks < 300) {
        std::uint32_t v = 0;
        REQUIRE(::read(fds[0], &v, sizeof v) == static_cast<ssize_t>(sizeof v));
        last = v;
        ++acks;
    }
    REQUIRE(::kill(child, SIGKILL) == 0);  // mid-write: the child is inside its loop
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
    // acknowledgements already in the pipe are committed records too
    std::uint32_t v = 0;
    while (::read(fds[0], &v, sizeof v) == static_cast<ssize_t>(sizeof v)) last = v;
    ::close(fds[0]);

    SqliteConnectionStore s{path};
    for (std::uint32_t i = 0; i <= last; ++i) {
        const auto id = "k" + std::to_string(i);
        auto r = s.get(id);
        REQUIRE(r);
        CHECK(r->topics == std::vector<std::string>{"topic-" + std::to_string(i % 5)});
    }
    CHECK(s.count() >= last + 1);
    CHECK(s.count() <= last + 2);  // at most the one in flight
    RawDb raw{path};
    CHECK(raw.scalar("PRAGMA integrity_check") == "ok");
}

TEST_CASE("sqlite: the node id kept in the file survives reopening, and one process at a time owns it", "[store][sqlite][lease]") {
    TempDir dir;
    const auto path = dir.file("node.db");
    std::string id;
    {
        SqliteConnectionStore first{path};
        id = first.stable_node_id();
        CHECK_FALSE(id.empty());
        CHECK(first.stable_node_id() == id);
        // Another owner of the file while the first lives gets no id (its Gateway picks a random
        // one), never the live node's.
        SqliteConnectionStore second{path};
        CHECK(second.stable_node_id().empty());
        SqliteConnectionStore reader{SqliteStoreSettings{.path = path, .read_only = true}};
        CHECK(reader.stable_node_id().empty());
    }
    SqliteConnectionStore again{path};
    CHECK(again.stable_node_id() == id);

    RawDb raw{path};
    CHECK(raw.scalar("SELECT value FROM wsgate_meta WHERE key='node_id'") == id);
    CHECK_THAT(raw.plan("SELECT id FROM wsgate_connections WHERE node_id='n1'"),
               Catch::Matchers::Contains("wsgate_connections_node"));
}

TEST_CASE("sqlite: a process killed with SIGKILL leaves its node id to the next one, which clears its records", "[store][sqlite][lease]") {
    TempDir dir;
    const auto path = dir.file("killed.db");
    { SqliteConnectionStore init{path}; }

    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ::close(fds[0]);
        try {
            SqliteConnectionStore s{path};
            const auto node = s.stable_node_id();
            for (int i = 0; i < 20; ++i) {
                auto r = rec("k" + std::to_string(i), "u1");
                r.node_id = node;
                s.put(r);
                s.subscribe(r.id, "room");
            }
            const char done = 1;
            if (::write(fds[1], &done, 1) != 1) ::_exit(2);
            for (;;) ::pause();
        } catch (...) {
            ::_exit(3);
        }
    }
    ::close(fds[1]);
    char done = 0;
    REQUIRE(::read(fds[0], &done, 1) == 1);
    ::close(fds[0]);
    REQUIRE(::kill(child, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);

    SqliteConnectionStore s{path};
    CHECK(s.connections_of_user("u1").size() == 20);
    const auto node = s.stable_node_id();
    REQUIRE_FALSE(node.empty());
    CHECK(s.get("k0")->node_id == node);
    CHECK(s.remove_node(node) == 20);
    CHECK(s.connections_of_user("u1").empty());
    CHECK(s.subscribers("room").empty());
    CHECK(s.count() == 0);
}

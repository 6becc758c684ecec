// SqliteConnectionStore topic streams: offsets, epochs and history kept in the file, device
// cursors, presence, and what happens when the file cannot be written.

#include "catch.hpp"
#include "temp_dir.hpp"

#include <wsgate/error.hpp>
#include <wsgate/sqlite/sqlite_store.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <thread>

using namespace wsgate;
using namespace std::chrono_literals;
using wsgate::test::TempDir;

namespace {

const TimePoint t0 = from_unix_ms(1'700'000'000'000);
const HistoryRetention keep_100{.max_count = 100};
const TimePoint any_age = TimePoint{};

std::string body_of(int i) { return R"({"type":"event","event":"e","data":{"n":)" + std::to_string(i) + "}}"; }

std::vector<std::uint64_t> offsets_of(const StreamRead& r) {
    std::vector<std::uint64_t> out;
    for (const auto& p : r.publications) out.push_back(p.offset);
    return out;
}

std::vector<std::uint64_t> range(std::uint64_t from, std::uint64_t to) {
    std::vector<std::uint64_t> out;
    for (auto i = from; i <= to; ++i) out.push_back(i);
    return out;
}

store_errc code_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const StoreError& e) {
        REQUIRE(e.code().category() == store_category());
        return static_cast<store_errc>(e.code().value());
    }
    FAIL("expected a StoreError");
    return store_errc::not_found;
}

struct RawDb {
    sqlite3* db = nullptr;
    explicit RawDb(const std::string& path) { REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK); }
    ~RawDb() { sqlite3_close(db); }
    int exec(const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr); }
    std::string scalar(const std::string& sql) {
        sqlite3_stmt* s = nullptr;
        REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
        std::string out;
        if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0) != nullptr)
            out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        sqlite3_finalize(s);
        return out;
    }
    std::string plan(const std::string& sql) {
        sqlite3_stmt* s = nullptr;
        REQUIRE(sqlite3_prepare_v2(db, ("EXPLAIN QUERY PLAN " + sql).c_str(), -1, &s, nullptr) == SQLITE_OK);
        std::string out;
        while (sqlite3_step(s) == SQLITE_ROW) out += reinterpret_cast<const char*>(sqlite3_column_text(s, 3)) + std::string("; ");
        sqlite3_finalize(s);
        return out;
    }
};

ConnectionRecord rec(const std::string& id, PrincipalKind kind, const std::string& user, const std::string& device,
                     const std::string& node) {
    ConnectionRecord r;
    r.id = id;
    r.principal.kind = kind;
    r.principal.user_id = user;
    r.principal.device_id = device;
    r.connected_at = t0;
    r.last_seen = t0;
    r.expires_at = t0 + 1h;
    r.node_id = node;
    return r;
}

}  // namespace

TEST_CASE("sqlite streams: offsets run 1, 2, 3 in one epoch and bodies come back byte for byte", "[store][sqlite][streams]") {
    TempDir dir;
    SqliteConnectionStore s{dir.file("s.db")};
    REQUIRE(s.supports_streams());
    const std::vector<std::string> bodies = {
        R"({"type":"event","data":"plain"})",
        "{\"type\":\"event\",\"data\":\"Grüße, 東京, 🎉 and \\\"quotes\\\", a \\\\ and \\u0000 and '\"}",
        R"({})",
    };
    std::vector<StreamPosition> got;
    for (const auto& b : bodies) got.push_back(s.append("events:a", b, t0, keep_100));
    REQUIRE(got.size() == 3);
    CHECK(got[0].offset == 1);
    CHECK(got[1].offset == 2);
    CHECK(got[2].offset == 3);
    CHECK(got[0].epoch.size() >= 12);
    CHECK(got[0].epoch.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
          std::string::npos);
    CHECK(got[1].epoch == got[0].epoch);
    CHECK(got[2].epoch == got[0].epoch);

    const auto r = s.read_stream("events:a", 0, 10, any_age);
    CHECK(r.top == got[2]);
    CHECK(r.first_retained == 1);
    REQUIRE(r.publications.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(r.publications[i].offset == i + 1);
        CHECK(r.publications[i].body == bodies[i]);
        CHECK(r.publications[i].at == t0);
    }
    // another topic is another stream: its own offsets and its own epoch
    const auto other = s.append("events:b", bodies[0], t0, keep_100);
    CHECK(other.offset == 1);
    CHECK(other.epoch != got[0].epoch);
}

TEST_CASE("sqlite streams: epoch, top and history survive reopening the file", "[store][sqlite][streams]") {
    TempDir dir;
    const auto path = dir.file("s.db");
    StreamPosition last;
    StreamPosition quiet;
    {
        SqliteConnectionStore s{path};
        for (int i = 1; i <= 5; ++i) last = s.append("events:a", body_of(i), t0 + std::chrono::seconds{i}, keep_100);
        // a stream only ever read: nothing is written, it reads as {0, ""}
        quiet = s.read_stream("events:quiet", 0, 10, any_age).top;
        CHECK(quiet == StreamPosition{0, ""});
        CHECK(s.latest("events:quiet", 10, any_age).top == quiet);
    }
    SqliteConnectionStore s{path};
    const auto r = s.read_stream("events:a", 2, 10, any_age);
    CHECK(r.top == last);
    CHECK(offsets_of(r) == range(3, 5));
    CHECK(r.publications.front().body == body_of(3));
    CHECK(r.publications.front().at == t0 + 3s);
    const auto next = s.append("events:a", body_of(6), t0 + 6s, keep_100);
    CHECK(next.offset == 6);
    CHECK(next.epoch == last.epoch);

    CHECK(s.read_stream("events:quiet", 0, 10, any_age).top == quiet);
    const auto first = s.append("events:quiet", body_of(1), t0, keep_100);
    CHECK(first.offset == 1);
    CHECK_FALSE(first.epoch.empty());
}

TEST_CASE("sqlite streams: two stores on one file appending at once get offsets 1..1000 each once", "[store][sqlite][streams]") {
    TempDir dir;
    const auto path = dir.file("shared.db");
    SqliteConnectionStore a{path};
    SqliteConnectionStore b{path};
    constexpr int per_writer = 500;
    const HistoryRetention keep{.max_count = 5000};
    std::vector<StreamPosition> got_a;
    std::vector<StreamPosition> got_b;
    std::atomic<bool> go{false};
    auto writer = [&](SqliteConnectionStore& s, const std::string& name, std::vector<StreamPosition>& got) {
        while (!go.load()) std::this_thread::yield();
        for (int i = 0; i < per_writer; ++i)
            got.push_back(s.append("events:race", name + ":" + std::to_string(i), t0, keep));
    };
    std::thread ta([&] { writer(a, "a", got_a); });
    std::thread tb([&] { writer(b, "b", got_b); });
    go = true;
    ta.join();
    tb.join();

    std::vector<int> seen(2 * per_writer + 1, 0);
    for (const auto* got : {&got_a, &got_b}) {
        REQUIRE(got->size() == per_writer);
        for (std::size_t i = 0; i < got->size(); ++i) {
            const auto& p = (*got)[i];
            REQUIRE(p.offset >= 1);
            REQUIRE(p.offset <= 2 * per_writer);
            ++seen[p.offset];
            CHECK(p.epoch == got_a.front().epoch);
            if (i > 0) CHECK(p.offset > (*got)[i - 1].offset);  // one writer's appends stay in its order
        }
    }
    CHECK(std::count(seen.begin() + 1, seen.end(), 1) == 2 * per_writer);

    // the history agrees with what each append returned
    std::map<std::uint64_t, std::string> expected;
    for (int i = 0; i < per_writer; ++i) {
        expected[got_a[i].offset] = "a:" + std::to_string(i);
        expected[got_b[i].offset] = "b:" + std::to_string(i);
    }
    const auto r = b.read_stream("events:race", 0, 5000, any_age);
    CHECK(r.top.offset == 2 * per_writer);
    CHECK(r.first_retained == 1);
    REQUIRE(r.publications.size() == 2 * per_writer);
    for (const auto& p : r.publications) CHECK(p.body == expected.at(p.offset));
    CHECK(offsets_of(r) == range(1, 2 * per_writer));
}

TEST_CASE("sqlite streams: history is trimmed to max_count, and max_count 0 keeps positions only", "[store][sqlite][streams]") {
    TempDir dir;
    const auto path = dir.file("s.db");
    SqliteConnectionStore s{path};
    const HistoryRetention keep3{.max_count = 3};
    for (int i = 1; i <= 10; ++i) s.append("events:a", body_of(i), t0, keep3);
    for (int i = 1; i <= 4; ++i) s.append("events:b", body_of(i), t0, keep3);
    auto r = s.read_stream("events:a", 0, 100, any_age);
    CHECK(r.top.offset == 10);
    CHECK(offsets_of(r) == range(8, 10));
    CHECK(r.first_retained == 8);
    CHECK(r.publications.back().body == body_of(10));
    CHECK(offsets_of(s.read_stream("events:b", 0, 100, any_age)) == range(2, 4));  // trimmed on its own

    RawDb raw{path};
    CHECK(raw.scalar("SELECT count(*) FROM wsgate_publications WHERE topic='events:a'") == "3");

    // a rule that keeps nothing: the offset still advances, the history is dropped
    const auto p = s.append("events:a", body_of(11), t0, HistoryRetention{.max_count = 0});
    CHECK(p.offset == 11);
    CHECK(p.epoch == r.top.epoch);
    r = s.read_stream("events:a", 0, 100, any_age);
    CHECK(r.top.offset == 11);
    CHECK(r.publications.empty());
    CHECK(r.first_retained == 12);
    CHECK(raw.scalar("SELECT count(*) FROM wsgate_publications WHERE topic='events:a'") == "0");
    CHECK(raw.scalar("SELECT count(*) FROM wsgate_publications WHERE topic='events:b'") == "3");
}

TEST_CASE("sqlite streams: publications older than max_age are dropped on append and ignored on read", "[store][sqlite][streams]") {
    TempDir dir;
    const auto path = dir.file("s.db");
    SqliteConnectionStore s{path};
    const HistoryRetention keep{.max_count = 100, .max_age = 10s};
    s.append("events:a", body_of(1), t0, keep);
    s.append("events:a", body_of(2), t0 + 5s, keep);
    s.append("events:a", body_of(3), t0 + 8s, keep);
    RawDb raw{path};
    CHECK(raw.scalar("SELECT count(*) FROM wsgate_publications WHERE topic='events:a'") == "3");

    s.append("events:a", body_of(4), t0 + 12s, keep);  // cutoff t0+2s: offset 1 goes
    CHECK(raw.scalar("SELECT count(*) FROM wsgate_publications WHERE topic='events:a'") == "3");
    auto r = s.read_stream("events:a", 0, 100, any_age);
    CHECK(offsets_of(r) == range(2, 4));
    CHECK(r.first_retained == 2);

    // the reader's own cutoff: at t0+16s with a 10 s history only offsets 3 and 4 still count
    r = s.read_stream("events:a", 0, 100, t0 + 6s);
    CHECK(offsets_of(r) == range(3, 4));
    CHECK(r.first_retained == 3);
    r = s.read_stream("events:a", 0, 100, t0 + 13s);
    CHECK(r.publications.empty());
    CHECK(r.first_retained == 5);  // none kept: top + 1
    CHECK(r.top.offset == 4);

    s.append("events:a", body_of(5), t0 + 60s, keep);
    CHECK(raw.scalar("SELECT min(seq) FROM wsgate_publications WHERE topic='events:a'") == "5");
    CHECK(raw.scalar("SELECT count(*) FROM wsgate_publications WHERE topic='events:a'") == "1");
}

TEST_CASE("sqlite streams: read_stream honours after, limit and not_before", "[store][sqlite][streams]") {
    TempDir dir;
    SqliteConnectionStore s{dir.file("s.db")};
    for (int i = 1; i <= 10; ++i) s.append("events:a", body_of(i), t0 + std::chrono::seconds{i}, keep_100);

    auto r = s.read_stream("events:a", 3, 4, any_age);
    CHECK(offsets_of(r) == range(4, 7));
    CHECK(r.publications[0].body == body_of(4));
    CHECK(r.first_retained == 1);
    CHECK(r.top.offset == 10);

    CHECK(offsets_of(s.read_stream("events:a", 0, 100, any_age)) == range(1, 10));
    CHECK(s.read_stream("events:a", 10, 100, any_age).publications.empty());
    CHECK(s.read_stream("events:a", 50, 100, any_age).publications.empty());  // ahead of the stream
    CHECK(s.read_stream("events:a", std::numeric_limits<std::uint64_t>::max(), 100, any_age).publications.empty());
    CHECK(offsets_of(s.read_stream("events:a", 8, std::numeric_limits<std::size_t>::max(), any_age)) == range(9, 10));

    r = s.read_stream("events:a", 0, 0, any_age);  // limit 0: positions only
    CHECK(r.publications.empty());
    CHECK(r.top.offset == 10);
    CHECK(r.first_retained == 1);

    r = s.read_stream("events:a", 2, 100, t0 + 5s);  // at ≥ t0+5s: offsets 5..10
    CHECK(offsets_of(r) == range(5, 10));
    CHECK(r.first_retained == 5);
    r = s.read_stream("events:a", 7, 2, t0 + 5s);
    CHECK(offsets_of(r) == range(8, 9));
    CHECK(r.first_retained == 5);

    // a topic never seen reads as {0, ""} and is not created; the first append gives it an epoch
    r = s.read_stream("events:new", 0, 10, any_age);
    CHECK(r.top == StreamPosition{0, ""});
    CHECK(r.first_retained == 1);
    CHECK(r.publications.empty());
    const auto born = s.append("events:new", body_of(1), t0, keep_100);
    CHECK(born.offset == 1);
    CHECK_FALSE(born.epoch.empty());
}

TEST_CASE("sqlite streams: latest gives the newest publications in ascending order", "[store][sqlite][streams]") {
    TempDir dir;
    SqliteConnectionStore s{dir.file("s.db")};
    for (int i = 1; i <= 10; ++i) s.append("events:a", body_of(i), t0 + std::chrono::seconds{i}, keep_100);

    auto r = s.latest("events:a", 3, any_age);
    CHECK(offsets_of(r) == range(8, 10));
    CHECK(r.publications.back().body == body_of(10));
    CHECK(r.top.offset == 10);
    CHECK(r.first_retained == 1);
    CHECK(offsets_of(s.latest("events:a", 100, any_age)) == range(1, 10));
    CHECK(s.latest("events:a", 0, any_age).publications.empty());

    r = s.latest("events:a", 100, t0 + 8s);
    CHECK(offsets_of(r) == range(8, 10));
    CHECK(r.first_retained == 8);
    r = s.latest("events:a", 100, t0 + 11s);
    CHECK(r.publications.empty());
    CHECK(r.first_retained == 11);

    r = s.latest("events:none", 5, any_age);
    CHECK(r.top == StreamPosition{0, ""});
    CHECK(r.publications.empty());
}

TEST_CASE("sqlite streams: a device cursor moves forward in its epoch, is replaced by another, and expires", "[store][sqlite][streams]") {
    TempDir dir;
    const auto path = dir.file("s.db");
    SqliteConnectionStore s{path};
    CHECK_FALSE(s.load_cursor("dev1", "events:a", t0));

    s.save_cursor("dev1", "events:a", {5, "E1"}, t0, 10s);
    CHECK(s.load_cursor("dev1", "events:a", t0) == StreamPosition{5, "E1"});
    s.save_cursor("dev1", "events:a", {3, "E1"}, t0 + 1s, 10s);  // behind: ignored
    CHECK(s.load_cursor("dev1", "events:a", t0 + 1s) == StreamPosition{5, "E1"});
    s.save_cursor("dev1", "events:a", {7, "E1"}, t0 + 2s, 10s);
    CHECK(s.load_cursor("dev1", "events:a", t0 + 2s) == StreamPosition{7, "E1"});
    s.save_cursor("dev1", "events:a", {2, "E2"}, t0 + 3s, 10s);  // another epoch: replaced
    CHECK(s.load_cursor("dev1", "events:a", t0 + 3s) == StreamPosition{2, "E2"});

    // independent per device and per topic
    s.save_cursor("dev2", "events:a", {9, "E2"}, t0 + 3s, 10s);
    s.save_cursor("dev1", "events:b", {4, "F"}, t0 + 3s, 10s);
    CHECK(s.load_cursor("dev1", "events:a", t0 + 3s) == StreamPosition{2, "E2"});
    CHECK(s.load_cursor("dev2", "events:a", t0 + 3s) == StreamPosition{9, "E2"});
    CHECK(s.load_cursor("dev1", "events:b", t0 + 3s) == StreamPosition{4, "F"});

    // forgotten keep_for after the last save; a save that does not move it still counts as one
    s.save_cursor("dev1", "events:a", {1, "E2"}, t0 + 8s, 10s);
    CHECK(s.load_cursor("dev1", "events:a", t0 + 17s) == StreamPosition{2, "E2"});
    CHECK_FALSE(s.load_cursor("dev1", "events:a", t0 + 18s));
    // once forgotten, a save starts over even with a smaller offset in the same epoch
    s.save_cursor("dev1", "events:a", {1, "E2"}, t0 + 19s, 10s);
    CHECK(s.load_cursor("dev1", "events:a", t0 + 19s) == StreamPosition{1, "E2"});

    // cursors are in the file, and expire() sweeps the forgotten ones
    {
        SqliteConnectionStore again{path};
        CHECK(again.load_cursor("dev1", "events:a", t0 + 19s) == StreamPosition{1, "E2"});
    }
    RawDb raw{path};
    CHECK(raw.scalar("SELECT count(*) FROM wsgate_cursors") == "3");
    (void)s.expire(t0 + 20s);  // dev2/events:a and dev1/events:b expired at t0+13s
    CHECK(raw.scalar("SELECT count(*) FROM wsgate_cursors") == "1");
    CHECK(s.load_cursor("dev1", "events:a", t0 + 20s) == StreamPosition{1, "E2"});
    CHECK_THAT(raw.plan("DELETE FROM wsgate_cursors WHERE expires_ms<=5"), Catch::Matchers::Contains("wsgate_cursors_expiry"));
}

TEST_CASE("sqlite streams: presence lists each subscribed connection and drops removed ones", "[store][sqlite][streams]") {
    TempDir dir;
    const auto path = dir.file("s.db");
    SqliteConnectionStore s{path};
    s.put(rec("c1", PrincipalKind::user, "alice", "phone", "n1"));
    s.put(rec("c2", PrincipalKind::user, "alice", "laptop", "n2"));
    s.put(rec("c3", PrincipalKind::public_device, "", "kiosk-7", "n1"));
    s.put(rec("c4", PrincipalKind::anonymous, "", "", "n2"));
    for (const char* id : {"c1", "c2", "c3"}) REQUIRE(s.subscribe(id, "events:room"));
    REQUIRE(s.subscribe("c4", "events:other"));

    auto members = s.presence("events:room");
    std::sort(members.begin(), members.end(), [](const auto& x, const auto& y) { return x.id < y.id; });
    REQUIRE(members.size() == 3);
    CHECK(members[0].id == "c1");
    CHECK(members[0].kind == PrincipalKind::user);
    CHECK(members[0].user_id == "alice");
    CHECK(members[0].device_id == "phone");
    CHECK(members[0].node_id == "n1");
    CHECK(members[1].id == "c2");
    CHECK(members[1].device_id == "laptop");
    CHECK(members[1].node_id == "n2");
    CHECK(members[2].id == "c3");
    CHECK(members[2].kind == PrincipalKind::public_device);
    CHECK(members[2].user_id.empty());
    CHECK(members[2].device_id == "kiosk-7");

    REQUIRE(s.remove("c2"));
    REQUIRE(s.unsubscribe("c3", "events:room"));
    members = s.presence("events:room");
    REQUIRE(members.size() == 1);
    CHECK(members[0].id == "c1");
    CHECK(s.presence("events:other").at(0).kind == PrincipalKind::anonymous);
    CHECK(s.presence("events:empty").empty());

    // streams belong to topics, not connections: removing every connection leaves them alone
    const auto p = s.append("events:room", body_of(1), t0, keep_100);
    REQUIRE(s.remove("c1"));
    (void)s.expire(t0 + 2h);
    CHECK(s.read_stream("events:room", 0, 10, any_age).top == p);
    CHECK(s.read_stream("events:room", 0, 10, any_age).publications.size() == 1);
}

TEST_CASE("sqlite streams: a file from before streams opens unchanged; read-only and damaged files give StoreError", "[store][sqlite][streams]") {
    TempDir dir;
    const auto path = dir.file("old.db");
    {
        SqliteConnectionStore s{path};
        s.put(rec("c1", PrincipalKind::user, "alice", "phone", "n1"));
    }
    {
        RawDb raw{path};
        REQUIRE(raw.exec("DROP TABLE wsgate_streams; DROP TABLE wsgate_publications; DROP TABLE wsgate_cursors") ==
                SQLITE_OK);
    }
    {
        // read-only: the old file opens and reads; streams need tables it may not create
        SqliteConnectionStore ro{SqliteStoreSettings{.path = path, .read_only = true}};
        CHECK(ro.get("c1"));
        (void)code_of([&] { (void)ro.read_stream("events:a", 0, 10, any_age); });
        (void)code_of([&] { (void)ro.load_cursor("d", "events:a", t0); });
    }
    {
        SqliteConnectionStore s{path};  // a writable open adds the tables
        CHECK(s.get("c1"));
        CHECK(s.append("events:a", body_of(1), t0, keep_100).offset == 1);
        for (int i = 2; i <= 300; ++i) s.append("events:a", std::string(200, 'x').insert(0, "{\"p\":\"") + "\"}", t0, HistoryRetention{.max_count = 1000});
    }
    {
        SqliteConnectionStore ro{SqliteStoreSettings{.path = path, .read_only = true}};
        CHECK(ro.read_stream("events:a", 0, 1, any_age).top.offset == 300);
        CHECK(code_of([&] { (void)ro.append("events:a", body_of(2), t0, keep_100); }) == store_errc::read_only);
        CHECK(code_of([&] { ro.save_cursor("d", "events:a", {1, "E"}, t0, 10s); }) == store_errc::read_only);
        // a topic never seen reads as {0, ""}: a read writes nothing, so a read-only file answers
        CHECK(ro.read_stream("events:new", 0, 1, any_age).top == StreamPosition{0, ""});
    }

    // damage the publications' pages: reads and appends report it instead of crashing
    {
        RawDb raw{path};
        REQUIRE(raw.exec("PRAGMA wal_checkpoint(TRUNCATE)") == SQLITE_OK);
    }
    {
        std::fstream f{path, std::ios::in | std::ios::out | std::ios::binary};
        f.seekg(0, std::ios::end);
        const auto size = static_cast<long>(f.tellg());
        REQUIRE(size > 8 * 4096);
        for (long off = 2 * 4096; off < size; off += 4096) {
            f.seekp(off + 16);
            for (int i = 0; i < 200; ++i) f.put(static_cast<char>(0x5A ^ i));
        }
    }
    const auto code = code_of([&] {
        SqliteConnectionStore s{path};
        (void)s.read_stream("events:a", 0, 1000, any_age);
        (void)s.append("events:a", body_of(301), t0, HistoryRetention{.max_count = 1000});
    });
    CHECK(code == store_errc::corrupt);
}

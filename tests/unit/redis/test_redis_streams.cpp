// RedisConnectionStore topic streams: offsets, history and its trimming, device cursors, epochs
// that change when Redis loses the keys, presence across nodes, a server that is not there.

#include "catch.hpp"
#include "raw_redis.hpp"
#include "redis_server.hpp"

#include <wsgate/error.hpp>
#include <wsgate/redis/redis_store.hpp>

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <thread>

using namespace wsgate;
using namespace std::chrono_literals;
using wsgate::test::RawRedis;
using wsgate::test::RedisServer;

namespace {

const TimePoint t0 = from_unix_ms(1'700'000'000'000);
const HistoryRetention keep_100{100, Duration{0}};

RedisStoreSettings settings_for(const RedisServer& s, std::string prefix = "wsgate:") {
    RedisStoreSettings st;
    st.endpoint.host = s.host();
    st.endpoint.port = s.port();
    st.key_prefix = std::move(prefix);
    return st;
}

std::string body_of(int i) { return R"({"type":"event","n":)" + std::to_string(i) + "}"; }

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

ConnectionRecord rec(const std::string& id, const std::string& node, PrincipalKind kind, const std::string& user,
                     const std::string& device) {
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

template <class Pred>
bool eventually(Pred p, std::chrono::milliseconds limit = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (p()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return p();
}

}  // namespace

TEST_CASE("redis streams: appends get consecutive offsets in one epoch, kept in the documented layout",
          "[store][redis][streams]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    RawRedis raw{server.port()};
    CHECK(s.supports_streams());

    const auto p1 = s.append("news", body_of(1), t0, keep_100);
    const auto p2 = s.append("news", body_of(2), t0 + 1s, keep_100);
    const auto p3 = s.append("news", body_of(3), t0 + 2s, keep_100);
    CHECK(p1.offset == 1);
    CHECK(p2.offset == 2);
    CHECK(p3.offset == 3);
    CHECK(!p1.epoch.empty());
    CHECK(p2.epoch == p1.epoch);
    CHECK(p3.epoch == p1.epoch);
    // another topic is another stream
    const auto other = s.append("sport", body_of(1), t0, keep_100);
    CHECK(other.offset == 1);
    CHECK(other.epoch != p1.epoch);

    CHECK(raw.cmd({"TYPE", "wsgate:stream:news"}).str == "hash");
    CHECK(raw.cmd({"HGET", "wsgate:stream:news", "epoch"}).str == p1.epoch);
    CHECK(raw.cmd({"HGET", "wsgate:stream:news", "top"}).str == "3");
    CHECK(raw.cmd({"TYPE", "wsgate:history:news"}).str == "stream");
    CHECK(raw.integer({"XLEN", "wsgate:history:news"}) == 3);
    // entry ids are '<offset>-1'
    CHECK(raw.cmd({"XRANGE", "wsgate:history:news", "2-1", "2-1"}).items.size() == 1);
    CHECK(raw.cmd({"XRANGE", "wsgate:history:news", "2-0", "2-0"}).items.empty());
    // without max_age the stream is permanent: it never loses its epoch by itself
    CHECK(raw.integer({"PTTL", "wsgate:stream:news"}) == -1);
    CHECK(raw.integer({"PTTL", "wsgate:history:news"}) == -1);

    const auto r = s.read_stream("news", 0, 10, TimePoint{});
    CHECK(r.top == p3);
    CHECK(offsets_of(r) == range(1, 3));
    CHECK(r.first_retained == 1);
    REQUIRE(r.publications.size() == 3);
    CHECK(r.publications[1].body == body_of(2));
    CHECK(r.publications[1].at == t0 + 1s);
}

TEST_CASE("redis streams: bodies come back byte for byte", "[store][redis][streams]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    const std::vector<std::string> bodies{
        R"({"text":"Grüße, 東京, 🎉"})",
        R"({"q":"\"quoted\" and \\backslash\\ and 'single'","nl":"a\nb"})",
        std::string("{\"bin\":\"") + std::string("\0\x01\xff\r\n|-1", 8) + "\"}",
        "{}",
        std::string(100'000, 'x'),
    };
    for (const auto& b : bodies) s.append("t", b, t0, keep_100);
    const auto r = s.read_stream("t", 0, 100, TimePoint{});
    REQUIRE(r.publications.size() == bodies.size());
    for (std::size_t i = 0; i < bodies.size(); ++i) CHECK(r.publications[i].body == bodies[i]);
    CHECK(with_position(r.publications[0].body, {1, r.top.epoch}) ==
          R"({"text":"Grüße, 東京, 🎉","offset":1,"epoch":")" + r.top.epoch + "\"}");
}

TEST_CASE("redis streams: two nodes appending at once get every offset exactly once, history in order",
          "[store][redis][streams]") {
    RedisServer server;
    RedisConnectionStore node_a{settings_for(server)};
    RedisConnectionStore node_b{settings_for(server)};
    constexpr int per_thread = 250;
    std::mutex mu;
    std::map<std::uint64_t, std::string> by_offset;  // offset -> the body that got it
    std::set<std::string> epochs;
    std::vector<std::thread> threads;
    int thread_no = 0;
    for (auto* store : {&node_a, &node_a, &node_b, &node_b}) {
        threads.emplace_back([&, store, no = thread_no++] {
            for (int i = 0; i < per_thread; ++i) {
                const auto body = R"({"from":)" + std::to_string(no) + R"(,"i":)" + std::to_string(i) + "}";
                const auto p = store->append("race", body, t0, HistoryRetention{2000, Duration{0}});
                std::lock_guard lk(mu);
                CHECK(by_offset.emplace(p.offset, body).second);
                epochs.insert(p.epoch);
            }
        });
    }
    for (auto& t : threads) t.join();
    REQUIRE(by_offset.size() == 4 * per_thread);
    CHECK(by_offset.begin()->first == 1);
    CHECK(by_offset.rbegin()->first == 4 * per_thread);
    CHECK(epochs.size() == 1);

    const auto r = node_b.read_stream("race", 0, 5000, TimePoint{});
    CHECK(r.top.offset == 4 * per_thread);
    REQUIRE(r.publications.size() == 4 * per_thread);
    for (std::size_t i = 0; i < r.publications.size(); ++i) {
        CHECK(r.publications[i].offset == i + 1);
        CHECK(r.publications[i].body == by_offset[i + 1]);
    }
}

TEST_CASE("redis streams: history is trimmed to max_count exactly", "[store][redis][streams]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    RawRedis raw{server.port()};
    for (int i = 1; i <= 7; ++i) s.append("t", body_of(i), t0, HistoryRetention{3, Duration{0}});
    CHECK(raw.integer({"XLEN", "wsgate:history:t"}) == 3);
    const auto r = s.read_stream("t", 0, 100, TimePoint{});
    CHECK(offsets_of(r) == range(5, 7));
    CHECK(r.first_retained == 5);
    CHECK(r.top.offset == 7);
    CHECK(s.read_stream("t", 2, 100, TimePoint{}).publications.front().offset == 5);

    SECTION("max_count 0 keeps positions only") {
        const auto p = s.append("t", body_of(8), t0, HistoryRetention{0, Duration{0}});
        CHECK(p.offset == 8);
        CHECK(raw.integer({"EXISTS", "wsgate:history:t"}) == 0);
        const auto r0 = s.read_stream("t", 0, 100, TimePoint{});
        CHECK(r0.publications.empty());
        CHECK(r0.first_retained == 9);
        CHECK(r0.top == p);
    }
}

TEST_CASE("redis streams: history is trimmed by age, from the front, and the keys expire together",
          "[store][redis][streams]") {
    RedisServer server;
    auto st = settings_for(server);
    st.key_ttl_grace = 30s;
    RedisConnectionStore s{st};
    RawRedis raw{server.port()};
    const HistoryRetention keep{100, 10s};
    s.append("t", body_of(1), t0, keep);
    s.append("t", body_of(2), t0 + 5s, keep);
    s.append("t", body_of(3), t0 + 12s, keep);  // cutoff t0+2s: 1 goes
    CHECK(raw.integer({"XLEN", "wsgate:history:t"}) == 2);
    auto r = s.read_stream("t", 0, 100, TimePoint{});
    CHECK(offsets_of(r) == std::vector<std::uint64_t>{2, 3});
    CHECK(r.first_retained == 2);

    // not_before hides what an append has not trimmed yet
    r = s.read_stream("t", 0, 100, t0 + 6s);
    CHECK(offsets_of(r) == std::vector<std::uint64_t>{3});
    CHECK(r.first_retained == 3);
    r = s.read_stream("t", 0, 100, t0 + 13s);
    CHECK(r.publications.empty());
    CHECK(r.first_retained == 4);

    // epoch, top and history share one TTL of max_age + grace
    const auto ttl_h = raw.integer({"PTTL", "wsgate:stream:t"});
    const auto ttl_x = raw.integer({"PTTL", "wsgate:history:t"});
    CHECK(ttl_h > 35'000);
    CHECK(ttl_h <= 40'000);
    CHECK(std::abs(ttl_h - ttl_x) < 1000);

    // an append far later drops everything older, and keeps its own entry
    s.append("t", body_of(4), t0 + 100s, keep);
    r = s.read_stream("t", 0, 100, TimePoint{});
    CHECK(offsets_of(r) == std::vector<std::uint64_t>{4});
    CHECK(r.first_retained == 4);
}

TEST_CASE("redis streams: clock skew between nodes never opens a gap in the history", "[store][redis][streams]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    const HistoryRetention keep{100, 10s};
    s.append("t", body_of(1), t0 + 20s, keep);  // a node whose clock runs ahead
    s.append("t", body_of(2), t0 + 5s, keep);   // one that runs behind
    s.append("t", body_of(3), t0 + 25s, keep);  // cutoff t0+15s: 1 is young enough, so 2 stays too
    auto r = s.read_stream("t", 0, 100, t0 + 15s);
    CHECK(offsets_of(r) == range(1, 3));
    CHECK(r.first_retained == 1);
    r = s.read_stream("t", 0, 100, t0 + 21s);
    CHECK(offsets_of(r) == std::vector<std::uint64_t>{3});
    CHECK(r.first_retained == 3);
}

TEST_CASE("redis streams: read_stream honours after, limit and not_before", "[store][redis][streams]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    for (int i = 1; i <= 10; ++i) s.append("t", body_of(i), t0 + std::chrono::seconds{i}, keep_100);

    auto r = s.read_stream("t", 3, 4, TimePoint{});
    CHECK(offsets_of(r) == range(4, 7));
    CHECK(r.top.offset == 10);
    CHECK(r.first_retained == 1);
    CHECK(offsets_of(s.read_stream("t", 7, 100, TimePoint{})) == range(8, 10));
    CHECK(s.read_stream("t", 10, 100, TimePoint{}).publications.empty());
    CHECK(s.read_stream("t", 50, 100, TimePoint{}).publications.empty());
    r = s.read_stream("t", std::numeric_limits<std::uint64_t>::max(), 100, TimePoint{});
    CHECK(r.publications.empty());
    CHECK(r.top.offset == 10);

    r = s.read_stream("t", 0, 0, TimePoint{});  // positions only
    CHECK(r.publications.empty());
    CHECK(r.top.offset == 10);
    CHECK(r.first_retained == 1);

    r = s.read_stream("t", 0, 100, t0 + 5s);
    CHECK(offsets_of(r) == range(5, 10));
    CHECK(r.first_retained == 5);
    r = s.read_stream("t", 7, 2, t0 + 5s);
    CHECK(offsets_of(r) == range(8, 9));
    CHECK(r.first_retained == 5);
    REQUIRE(!r.publications.empty());
    CHECK(r.publications[0].at == t0 + 8s);
    CHECK(r.publications[0].body == body_of(8));
}

TEST_CASE("redis streams: latest gives the last kept publications, oldest first", "[store][redis][streams]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    for (int i = 1; i <= 10; ++i) s.append("t", body_of(i), t0 + std::chrono::seconds{i}, keep_100);
    auto r = s.latest("t", 3, TimePoint{});
    CHECK(offsets_of(r) == range(8, 10));
    CHECK(r.top.offset == 10);
    CHECK(r.publications.back().body == body_of(10));
    CHECK(offsets_of(s.latest("t", 100, TimePoint{})) == range(1, 10));
    CHECK(s.latest("t", 0, TimePoint{}).publications.empty());
    r = s.latest("t", 100, t0 + 8s);
    CHECK(offsets_of(r) == range(8, 10));
    CHECK(r.first_retained == 8);
    CHECK(s.latest("t", 100, t0 + 11s).publications.empty());
}

TEST_CASE("redis streams: reads never write; a never-seen stream reads as {0, \"\"}", "[store][redis][streams]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    RawRedis raw{server.port()};
    const auto r1 = s.read_stream("fresh", 0, 10, TimePoint{});
    CHECK(r1.top == StreamPosition{0, ""});
    CHECK(r1.first_retained == 1);
    CHECK(r1.publications.empty());
    const auto l1 = s.latest("fresh", 10, TimePoint{});
    CHECK(l1.top == StreamPosition{0, ""});
    CHECK(l1.first_retained == 1);
    CHECK(raw.integer({"DBSIZE"}) == 0);  // clients naming arbitrary topics cannot grow Redis
    // the first append creates the stream with its epoch
    const auto p = s.append("fresh", body_of(1), t0, keep_100);
    CHECK(p.offset == 1);
    CHECK(!p.epoch.empty());
    CHECK(s.read_stream("fresh", 0, 0, TimePoint{}).top == p);
}

TEST_CASE("redis streams: losing the keys gives a new epoch, never old offsets under it", "[store][redis][streams]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    RawRedis raw{server.port()};
    s.append("t", body_of(1), t0, keep_100);
    const auto before = s.append("t", body_of(2), t0, keep_100);
    REQUIRE(before.offset == 2);

    SECTION("FLUSHALL") {
        raw.cmd({"FLUSHALL"});
        CHECK(s.read_stream("t", 0, 10, TimePoint{}).top == StreamPosition{0, ""});
        const auto after = s.append("t", body_of(3), t0, keep_100);
        CHECK(after.offset == 1);
        CHECK(!after.epoch.empty());
        CHECK(after.epoch != before.epoch);
    }
    SECTION("only the epoch hash is lost: the old history goes with it") {
        raw.cmd({"DEL", "wsgate:stream:t"});
        const auto after = s.append("t", body_of(3), t0, keep_100);
        CHECK(after.offset == 1);
        CHECK(after.epoch != before.epoch);
        const auto r = s.read_stream("t", 0, 10, TimePoint{});
        REQUIRE(r.publications.size() == 1);
        CHECK(r.publications[0].body == body_of(3));
    }
    SECTION("redis-server restarts without persistence") {
        server.restart();
        StreamPosition after;
        CHECK(eventually([&] {
            try {
                after = s.append("t", body_of(3), t0, keep_100);
                return true;
            } catch (const StoreError&) {
                return false;  // the first call finds the old connection dead
            }
        }));
        CHECK(after.offset == 1);
        CHECK(after.epoch != before.epoch);
    }
}

TEST_CASE("redis streams: device cursors only move forward within an epoch", "[store][redis][streams]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    RawRedis raw{server.port()};
    CHECK_FALSE(s.load_cursor("u1:d1", "t", t0).has_value());

    s.save_cursor("u1:d1", "t", {5, "E1"}, t0, 1h);
    CHECK(s.load_cursor("u1:d1", "t", t0) == StreamPosition{5, "E1"});
    s.save_cursor("u1:d1", "t", {3, "E1"}, t0, 1h);  // behind: ignored
    CHECK(s.load_cursor("u1:d1", "t", t0) == StreamPosition{5, "E1"});
    s.save_cursor("u1:d1", "t", {9, "E1"}, t0, 1h);
    CHECK(s.load_cursor("u1:d1", "t", t0) == StreamPosition{9, "E1"});
    s.save_cursor("u1:d1", "t", {2, "E2"}, t0, 1h);  // another epoch replaces, even when smaller
    CHECK(s.load_cursor("u1:d1", "t", t0) == StreamPosition{2, "E2"});

    // per device and per topic; a colon in either never makes two pairs share a key
    CHECK_FALSE(s.load_cursor("u1:d2", "t", t0).has_value());
    CHECK_FALSE(s.load_cursor("u1:d1", "other", t0).has_value());
    s.save_cursor("a:b", "c", {1, "E"}, t0, 1h);
    s.save_cursor("a", "b:c", {2, "E"}, t0, 1h);
    CHECK(s.load_cursor("a:b", "c", t0) == StreamPosition{1, "E"});
    CHECK(s.load_cursor("a", "b:c", t0) == StreamPosition{2, "E"});

    const auto ttl = raw.integer({"PTTL", "wsgate:cursor:5:u1:d1:t"});
    CHECK(ttl > 3'590'000);
    CHECK(ttl <= 3'600'000);
}

TEST_CASE("redis streams: a cursor is forgotten keep_for after its last save", "[store][redis][streams]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    // Margins of 600 ms either way, so a briefly starved machine does not decide the outcome.
    s.save_cursor("dev", "t", {1, "E"}, t0, 1500ms);
    std::this_thread::sleep_for(900ms);
    s.save_cursor("dev", "t", {1, "E"}, t0, 1500ms);  // a repeated save restarts the countdown
    std::this_thread::sleep_for(900ms);
    CHECK(s.load_cursor("dev", "t", t0) == StreamPosition{1, "E"});
    CHECK(eventually([&] { return !s.load_cursor("dev", "t", t0).has_value(); }, 3s));
}

TEST_CASE("redis streams: presence lists every live subscriber across nodes in one round trip",
          "[store][redis][streams][presence]") {
    RedisServer server;
    RedisConnectionStore node_a{settings_for(server)};
    RedisConnectionStore node_b{settings_for(server)};
    RawRedis raw{server.port()};
    node_a.put(rec("c1", "node-a", PrincipalKind::user, "u1", "d1"));
    node_b.put(rec("c2", "node-b", PrincipalKind::public_device, "", "kiosk-7"));
    node_b.put(rec("c3", "node-b", PrincipalKind::user, "u1", "d2"));
    REQUIRE(node_a.subscribe("c1", "room"));
    REQUIRE(node_b.subscribe("c2", "room"));
    REQUIRE(node_b.subscribe("c3", "elsewhere"));

    const auto before = raw.calls("evalsha");
    const auto seen_a = node_a.presence("room");
    CHECK(raw.calls("evalsha") == before + 1);
    const auto seen_b = node_b.presence("room");
    REQUIRE(seen_a.size() == 2);
    REQUIRE(seen_b.size() == 2);
    for (const auto* seen : {&seen_a, &seen_b}) {
        const auto& m1 = (*seen)[0];
        const auto& m2 = (*seen)[1];
        CHECK(m1.id == "c1");
        CHECK(m1.kind == PrincipalKind::user);
        CHECK(m1.user_id == "u1");
        CHECK(m1.device_id == "d1");
        CHECK(m1.node_id == "node-a");
        CHECK(m2.id == "c2");
        CHECK(m2.kind == PrincipalKind::public_device);
        CHECK(m2.user_id.empty());
        CHECK(m2.device_id == "kiosk-7");
        CHECK(m2.node_id == "node-b");
    }

    REQUIRE(node_a.remove("c1"));
    auto seen = node_b.presence("room");
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].id == "c2");
    CHECK(node_a.unsubscribe("c2", "room"));
    CHECK(node_a.presence("room").empty());
    CHECK(node_a.presence("never-used").empty());
}

TEST_CASE("redis streams: presence skips records whose key is gone and reads records written without a kind",
          "[store][redis][streams][presence]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    RawRedis raw{server.port()};
    s.put(rec("c1", "node-a", PrincipalKind::public_device, "", "kiosk"));
    s.put(rec("c2", "node-a", PrincipalKind::user, "u2", "d2"));
    REQUIRE(s.subscribe("c1", "room"));
    REQUIRE(s.subscribe("c2", "room"));
    raw.cmd({"HDEL", "wsgate:conn:c1", "kind"});  // as an older version wrote it
    raw.cmd({"DEL", "wsgate:conn:c2"});           // its native TTL fired, no sweep yet
    const auto seen = s.presence("room");
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].id == "c1");
    CHECK(seen[0].kind == PrincipalKind::public_device);
}

TEST_CASE("redis streams: an unreachable server is StoreError(unavailable), and the store recovers",
          "[store][redis][streams]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    server.stop();
    auto unavailable = [](const StoreError& e) { return e.code() == make_error_code(store_errc::unavailable); };
    auto check_throws = [&](auto&& fn) {
        try {
            fn();
            FAIL("no StoreError");
        } catch (const StoreError& e) {
            CHECK(unavailable(e));
        }
    };
    check_throws([&] { (void)s.append("t", "{}", t0, keep_100); });
    check_throws([&] { (void)s.read_stream("t", 0, 10, TimePoint{}); });
    check_throws([&] { (void)s.latest("t", 10, TimePoint{}); });
    check_throws([&] { s.save_cursor("d", "t", {1, "E"}, t0, 1h); });
    check_throws([&] { (void)s.load_cursor("d", "t", t0); });
    check_throws([&] { (void)s.presence("t"); });

    server.start();
    // Calls fail fast for RedisStoreSettings::retry_after after finding Redis unreachable.
    std::uint64_t offset = 0;
    CHECK(eventually([&] {
        try {
            offset = s.append("t", "{}", t0, keep_100).offset;
            return true;
        } catch (const StoreError&) {
            return false;
        }
    }));
    CHECK(offset == 1);
}

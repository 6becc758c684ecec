#include "catch.hpp"

#include <wsgate/wsgate.hpp>

using namespace wsgate;

namespace {
ConnectionRecord rec(const std::string& id, const std::string& user = {}, const std::string& device = {},
                     std::int64_t expires_ms = 1'000'000) {
    ConnectionRecord r;
    r.id = id;
    r.principal.kind = user.empty() ? PrincipalKind::anonymous : PrincipalKind::user;
    r.principal.user_id = user;
    r.principal.device_id = device;
    r.expires_at = from_unix_ms(expires_ms);
    return r;
}
}  // namespace

TEST_CASE("in-memory store keeps indexes consistent through put, subscribe and remove", "[store][memory]") {
    InMemoryConnectionStore s;
    s.put(rec("a", "u1", "phone"));
    s.put(rec("b", "u1", "tablet"));
    s.put(rec("c", "u2"));
    CHECK(s.count() == 3);
    CHECK(s.subscribe("a", "t"));
    CHECK(s.subscribe("a", "t"));  // idempotent
    CHECK(s.subscribe("c", "t"));
    CHECK_FALSE(s.subscribe("zz", "t"));
    auto subs = s.subscribers("t");
    std::sort(subs.begin(), subs.end());
    CHECK(subs == std::vector<ConnectionId>{"a", "c"});
    CHECK(s.connections_of_user("u1").size() == 2);
    CHECK(s.get("a")->topics == std::vector<std::string>{"t"});

    // A replaced record keeps its subscriptions and moves between user indexes.
    auto moved = rec("a", "u3", "phone");
    s.put(moved);
    CHECK(s.connections_of_user("u1").size() == 1);
    CHECK(s.connections_of_user("u3") == std::vector<ConnectionId>{"a"});
    CHECK(s.topics_of("a") == std::vector<std::string>{"t"});

    CHECK(s.unsubscribe("a", "t"));
    CHECK_FALSE(s.unsubscribe("a", "t"));
    CHECK(s.remove("c"));
    CHECK_FALSE(s.remove("c"));
    CHECK(s.subscribers("t").empty());
    CHECK(s.count() == 2);
    CHECK_FALSE(s.get("c"));
    CHECK(s.topics_of("c").empty());
}

TEST_CASE("in-memory store expires by TTL, once, and touch moves the deadline", "[store][memory][ttl]") {
    InMemoryConnectionStore s;
    s.put(rec("a", "", "", 100));
    s.put(rec("b", "", "", 200));
    s.put(rec("c", "", "", 300));
    CHECK(s.touch("c", from_unix_ms(50), from_unix_ms(150)));
    CHECK_FALSE(s.touch("nope", from_unix_ms(50)));
    auto gone = s.expire(from_unix_ms(150));
    REQUIRE(gone.size() == 2);
    CHECK(s.expire(from_unix_ms(150)).empty());
    CHECK(s.count() == 1);
    CHECK(s.get("b")->expires_at == from_unix_ms(200));
    CHECK(s.get("b")->last_seen == TimePoint{});
}

TEST_CASE("in-memory store scans in pages", "[store][memory][scan]") {
    InMemoryConnectionStore s;
    for (int i = 0; i < 25; ++i) s.put(rec("id" + std::to_string(100 + i)));
    std::set<std::string> seen;
    std::string cursor;
    int pages = 0;
    do {
        auto p = s.scan(cursor, 10);
        for (auto& r : p.records) seen.insert(r.id);
        cursor = p.next_cursor;
        ++pages;
    } while (!cursor.empty());
    CHECK(seen.size() == 25);
    CHECK(pages == 3);
}

TEST_CASE("resolve applies exclusions and permissions in one pass", "[store][memory][resolve]") {
    InMemoryConnectionStore s;
    auto a = rec("a", "u1", "phone");
    auto b = rec("b", "u1", "tablet");
    auto c = rec("c", "", "kiosk");
    c.principal.kind = PrincipalKind::public_device;
    c.principal.permissions = {"read_leaderboard"};
    for (auto* r : {&a, &b, &c}) s.put(*r);
    for (auto id : {"a", "b", "c"}) s.subscribe(id, "lb");

    auto r1 = s.resolve(Audience::user("u1").except_device("phone"));
    CHECK(r1.ids == std::vector<ConnectionId>{"b"});
    CHECK(r1.filtered == 1);

    auto r2 = s.resolve(Audience::topic("lb").requiring("read_leaderboard"));
    CHECK(r2.ids == std::vector<ConnectionId>{"c"});
    CHECK(r2.filtered == 2);

    auto r3 = s.resolve(Audience::connections({"a", "missing"}).except_connection("x"));
    CHECK(r3.ids == std::vector<ConnectionId>{"a"});

    auto r4 = s.resolve(Audience::users({"u1", "u1"}));
    CHECK(r4.ids.size() == 2);  // a user named twice still gets one frame per connection
    CHECK(s.resolve(Audience::everyone()).ids.size() == 3);
    CHECK(s.resolve(Audience::topic("none")).ids.empty());
}

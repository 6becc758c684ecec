// One contract for every ConnectionStore: each TEMPLATE_TEST_CASE runs against the in-memory,
// SQLite, Redis (a real redis-server on a random loopback port) and DynamoDB (dynalite) stores.

#include "catch.hpp"
#include "store_factories.hpp"

#include <wsgate/clock.hpp>
#include <wsgate/error.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/memory_transport.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

using namespace wsgate;
using namespace std::chrono_literals;
using wsgate::test::MemoryStoreFactory;
#ifdef WSGATE_TEST_REDIS
using wsgate::test::RedisClusterStoreFactory;
using wsgate::test::RedisStoreFactory;
#endif
#ifdef WSGATE_TEST_SQLITE
using wsgate::test::SqliteStoreFactory;
#endif
#ifdef WSGATE_TEST_DYNAMODB
using wsgate::test::DynamoDbStoreFactory;
#endif

namespace {

const TimePoint t0 = from_unix_ms(1'700'000'000'000);

ConnectionRecord rec(std::string id, std::string user = "", std::string device = "",
                     std::vector<std::string> perms = {}, TimePoint expires = t0 + 1h) {
    ConnectionRecord r;
    r.id = std::move(id);
    r.principal.kind = user.empty() ? PrincipalKind::public_device : PrincipalKind::user;
    r.principal.user_id = std::move(user);
    r.principal.device_id = std::move(device);
    r.principal.permissions = std::move(perms);
    r.connected_at = t0;
    r.last_seen = t0;
    r.expires_at = expires;
    r.node_id = "node-a";
    return r;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
}

std::vector<std::string> ids_of(const std::vector<ConnectionRecord>& rs) {
    std::vector<std::string> out;
    for (const auto& r : rs) out.push_back(r.id);
    return sorted(out);
}

using Ids = std::vector<std::string>;

}  // namespace

// Memory always; SQLite, Redis and DynamoDB when built (and, for DynamoDB, dynalite installed).
#ifdef WSGATE_TEST_SQLITE
#define WSGATE_SQLITE_STORE_ , SqliteStoreFactory
#else
#define WSGATE_SQLITE_STORE_
#endif
#ifdef WSGATE_TEST_REDIS
#define WSGATE_REDIS_STORE_ , RedisStoreFactory, RedisClusterStoreFactory
#else
#define WSGATE_REDIS_STORE_
#endif
#ifdef WSGATE_TEST_DYNAMODB
#define WSGATE_DYNAMODB_STORE_ , DynamoDbStoreFactory
#else
#define WSGATE_DYNAMODB_STORE_
#endif
#define STORE_TYPES MemoryStoreFactory WSGATE_SQLITE_STORE_ WSGATE_REDIS_STORE_ WSGATE_DYNAMODB_STORE_

TEMPLATE_TEST_CASE("store contract: a record round-trips with every field", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    ConnectionRecord r = rec("c1", "u1", "phone", {"read_leaderboard", "chat"});
    r.principal.session_id = "sess-1";
    r.principal.nickname = "Zoë \"quoted\" ñ";
    r.principal.issued_at = from_unix_seconds(1'699'999'000);
    r.principal.claims = {{"tenant", "acme"}, {"n", 3}};
    r.source_ip = "203.0.113.7";
    r.user_agent = "Mozilla/5.0 (X11)";
    r.node_id = "node-b";
    r.attributes = {{"tournamentId", "t-9"}, {"empty", ""}};
    r.topics = {"ignored-by-put"};
    s->put(r);

    auto g = s->get("c1");
    REQUIRE(g);
    CHECK(g->id == "c1");
    CHECK(g->principal.kind == PrincipalKind::user);
    CHECK(g->principal.user_id == "u1");
    CHECK(g->principal.session_id == "sess-1");
    CHECK(g->principal.device_id == "phone");
    CHECK(g->principal.nickname == r.principal.nickname);
    CHECK(g->principal.permissions == r.principal.permissions);
    REQUIRE(g->principal.issued_at);
    CHECK(*g->principal.issued_at == *r.principal.issued_at);
    CHECK(g->principal.claims == r.principal.claims);
    CHECK(g->connected_at == r.connected_at);
    CHECK(g->expires_at == r.expires_at);
    CHECK(g->last_seen == r.last_seen);
    CHECK(g->source_ip == r.source_ip);
    CHECK(g->user_agent == r.user_agent);
    CHECK(g->node_id == "node-b");
    CHECK(g->attributes == r.attributes);
    CHECK(g->topics.empty());  // put() ignores topics
    CHECK(s->topics_of("c1").empty());

    CHECK_FALSE(s->get("nope"));
    CHECK_FALSE(s->get(""));
    CHECK(s->count() == 1);
}

TEMPLATE_TEST_CASE("store contract: put replaces a record but keeps its subscriptions", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    s->put(rec("c1", "u1", "d1"));
    REQUIRE(s->subscribe("c1", "news"));
    auto r = rec("c1", "u2", "d2", {"x"});
    r.node_id = "node-z";
    s->put(r);
    CHECK(s->count() == 1);
    auto g = s->get("c1");
    REQUIRE(g);
    CHECK(g->principal.user_id == "u2");
    CHECK(g->node_id == "node-z");
    CHECK(g->topics == Ids{"news"});
    CHECK(s->subscribers("news") == Ids{"c1"});
    // the user index follows the new principal
    CHECK(s->connections_of_user("u1").empty());
    CHECK(s->connections_of_user("u2") == Ids{"c1"});
}

TEMPLATE_TEST_CASE("store contract: remove takes the record, its subscriptions and index entries", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    s->put(rec("c1", "u1", "d1"));
    s->put(rec("c2", "u1", "d2"));
    REQUIRE(s->subscribe("c1", "a"));
    REQUIRE(s->subscribe("c1", "b"));
    REQUIRE(s->subscribe("c2", "a"));

    CHECK(s->remove("c1"));
    CHECK_FALSE(s->remove("c1"));
    CHECK_FALSE(s->remove("never-existed"));
    CHECK_FALSE(s->get("c1"));
    CHECK(s->topics_of("c1").empty());
    CHECK(s->subscribers("a") == Ids{"c2"});
    CHECK(s->subscribers("b").empty());
    CHECK(s->connections_of_user("u1") == Ids{"c2"});
    CHECK(s->count() == 1);
    // a removed connection cannot be touched or subscribed
    CHECK_FALSE(s->touch("c1", t0 + 1s));
    CHECK_FALSE(s->subscribe("c1", "a"));
    CHECK_FALSE(s->unsubscribe("c1", "a"));
    CHECK(s->subscribers("a") == Ids{"c2"});
    // re-adding the id starts with no subscriptions
    s->put(rec("c1", "u1", "d1"));
    CHECK(s->topics_of("c1").empty());
}

TEMPLATE_TEST_CASE("store contract: subscribe is idempotent, unsubscribe reports what it removed", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    s->put(rec("c1"));
    s->put(rec("c2"));
    CHECK(s->subscribe("c1", "game:42"));
    CHECK(s->subscribe("c1", "game:42"));
    CHECK(s->subscribe("c1", "leaderboard:*"));
    CHECK(s->subscribe("c1", "ünïcødé topic with spaces"));
    CHECK(s->subscribe("c2", "game:42"));
    CHECK_FALSE(s->subscribe("ghost", "game:42"));
    CHECK(s->topics_of("c1") == sorted({"game:42", "leaderboard:*", "ünïcødé topic with spaces"}));
    CHECK(sorted(s->subscribers("game:42")) == Ids{"c1", "c2"});
    CHECK(s->subscribers("ghost-topic").empty());
    CHECK(s->get("c1")->topics == sorted({"game:42", "leaderboard:*", "ünïcødé topic with spaces"}));

    CHECK(s->unsubscribe("c1", "game:42"));
    CHECK_FALSE(s->unsubscribe("c1", "game:42"));
    CHECK_FALSE(s->unsubscribe("c1", "never"));
    CHECK(s->subscribers("game:42") == Ids{"c2"});
    CHECK(s->topics_of("c1") == sorted({"leaderboard:*", "ünïcødé topic with spaces"}));
}

TEMPLATE_TEST_CASE("store contract: the user index holds a user's devices; public principals are not indexed", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    s->put(rec("p1", "u1", "phone"));
    s->put(rec("p2", "u1", "laptop"));
    s->put(rec("p3", "u2", "phone"));
    s->put(rec("pub", "", "kiosk", {"read_leaderboard"}));
    CHECK(sorted(s->connections_of_user("u1")) == Ids{"p1", "p2"});
    CHECK(s->connections_of_user("u2") == Ids{"p3"});
    CHECK(s->connections_of_user("").empty());
    CHECK(s->connections_of_user("nobody").empty());
}

TEMPLATE_TEST_CASE("store contract: touch moves last_seen and, when asked, the expiry", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    ManualClock clock{t0};
    s->put(rec("c1", "u1", "d", {}, t0 + 10min));
    clock.advance(5min);
    CHECK(s->touch("c1", clock.now()));
    auto g = s->get("c1");
    REQUIRE(g);
    CHECK(g->last_seen == t0 + 5min);
    CHECK(g->expires_at == t0 + 10min);

    CHECK(s->touch("c1", clock.now(), t0 + 30min));
    g = s->get("c1");
    CHECK(g->expires_at == t0 + 30min);
    // the expiry index follows the new deadline
    CHECK(s->expire(t0 + 20min).empty());
    CHECK(ids_of(s->expire(t0 + 30min)) == Ids{"c1"});
    CHECK_FALSE(s->touch("c1", clock.now()));
}

TEMPLATE_TEST_CASE("store contract: expire removes exactly the records past their TTL, once", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    ManualClock clock{t0};
    s->put(rec("short", "u1", "d1", {}, t0 + 1min));
    s->put(rec("edge", "u1", "d2", {}, t0 + 2min));
    s->put(rec("long", "u2", "d3", {}, t0 + 1h));
    REQUIRE(s->subscribe("short", "news"));
    REQUIRE(s->subscribe("long", "news"));

    CHECK(s->expire(clock.now()).empty());
    clock.advance(1min);
    auto gone = s->expire(clock.now());
    REQUIRE(ids_of(gone) == Ids{"short"});
    CHECK(gone[0].topics == Ids{"news"});  // the returned record still says what it was in
    CHECK(gone[0].principal.user_id == "u1");
    CHECK(s->expire(clock.now()).empty());  // returned once

    clock.advance(1min);  // expires_at == now is expired (inclusive)
    CHECK(ids_of(s->expire(clock.now())) == Ids{"edge"});
    CHECK_FALSE(s->get("short"));
    CHECK_FALSE(s->get("edge"));
    CHECK(s->subscribers("news") == Ids{"long"});
    CHECK(s->connections_of_user("u1").empty());
    CHECK(s->count() == 1);

    clock.advance(2h);
    CHECK(ids_of(s->expire(clock.now())) == Ids{"long"});
    CHECK(s->count() == 0);
    CHECK(s->subscribers("news").empty());
}

TEMPLATE_TEST_CASE("store contract: expire handles many records in one call", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    for (int i = 0; i < 600; ++i) s->put(rec("c" + std::to_string(i), "", "", {}, t0 + std::chrono::seconds{i % 3}));
    CHECK(s->expire(t0 + 1s).size() == 400);
    CHECK(s->count() == 200);
    CHECK(s->expire(t0 + 2s).size() == 200);
    CHECK(s->count() == 0);
}

TEMPLATE_TEST_CASE("store contract: scan pages through every record once, in a stable order", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    {
        auto empty = s->scan("", 10);
        CHECK(empty.records.empty());
        CHECK(empty.next_cursor.empty());
    }
    std::set<std::string> expected;
    for (int i = 0; i < 25; ++i) {
        const auto id = "conn-" + std::to_string(i);
        s->put(rec(id, "u" + std::to_string(i % 4)));
        expected.insert(id);
    }
    REQUIRE(s->subscribe("conn-3", "t"));

    for (std::size_t limit : {1u, 7u, 25u, 100u}) {
        std::vector<std::string> seen;
        std::string cursor;
        std::size_t pages = 0;
        do {
            auto page = s->scan(cursor, limit);
            CHECK(page.records.size() <= limit);
            for (const auto& r : page.records) {
                seen.push_back(r.id);
                if (r.id == "conn-3") CHECK(r.topics == Ids{"t"});
            }
            cursor = page.next_cursor;
            REQUIRE(++pages <= 30);
        } while (!cursor.empty());
        CHECK(std::set<std::string>(seen.begin(), seen.end()) == expected);
        CHECK(seen.size() == expected.size());  // no duplicates
    }
    // the same cursor gives the same page
    auto a = s->scan("", 5);
    auto b = s->scan("", 5);
    CHECK(ids_of(a.records) == ids_of(b.records));
    CHECK(a.next_cursor == b.next_cursor);
    auto a2 = s->scan(a.next_cursor, 5);
    const auto first = ids_of(a.records);
    for (const auto& r : a2.records) CHECK(std::find(first.begin(), first.end(), r.id) == first.end());
}

TEMPLATE_TEST_CASE("store contract: resolve applies the audience kind, exclusions and permissions", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    s->put(rec("u1-phone", "u1", "phone", {"chat"}));
    s->put(rec("u1-laptop", "u1", "laptop", {"chat", "read_leaderboard"}));
    s->put(rec("u2-phone", "u2", "phone2", {"*"}));
    s->put(rec("kiosk", "", "kiosk-1", {"read_leaderboard"}));
    s->put(rec("anon", "", "", {}));
    for (const auto* id : {"u1-phone", "u1-laptop", "kiosk", "anon"}) REQUIRE(s->subscribe(id, "leaderboard:1"));

    auto ids = [](const ResolvedAudience& r) { return sorted(r.ids); };

    auto all = s->resolve(Audience::everyone());
    CHECK(ids(all) == sorted({"u1-phone", "u1-laptop", "u2-phone", "kiosk", "anon"}));
    CHECK(all.filtered == 0);

    auto topic = s->resolve(Audience::topic("leaderboard:1").requiring("read_leaderboard"));
    CHECK(ids(topic) == Ids{"kiosk", "u1-laptop"});
    CHECK(topic.filtered == 2);

    auto user = s->resolve(Audience::user("u1").except_device("phone"));
    CHECK(ids(user) == Ids{"u1-laptop"});
    CHECK(user.filtered == 1);

    auto users = s->resolve(Audience::users({"u1", "u2", "u1", "nobody"}));
    CHECK(ids(users) == Ids{"u1-laptop", "u1-phone", "u2-phone"});

    auto wildcard = s->resolve(Audience::users({"u2"}).requiring("anything"));
    CHECK(ids(wildcard) == Ids{"u2-phone"});  // "*" grants everything

    auto conns = s->resolve(Audience::connections({"kiosk", "ghost", "anon"}).except_connection("anon"));
    CHECK(ids(conns) == Ids{"kiosk"});
    CHECK(conns.filtered == 1);

    auto everyone_but = s->resolve(Audience::everyone().except_device("phone").requiring("chat"));
    CHECK(ids(everyone_but) == sorted({"u1-laptop", "u2-phone"}));
    CHECK(everyone_but.filtered == 3);

    // "everyone but the sender" by device is scoped to the sender's user: u2's device named
    // like u1's is still a recipient
    s->put(rec("u2-dup", "u2", "phone", {}));
    Audience but_sender = Audience::everyone();
    but_sender.excluded_device = "phone";
    but_sender.excluded_device_user = "u1";
    auto scoped = s->resolve(but_sender);
    CHECK(ids(scoped) == sorted({"u1-laptop", "u2-phone", "u2-dup", "kiosk", "anon"}));
    CHECK(scoped.filtered == 1);
    ConnectionRecord sender = rec("u1-phone", "u1", "phone");
    auto via_helper = s->resolve(Audience::connections({"u1-phone", "u2-dup"}).except_sender(sender));
    CHECK(ids(via_helper) == Ids{"u2-dup"});

    CHECK(s->resolve(Audience::topic("nobody-here")).ids.empty());
    CHECK(s->resolve(Audience::user("nobody")).ids.empty());
    CHECK(s->resolve(Audience::connections({})).ids.empty());
}

TEMPLATE_TEST_CASE("store contract: exactly one of several racing removers sees true", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    constexpr int n = 100;
    constexpr int threads = 4;
    for (int i = 0; i < n; ++i) s->put(rec("r" + std::to_string(i)));
    std::vector<std::atomic<int>> wins(n);
    std::atomic<int> ready{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
        ts.emplace_back([&] {
            ready.fetch_add(1);
            while (ready.load() < threads) std::this_thread::yield();
            for (int i = 0; i < n; ++i)
                if (s->remove("r" + std::to_string(i))) wins[i].fetch_add(1);
        });
    for (auto& t : ts) t.join();
    for (int i = 0; i < n; ++i) CHECK(wins[i].load() == 1);
    CHECK(s->count() == 0);
}

TEMPLATE_TEST_CASE("store contract: concurrent expire hands each record to one caller", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    constexpr int n = 300;
    for (int i = 0; i < n; ++i) s->put(rec("e" + std::to_string(i), "", "", {}, t0 + std::chrono::milliseconds{i}));
    std::vector<std::vector<ConnectionRecord>> got(3);
    std::vector<std::thread> ts;
    for (int t = 0; t < 3; ++t)
        ts.emplace_back([&, t] {
            for (int step = 0; step <= n; step += 20) {
                auto part = s->expire(t0 + std::chrono::milliseconds{step});
                got[t].insert(got[t].end(), part.begin(), part.end());
            }
        });
    for (auto& t : ts) t.join();
    std::multiset<std::string> all;
    for (const auto& g : got)
        for (const auto& r : g) all.insert(r.id);
    CHECK(all.size() == static_cast<std::size_t>(n));
    CHECK(std::set<std::string>(all.begin(), all.end()).size() == static_cast<std::size_t>(n));
    CHECK(s->count() == 0);
}

TEMPLATE_TEST_CASE("store contract: concurrent writers and readers leave a consistent store", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    constexpr int threads = 4;
    constexpr int per_thread = 60;
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) {
                const auto id = "w" + std::to_string(t) + "-" + std::to_string(i);
                s->put(rec(id, "user" + std::to_string(t), "dev" + std::to_string(i)));
                s->subscribe(id, "shared");
                s->subscribe(id, "t" + std::to_string(t));
                s->touch(id, t0 + 1s, t0 + 2h);
                (void)s->subscribers("shared");
                (void)s->resolve(Audience::topic("shared"));
                if (i % 3 == 0) s->remove(id);
            }
        });
    for (auto& t : ts) t.join();
    const std::size_t kept = threads * (per_thread - per_thread / 3);
    CHECK(s->count() == kept);
    CHECK(s->subscribers("shared").size() == kept);
    CHECK(s->resolve(Audience::everyone()).ids.size() == kept);
    for (int t = 0; t < threads; ++t) {
        CHECK(s->connections_of_user("user" + std::to_string(t)).size() == static_cast<std::size_t>(per_thread - per_thread / 3));
        CHECK(s->subscribers("t" + std::to_string(t)).size() == static_cast<std::size_t>(per_thread - per_thread / 3));
    }
    CHECK(s->expire(t0 + 1h).empty());
    CHECK(s->expire(t0 + 2h).size() == kept);
}

TEMPLATE_TEST_CASE("store contract: a capped subscribe refuses past the cap and changes nothing", "[store][contract][subscribe]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    s->put(rec("c1"));
    CHECK(s->subscribe_capped("c1", "a", 2) == SubscribeResult::subscribed);
    CHECK(s->subscribe_capped("c1", "b", 2) == SubscribeResult::subscribed);
    CHECK(s->subscribe_capped("c1", "a", 2) == SubscribeResult::already_subscribed);  // held: never refused
    CHECK(s->subscribe_capped("c1", "c", 2) == SubscribeResult::limit_reached);
    CHECK(s->topics_of("c1") == sorted({"a", "b"}));
    CHECK(s->subscribers("c").empty());
    CHECK(s->get("c1")->topics == sorted({"a", "b"}));
    CHECK(s->subscribe_capped("ghost", "a", 2) == SubscribeResult::not_found);
    CHECK(s->subscribers("a") == Ids{"c1"});
    CHECK(s->subscribe_capped("c1", "c", 0) == SubscribeResult::subscribed);  // 0: no cap
    CHECK(s->unsubscribe("c1", "a"));
    CHECK(s->unsubscribe("c1", "b"));
    CHECK(s->subscribe_capped("c1", "d", 2) == SubscribeResult::subscribed);  // a slot came free
    CHECK(s->topics_of("c1") == sorted({"c", "d"}));
}

TEMPLATE_TEST_CASE("store contract: racing capped subscribes of one connection stop exactly at the cap", "[store][contract][subscribe]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    s->put(rec("c1"));
    constexpr std::size_t cap = 6;
    constexpr int threads = 4;
    constexpr int per_thread = 12;
    std::atomic<int> subscribed{0}, limited{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) {
                const auto r = s->subscribe_capped("c1", "t" + std::to_string(t) + "-" + std::to_string(i), cap);
                if (r == SubscribeResult::subscribed) ++subscribed;
                else if (r == SubscribeResult::limit_reached) ++limited;
            }
        });
    for (auto& t : ts) t.join();
    CHECK(subscribed == static_cast<int>(cap));
    CHECK(limited == threads * per_thread - static_cast<int>(cap));
    const auto held = s->topics_of("c1");
    CHECK(held.size() == cap);
    for (const auto& topic : held) CHECK(s->subscribers(topic) == Ids{"c1"});
}

TEMPLATE_TEST_CASE("store contract: hostile ids and topics are data, not syntax", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    const std::vector<std::string> ids{"a:b:c", "x' OR '1'='1", "conn:evil", "*", "[", std::string("nul\0byte", 8),
                                       "ünï", std::string(2000, 'z')};
    for (const auto& id : ids) {
        s->put(rec(id, "user:" + id));
        CHECK(s->subscribe(id, "topic:" + id));
    }
    CHECK(s->count() == ids.size());
    for (const auto& id : ids) {
        auto g = s->get(id);
        REQUIRE(g);
        CHECK(g->id == id);
        CHECK(s->subscribers("topic:" + id) == Ids{id});
        CHECK(s->connections_of_user("user:" + id) == Ids{id});
    }
    CHECK(s->subscribers("*").empty());
    CHECK(s->connections_of_user("*").empty());
    for (const auto& id : ids) CHECK(s->remove(id));
    CHECK(s->count() == 0);
}

TEMPLATE_TEST_CASE("store contract: text that is not UTF-8 in a principal or attribute is stored, not thrown on", "[store][contract]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    auto r = rec("bad-utf8", "u1", "d1", {"chat"});
    r.principal.nickname = "caf\xc3";  // truncated sequence
    r.principal.claims = {{"k", std::string("\xff\xfe")}};
    r.attributes = {{"a", "\xc0\xaf"}};
    REQUIRE_NOTHROW(s->put(r));
    auto g = s->get("bad-utf8");
    REQUIRE(g);
    CHECK(g->principal.user_id == "u1");
    CHECK(g->principal.permissions == Ids{"chat"});
    CHECK(g->principal.nickname.starts_with("caf"));
    CHECK(s->connections_of_user("u1") == Ids{"bad-utf8"});
}

// ---- node lifetime: restart cleanup and leases ----------------------------------------------
// Redis measures leases on its server's clock, so these tests give a lease that should run out a
// millisecond to live and then wait for it (bounded); the other stores follow `now` at once.

namespace {

ConnectionRecord on_node(ConnectionRecord r, std::string node) {
    r.node_id = std::move(node);
    return r;
}

/// Calls reap_expired_nodes until it has removed `want` records or 10 s pass; the total.
std::size_t reap_until(ConnectionStore& s, TimePoint now, std::size_t limit, std::size_t want) {
    std::size_t total = 0;
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (total < want && std::chrono::steady_clock::now() < until) {
        const auto n = s.reap_expired_nodes(now, limit);
        REQUIRE(n <= limit);
        total += n;
        if (total < want) std::this_thread::sleep_for(5ms);
    }
    return total;
}

}  // namespace

TEMPLATE_TEST_CASE("store contract: remove_node takes every record of one node and nothing else", "[store][contract][lease]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    s->put(on_node(rec("a1", "u1"), "node-a"));
    s->put(on_node(rec("a2"), "node-a"));
    s->put(on_node(rec("b1", "u1"), "node-b"));
    for (const char* id : {"a1", "a2", "b1"}) REQUIRE(s->subscribe(id, "room"));

    CHECK(s->remove_node("node-a") == 2);
    CHECK_FALSE(s->get("a1"));
    CHECK_FALSE(s->get("a2"));
    CHECK(s->subscribers("room") == Ids{"b1"});
    CHECK(s->connections_of_user("u1") == Ids{"b1"});
    CHECK(s->count() == 1);
    CHECK(s->remove_node("node-a") == 0);
    CHECK(s->remove_node("never-seen") == 0);

    // A record moved to another node by put() belongs to that node only.
    s->put(on_node(rec("b1", "u1"), "node-c"));
    CHECK(s->remove_node("node-b") == 0);
    CHECK(s->remove_node("node-c") == 1);
    CHECK(s->count() == 0);
}

TEMPLATE_TEST_CASE("store contract: a node whose lease ran out loses its records, subscriptions and index entries", "[store][contract][lease]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    s->renew_lease("node-a", t0, 1h);
    s->renew_lease("node-b", t0, 1h);
    s->put(on_node(rec("a1", "u1"), "node-a"));
    s->put(on_node(rec("a2", "u1"), "node-a"));
    s->put(on_node(rec("b1", "u1"), "node-b"));
    s->put(on_node(rec("x1", "u1"), "node-x"));  // a node that never held a lease
    for (const char* id : {"a1", "a2", "b1", "x1"}) REQUIRE(s->subscribe(id, "room"));

    // Within the lease nothing is reaped.
    CHECK(s->reap_expired_nodes(t0 + 1min, 1000) == 0);
    CHECK(s->count() == 4);

    // node-a stops renewing (its last renewal gave it a millisecond); node-b keeps renewing.
    s->renew_lease("node-a", t0, 1ms);
    s->renew_lease("node-b", t0 + 1s, 1h);
    CHECK(reap_until(*s, t0 + 1s, 1000, 2) == 2);
    CHECK_FALSE(s->get("a1"));
    CHECK_FALSE(s->get("a2"));
    CHECK(sorted(s->subscribers("room")) == Ids{"b1", "x1"});
    CHECK(sorted(s->connections_of_user("u1")) == Ids{"b1", "x1"});
    CHECK(s->resolve(Audience::topic("room")).ids.size() == 2);
    CHECK(s->count() == 2);
    // Idempotent: a second reaper (another node) finds nothing left.
    CHECK(s->reap_expired_nodes(t0 + 1s, 1000) == 0);

    // The dead node's lease is forgotten with its records: a new incarnation starts clean.
    s->renew_lease("node-a", t0 + 2s, 1h);
    s->put(on_node(rec("a3", "u1"), "node-a"));
    CHECK(s->reap_expired_nodes(t0 + 2s, 1000) == 0);
    CHECK(s->get("a3"));
}

TEMPLATE_TEST_CASE("store contract: holds_lease is true only for a live lease, and false once it ran out or was reaped", "[store][contract][lease]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    CHECK_FALSE(s->holds_lease("node-a", t0));  // never renewed
    s->renew_lease("node-a", t0, 1h);
    s->put(on_node(rec("a1", "u1"), "node-a"));
    CHECK(s->holds_lease("node-a", t0 + 1s));
    CHECK_FALSE(s->holds_lease("node-b", t0 + 1s));
    // Ran out (Redis judges by its own clock: a millisecond lease has run out 10 ms later).
    s->renew_lease("node-a", t0, 1ms);
    std::this_thread::sleep_for(10ms);
    CHECK_FALSE(s->holds_lease("node-a", t0 + 1s));
    // Reaped with its records: still false, until the node renews again.
    CHECK(reap_until(*s, t0 + 1s, 1000, 1) == 1);
    CHECK_FALSE(s->holds_lease("node-a", t0 + 1s));
    s->renew_lease("node-a", t0 + 2s, 1h);
    CHECK(s->holds_lease("node-a", t0 + 2s));
}

TEMPLATE_TEST_CASE("store contract: reaping does bounded work per call and finishes over later calls", "[store][contract][lease]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    s->renew_lease("node-a", t0, 1ms);
    for (int i = 0; i < 7; ++i) s->put(on_node(rec("a" + std::to_string(i), "u1"), "node-a"));
    s->put(on_node(rec("b1", "u1"), "node-b"));
    CHECK(reap_until(*s, t0 + 1s, 3, 7) == 7);
    CHECK(s->connections_of_user("u1") == Ids{"b1"});
    CHECK(s->count() == 1);
}

TEMPLATE_TEST_CASE("store contract: concurrent reapers remove each record of a dead node once", "[store][contract][lease][concurrency]", STORE_TYPES) {
    TestType f;
    auto s = f.make();
    for (int i = 0; i < 40; ++i) s->put(on_node(rec("a" + std::to_string(i)), "node-a"));
    s->renew_lease("node-a", t0, 1ms);
    std::this_thread::sleep_for(10ms);  // so that the Redis server's clock is past the lease too
    std::atomic<std::size_t> total{0};
    std::vector<std::thread> reapers;
    for (int t = 0; t < 4; ++t)
        reapers.emplace_back([&] {
            for (int i = 0; i < 20; ++i) total += s->reap_expired_nodes(t0 + 1s, 5);
        });
    for (auto& t : reapers) t.join();
    const std::size_t raced = total;
    CHECK(raced <= 40);
    CHECK(raced + reap_until(*s, t0 + 1s, 1000, 40 - raced) == 40);
    CHECK(s->count() == 0);
}

TEMPLATE_TEST_CASE("store contract: a Gateway clears its node's leftovers at start and reaps a dead node in sweep", "[store][contract][lease][gateway]", STORE_TYPES) {
    TestType f;
    auto store = f.make();
    auto clock = std::make_shared<ManualClock>(t0);
    auto transport = std::make_shared<InMemoryTransport>();
    auto auth = std::make_shared<AnonymousAuthorizer>();
    GatewaySettings gs;
    gs.max_connections_per_user = 3;
    gs.node_lease = 100ms;
    Principal user;
    user.kind = PrincipalKind::user;
    user.user_id = "u1";

    auto fill = [&](Gateway& gw) {
        for (int i = 0; i < 3; ++i) REQUIRE(gw.on_connect({}, user).accepted);
        CHECK(gw.on_connect({}, user).status == 429);
    };

    // Node "a" takes the user's every slot and dies without a word (no disconnects, no sweep).
    gs.node_id = "a";
    auto a = std::make_unique<Gateway>(gs, store, transport, auth, clock);
    fill(*a);
    a.reset();
    CHECK(store->connections_of_user("u1").size() == 3);

    // It restarts under the same id: what it left behind is gone before it takes a connection.
    a = std::make_unique<Gateway>(gs, store, transport, auth, clock);
    CHECK(store->connections_of_user("u1").empty());
    fill(*a);

    // It dies again; node "b", sharing the store, reaps its records once its lease runs out.
    gs.node_id = "b";
    Gateway b{gs, store, transport, auth, clock};
    a.reset();
    std::size_t lost = 0;
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (lost < 3 && std::chrono::steady_clock::now() < until) {
        clock->advance(1s);
        lost += b.sweep().node_lost;
        if (lost < 3) std::this_thread::sleep_for(20ms);
    }
    CHECK(lost == 3);
    CHECK(store->connections_of_user("u1").empty());
    fill(b);
    // b renewed its own lease all along: another sweep much later does not touch its records.
    clock->advance(1s);
    CHECK(b.sweep().node_lost == 0);
    CHECK(store->connections_of_user("u1").size() == 3);
}


TEMPLATE_TEST_CASE("store contract: behind API Gateway (local_delivery_only false) a Gateway neither clears nor reaps", "[store][contract][lease][gateway]", STORE_TYPES) {
    TestType f;
    auto store = f.make();
    auto clock = std::make_shared<ManualClock>(t0);
    auto transport = std::make_shared<InMemoryTransport>();
    auto auth = std::make_shared<AnonymousAuthorizer>();
    // Connections outlive the process that accepted them: a dead process's records stay live.
    store->put(on_node(rec("c1", "u1"), "lambda-1"));
    store->renew_lease("lambda-1", t0, 1ms);
    GatewaySettings gs;
    gs.local_delivery_only = false;
    gs.node_id = "lambda-1";
    gs.node_lease = 100ms;
    Gateway gw{gs, store, transport, auth, clock};
    CHECK(store->get("c1"));
    std::this_thread::sleep_for(10ms);  // past the lease on the Redis server's clock too
    clock->advance(10s);
    CHECK(gw.sweep().node_lost == 0);
    CHECK(store->get("c1"));
}

namespace {
/// An in-memory store whose remove_node fails, as a store that is down at start would.
class NoCleanupStore final : public ConnectionStore {
public:
    InMemoryConnectionStore inner;
    std::size_t remove_node(const std::string&) override { throw StoreError(store_errc::unavailable, "down"); }
    void put(const ConnectionRecord& r) override { inner.put(r); }
    std::optional<ConnectionRecord> get(const ConnectionId& id) override { return inner.get(id); }
    bool remove(const ConnectionId& id) override { return inner.remove(id); }
    bool touch(const ConnectionId& id, TimePoint now, std::optional<TimePoint> e) override { return inner.touch(id, now, e); }
    bool subscribe(const ConnectionId& id, const std::string& t) override { return inner.subscribe(id, t); }
    SubscribeResult subscribe_capped(const ConnectionId& id, const std::string& t, std::size_t n) override {
        return inner.subscribe_capped(id, t, n);
    }
    bool unsubscribe(const ConnectionId& id, const std::string& t) override { return inner.unsubscribe(id, t); }
    std::vector<std::string> topics_of(const ConnectionId& id) override { return inner.topics_of(id); }
    std::vector<ConnectionId> subscribers(const std::string& t) override { return inner.subscribers(t); }
    std::vector<ConnectionId> connections_of_user(const std::string& u) override { return inner.connections_of_user(u); }
    ScanPage scan(const std::string& c, std::size_t n) override { return inner.scan(c, n); }
    std::vector<ConnectionRecord> expire(TimePoint now) override { return inner.expire(now); }
    std::size_t count() override { return inner.count(); }
    void renew_lease(const std::string& n, TimePoint now, Duration l) override { inner.renew_lease(n, now, l); }
    std::size_t reap_expired_nodes(TimePoint now, std::size_t limit) override { return inner.reap_expired_nodes(now, limit); }
};
}  // namespace

TEST_CASE("a Gateway that cannot clear its old records at start takes a fresh id, and the old one is reaped by lease", "[store][lease][gateway]") {
    auto store = std::make_shared<NoCleanupStore>();
    auto clock = std::make_shared<ManualClock>(t0);
    store->put(on_node(rec("old", "u1"), "node-a"));
    store->renew_lease("node-a", t0, 30s);
    GatewaySettings gs;
    gs.node_id = "node-a";
    Gateway gw{gs, store, std::make_shared<InMemoryTransport>(), std::make_shared<AnonymousAuthorizer>(), clock};
    CHECK(gw.node_id() != "node-a");
    CHECK(gw.metrics().store_errors == 1);
    CHECK(store->get("old"));
    clock->advance(31s);
    CHECK(gw.sweep().node_lost == 1);
    CHECK_FALSE(store->get("old"));
}

TEST_CASE("the default remove_node pages through scan and removes only that node's records", "[store][lease]") {
    // A store that overrides none of the node-lifetime calls gets the base class's remove_node.
    class Plain final : public ConnectionStore {
    public:
        InMemoryConnectionStore inner;
        void put(const ConnectionRecord& r) override { inner.put(r); }
        std::optional<ConnectionRecord> get(const ConnectionId& id) override { return inner.get(id); }
        bool remove(const ConnectionId& id) override { return inner.remove(id); }
        bool touch(const ConnectionId& id, TimePoint now, std::optional<TimePoint> e) override { return inner.touch(id, now, e); }
        bool subscribe(const ConnectionId& id, const std::string& t) override { return inner.subscribe(id, t); }
        SubscribeResult subscribe_capped(const ConnectionId& id, const std::string& t, std::size_t n) override {
            return inner.subscribe_capped(id, t, n);
        }
        bool unsubscribe(const ConnectionId& id, const std::string& t) override { return inner.unsubscribe(id, t); }
        std::vector<std::string> topics_of(const ConnectionId& id) override { return inner.topics_of(id); }
        std::vector<ConnectionId> subscribers(const std::string& t) override { return inner.subscribers(t); }
        std::vector<ConnectionId> connections_of_user(const std::string& u) override { return inner.connections_of_user(u); }
        ScanPage scan(const std::string& c, std::size_t n) override { return inner.scan(c, n); }
        std::vector<ConnectionRecord> expire(TimePoint now) override { return inner.expire(now); }
        std::size_t count() override { return inner.count(); }
    } s;
    for (int i = 0; i < 2500; ++i) s.put(on_node(rec("c" + std::to_string(i)), i % 2 == 0 ? "node-a" : "node-b"));
    CHECK(s.stable_node_id().empty());
    CHECK(s.remove_node("node-a") == 1250);
    CHECK(s.count() == 1250);
    CHECK(s.reap_expired_nodes(t0 + 1h, 1000) == 0);  // no leases by default
}

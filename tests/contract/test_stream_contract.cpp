// The topic-stream part of the ConnectionStore contract (positions, history, cursors, presence),
// run against every store that keeps streams: in-memory, SQLite, Redis and DynamoDB.

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
#include <string>
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
#define STREAM_STORES MemoryStoreFactory WSGATE_SQLITE_STORE_ WSGATE_REDIS_STORE_ WSGATE_DYNAMODB_STORE_

namespace {

const TimePoint t0 = from_unix_ms(1'700'000'000'000);
const TimePoint forever = TimePoint::min();

TimePoint now() { return SystemClock{}.now(); }

std::string body(int i) { return R"({"type":"tick","data":)" + std::to_string(i) + "}"; }

std::vector<std::uint64_t> offsets(const StreamRead& r) {
    std::vector<std::uint64_t> out;
    for (const auto& p : r.publications) out.push_back(p.offset);
    return out;
}

ConnectionRecord member(std::string id, std::string user, std::string device, PrincipalKind kind = PrincipalKind::user) {
    ConnectionRecord r;
    r.id = std::move(id);
    r.principal.kind = kind;
    r.principal.user_id = std::move(user);
    r.principal.device_id = std::move(device);
    r.connected_at = t0;
    r.last_seen = t0;
    r.expires_at = t0 + 1h;
    r.node_id = "node-a";
    return r;
}

}  // namespace

TEMPLATE_TEST_CASE("stream contract: offsets are consecutive within one stable epoch", "[store][contract][stream]",
                   STREAM_STORES) {
    TestType f;
    auto s = f.make();
    REQUIRE(s->supports_streams());
    const HistoryRetention keep{10, 0s};
    // A stream never appended to reads as {0, ""}: reads create nothing.
    const auto before = s->read_stream("t", 0, 10, forever);
    CHECK(before.top == StreamPosition{0, ""});
    CHECK(before.first_retained == 1);
    CHECK(before.publications.empty());
    CHECK(s->latest("t", 10, forever).top == StreamPosition{0, ""});
    const auto first = s->append("t", body(1), t0, keep);
    CHECK(first.offset == 1);
    REQUIRE_FALSE(first.epoch.empty());
    for (std::uint64_t i = 2; i <= 5; ++i) {
        const auto p = s->append("t", body(static_cast<int>(i)), t0, keep);
        CHECK(p.offset == i);
        CHECK(p.epoch == first.epoch);
    }
    CHECK(s->read_stream("t", 0, 0, forever).top == StreamPosition{5, first.epoch});
    // Streams are per topic.
    const auto other = s->append("u", body(0), t0, keep);
    CHECK(other.offset == 1);
    CHECK(s->read_stream("t", 0, 0, forever).top.offset == 5);
}

TEMPLATE_TEST_CASE("stream contract: bodies round-trip exactly", "[store][contract][stream]", STREAM_STORES) {
    TestType f;
    auto s = f.make();
    const std::string tricky = R"({"type":"x","data":"Zoë \"quoted\" ñ 🎉 \\ \u0001 '"})";
    s->append("t", tricky, t0, {5, 0s});
    auto r = s->read_stream("t", 0, 10, forever);
    REQUIRE(r.publications.size() == 1);
    CHECK(r.publications[0].body == tricky);
    CHECK(r.publications[0].offset == 1);
    CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(r.publications[0].at - t0).count() == 0);
}

TEMPLATE_TEST_CASE("stream contract: history is trimmed by count and read by position", "[store][contract][stream]",
                   STREAM_STORES) {
    TestType f;
    auto s = f.make();
    for (int i = 1; i <= 20; ++i) s->append("t", body(i), t0, {5, 0s});
    auto all = s->read_stream("t", 0, 100, forever);
    CHECK(all.top.offset == 20);
    CHECK(all.first_retained == 16);
    CHECK(offsets(all) == std::vector<std::uint64_t>{16, 17, 18, 19, 20});
    CHECK(all.publications.back().body == body(20));
    CHECK(offsets(s->read_stream("t", 17, 100, forever)) == std::vector<std::uint64_t>{18, 19, 20});
    CHECK(offsets(s->read_stream("t", 15, 2, forever)) == std::vector<std::uint64_t>{16, 17});
    CHECK(s->read_stream("t", 20, 100, forever).publications.empty());
    auto none = s->read_stream("t", 0, 0, forever);
    CHECK(none.publications.empty());
    CHECK(none.first_retained == 16);
    CHECK(offsets(s->latest("t", 2, forever)) == std::vector<std::uint64_t>{19, 20});
    CHECK(offsets(s->latest("t", 50, forever)).size() == 5);
}

TEMPLATE_TEST_CASE("stream contract: history is trimmed by age", "[store][contract][stream]", STREAM_STORES) {
    TestType f;
    auto s = f.make();
    const HistoryRetention keep{100, 10s};
    for (int i = 1; i <= 6; ++i) s->append("t", body(i), t0 + std::chrono::seconds(i * 3), keep);
    // At t0+18s with a 10 s bound: offsets 3 (t0+9s) and older are too old to read.
    const auto r = s->read_stream("t", 0, 100, t0 + 18s - 10s);
    CHECK(offsets(r) == std::vector<std::uint64_t>{3, 4, 5, 6});
    CHECK(r.first_retained == 3);
    CHECK(offsets(s->latest("t", 100, t0 + 18s - 10s)) == std::vector<std::uint64_t>{3, 4, 5, 6});
    // All aged out: nothing retained, the next offset is where history would start.
    const auto old = s->read_stream("t", 0, 100, t0 + 1h);
    CHECK(old.publications.empty());
    CHECK(old.first_retained == 7);
    CHECK(old.top.offset == 6);
}

TEMPLATE_TEST_CASE("stream contract: a stream without history still gives positions", "[store][contract][stream]",
                   STREAM_STORES) {
    TestType f;
    auto s = f.make();
    s->append("t", body(1), t0, {0, 0s});
    const auto p = s->append("t", body(2), t0, {0, 0s});
    CHECK(p.offset == 2);
    const auto r = s->read_stream("t", 0, 100, forever);
    CHECK(r.publications.empty());
    CHECK(r.first_retained == 3);
}

TEMPLATE_TEST_CASE("stream contract: concurrent appends get distinct consecutive offsets", "[store][contract][stream]",
                   STREAM_STORES) {
    TestType f;
    auto s = f.make();
    constexpr int threads = 4;
    constexpr int each = 100;
    std::vector<std::vector<std::uint64_t>> got(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            for (int i = 0; i < each; ++i) got[t].push_back(s->append("t", body(i), t0, {1000, 0s}).offset);
        });
    for (auto& th : pool) th.join();
    std::set<std::uint64_t> all;
    for (const auto& v : got) {
        CHECK(std::is_sorted(v.begin(), v.end()));
        all.insert(v.begin(), v.end());
    }
    CHECK(all.size() == threads * each);
    CHECK(*all.begin() == 1);
    CHECK(*all.rbegin() == threads * each);
    CHECK(s->read_stream("t", 0, 10000, forever).publications.size() == threads * each);
}

TEMPLATE_TEST_CASE("stream contract: device cursors move forward within an epoch and expire", "[store][contract][stream]",
                   STREAM_STORES) {
    TestType f;
    auto s = f.make();
    CHECK_FALSE(s->load_cursor("dev", "t", t0));
    s->save_cursor("dev", "t", {5, "e1"}, t0, 1h);
    CHECK(s->load_cursor("dev", "t", t0) == StreamPosition{5, "e1"});
    s->save_cursor("dev", "t", {3, "e1"}, t0, 1h);  // older: ignored
    CHECK(s->load_cursor("dev", "t", t0) == StreamPosition{5, "e1"});
    s->save_cursor("dev", "t", {9, "e1"}, t0, 1h);
    CHECK(s->load_cursor("dev", "t", t0) == StreamPosition{9, "e1"});
    s->save_cursor("dev", "t", {2, "e2"}, t0, 1h);  // another epoch replaces
    CHECK(s->load_cursor("dev", "t", t0) == StreamPosition{2, "e2"});
    // Per device and per topic.
    CHECK_FALSE(s->load_cursor("dev", "other", t0));
    CHECK_FALSE(s->load_cursor("other", "t", t0));
    // Forgotten `keep_for` after the last save (Redis counts on its own clock: a short wait).
    // The first save is long enough to read back on a starved machine; the second is brief.
    s->save_cursor("brief", "t", {1, "e1"}, now(), 30s);
    REQUIRE(s->load_cursor("brief", "t", now()));
    s->save_cursor("brief", "t", {2, "e1"}, now(), 200ms);
    std::this_thread::sleep_for(600ms);
    CHECK_FALSE(s->load_cursor("brief", "t", now()));
}

TEMPLATE_TEST_CASE("stream contract: presence lists each live subscriber once", "[store][contract][stream]",
                   STREAM_STORES) {
    TestType f;
    auto s = f.make();
    s->put(member("c1", "alice", "phone"));
    s->put(member("c2", "alice", "laptop"));
    s->put(member("c3", "", "board", PrincipalKind::public_device));
    s->put(member("c4", "bob", "phone"));
    for (const auto* id : {"c1", "c2", "c3"}) REQUIRE(s->subscribe(id, "room"));
    REQUIRE(s->subscribe("c4", "elsewhere"));
    auto members = s->presence("room");
    std::sort(members.begin(), members.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    REQUIRE(members.size() == 3);
    CHECK(members[0].id == "c1");
    CHECK(members[0].user_id == "alice");
    CHECK(members[0].device_id == "phone");
    CHECK(members[0].kind == PrincipalKind::user);
    CHECK(members[0].node_id == "node-a");
    CHECK(members[2].kind == PrincipalKind::public_device);
    CHECK(members[2].device_id == "board");
    s->remove("c2");
    s->unsubscribe("c3", "room");
    members = s->presence("room");
    REQUIRE(members.size() == 1);
    CHECK(members[0].id == "c1");
    CHECK(s->presence("nobody").empty());
}

namespace {

/// A Gateway over `store` whose `feed` topic keeps a history of `history` publications.
struct StreamWorld {
    std::shared_ptr<ConnectionStore> store;
    std::shared_ptr<InMemoryTransport> transport = std::make_shared<InMemoryTransport>(1'000'000);
    std::unique_ptr<Gateway> gw;

    StreamWorld(std::shared_ptr<ConnectionStore> s, std::size_t history) : store(std::move(s)) {
        GatewaySettings gs;
        gs.rate_per_second = 0;
        gs.max_connections_per_user = 0;
        gs.node_lease = Duration::zero();
        TopicRule feed{"feed", "", "", /*anonymous_read=*/true};
        feed.history_size = history;
        gs.router.topic_rules = {feed};
        gw = std::make_unique<Gateway>(gs, store, transport, std::make_shared<AnonymousAuthorizer>());
    }
    ConnectionId connect() {
        ConnectRequest req;
        req.connection_id = make_connection_id();
        transport->open(req.connection_id);
        auto r = gw->on_connect(req);
        REQUIRE(r.accepted);
        return r.id;
    }
    std::vector<nlohmann::json> frames(const ConnectionId& id) {
        std::vector<nlohmann::json> out;
        for (const auto& f : transport->drain(id)) out.push_back(nlohmann::json::parse(f));
        return out;
    }
};

}  // namespace

TEMPLATE_TEST_CASE("stream contract: a reconnecting client gets exactly the 500 it missed, then live ones",
                   "[store][contract][stream][recovery]", STREAM_STORES) {
    TestType f;
    StreamWorld w{f.make(), 1000};
    auto a = w.connect();
    w.gw->on_message(a, R"({"type":"subscribe","topic":"feed"})");
    w.gw->publish(Envelope{"tick"}.data(0), Audience::topic("feed"));
    auto first = w.frames(a);
    REQUIRE(first.size() == 2);
    const auto& seen = first[1];
    REQUIRE(seen["offset"] == 1);
    w.gw->on_disconnect(a);
    for (int i = 1; i <= 500; ++i) w.gw->publish(Envelope{"tick"}.data(i), Audience::topic("feed"));

    auto b = w.connect();
    nlohmann::json sub{{"type", "subscribe"}, {"topic", "feed"}, {"since", {{"offset", 1}, {"epoch", seen["epoch"]}}}};
    w.gw->on_message(b, sub.dump());
    w.gw->publish(Envelope{"tick"}.data(501), Audience::topic("feed"));
    auto got = w.frames(b);
    REQUIRE(got.size() == 502);
    CHECK(got[0]["recovered"] == true);
    CHECK(got[0]["missed"] == 500);
    for (std::size_t i = 1; i < got.size(); ++i) {
        INFO(i);
        REQUIRE(got[i]["offset"] == i + 1);
        CHECK(got[i]["data"] == static_cast<int>(i));
        CHECK(got[i]["epoch"] == seen["epoch"]);
    }
}

TEMPLATE_TEST_CASE("stream contract: recovery racing a publisher delivers every offset once and in order",
                   "[store][contract][stream][recovery][concurrency]", STREAM_STORES) {
    TestType f;
    StreamWorld w{f.make(), 10000};
    constexpr int total = 600;
    std::atomic<bool> done{false};
    auto id = w.connect();
    w.gw->on_message(id, R"({"type":"subscribe","topic":"feed"})");
    std::thread publisher([&] {
        for (int i = 1; i <= total; ++i) w.gw->publish(Envelope{"tick"}.data(i), Audience::topic("feed"));
        done = true;
    });
    std::vector<std::uint64_t> seen;
    std::string epoch;
    auto take = [&](const ConnectionId& c) {
        for (const auto& frame : w.frames(c)) {
            if (!frame.contains("offset")) continue;
            seen.push_back(frame["offset"].get<std::uint64_t>());
            epoch = frame["epoch"].get<std::string>();
        }
    };
    int reconnects = 0;
    while (!done.load() || reconnects < 3) {
        std::this_thread::sleep_for(2ms);
        take(id);
        w.gw->on_disconnect(id);
        take(id);
        id = w.connect();
        nlohmann::json sub{{"type", "subscribe"}, {"topic", "feed"}};
        if (!seen.empty()) sub["since"] = {{"offset", seen.back()}, {"epoch", epoch}};
        w.gw->on_message(id, sub.dump());
        ++reconnects;
    }
    publisher.join();
    take(id);
    INFO("reconnects " << reconnects);
    REQUIRE_FALSE(seen.empty());
    for (std::size_t i = 1; i < seen.size(); ++i) {
        INFO("at " << i);
        REQUIRE(seen[i] == seen[i - 1] + 1);
    }
    CHECK(seen.back() == total);
}

TEST_CASE("stream contract: a restarted in-memory store starts a new epoch, and recovery says so",
          "[store][contract][stream][recovery]") {
    StreamWorld before{std::make_shared<InMemoryConnectionStore>(), 100};
    auto a = before.connect();
    before.gw->on_message(a, R"({"type":"subscribe","topic":"feed"})");
    before.gw->publish(Envelope{"tick"}, Audience::topic("feed"));
    const auto seen = before.frames(a).back();
    REQUIRE(seen["offset"] == 1);

    StreamWorld after{std::make_shared<InMemoryConnectionStore>(), 100};  // the process restarted
    after.gw->publish(Envelope{"tick"}, Audience::topic("feed"));
    after.gw->publish(Envelope{"tick"}, Audience::topic("feed"));
    auto b = after.connect();
    nlohmann::json sub{{"type", "subscribe"}, {"topic", "feed"}, {"since", {{"offset", 1}, {"epoch", seen["epoch"]}}}};
    after.gw->on_message(b, sub.dump());
    auto got = after.frames(b);
    REQUIRE(got.size() == 1);
    CHECK(got[0]["recovered"] == false);
    CHECK(got[0]["reason"] == "epoch_changed");
    CHECK(got[0]["position"]["offset"] == 2);
    CHECK(got[0]["position"]["epoch"] != seen["epoch"]);
}

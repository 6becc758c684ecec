// DynamoDbConnectionStore against dynalite: what the shared contract (tests/contract) does not
// cover — records DynamoDB's TTL has not deleted yet, two processes ("two Lambda instances")
// sharing one table and racing on it, and the request counts docs/stores.md promises.

#include "catch.hpp"
#include "dynamo_test_util.hpp"

#include <wsgate/dynamodb/dynamodb_store.hpp>
#include <wsgate/error.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

using namespace wsgate;
using namespace std::chrono_literals;
using wsgate::test::fresh_table;
using wsgate::test::RecordingHttp;

namespace {

const TimePoint t0 = from_unix_ms(1'700'000'000'000);

ConnectionRecord rec(std::string id, std::string user, TimePoint expires, std::vector<std::string> perms = {}) {
    ConnectionRecord r;
    r.id = std::move(id);
    r.principal.kind = user.empty() ? PrincipalKind::public_device : PrincipalKind::user;
    r.principal.user_id = std::move(user);
    r.principal.device_id = "dev-" + r.id;
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

using Ids = std::vector<std::string>;

}  // namespace

TEST_CASE("dynamodb: a record past its expiry reads as absent everywhere until a sweep deletes it", "[store][dynamodb]") {
    auto clock = std::make_shared<ManualClock>(t0);
    auto s = fresh_table(clock);
    DynamoDbConnectionStore store(s);
    // A second process whose clock lags: it still sees the item, proving it was not deleted.
    auto lagging = s;
    lagging.clock = std::make_shared<ManualClock>(t0);
    DynamoDbConnectionStore other(lagging);

    store.put(rec("short", "u1", t0 + 1min, {"chat"}));
    store.put(rec("long", "u1", t0 + 1h, {"chat"}));
    REQUIRE(store.subscribe("short", "room"));
    REQUIRE(store.subscribe("long", "room"));
    REQUIRE(store.get("short"));

    clock->advance(2min);  // DynamoDB's TTL has not run: the item is still in the table
    CHECK_FALSE(store.get("short"));
    CHECK(store.topics_of("short").empty());
    CHECK(store.subscribers("room") == Ids{"long"});
    CHECK(store.connections_of_user("u1") == Ids{"long"});
    CHECK(store.resolve(Audience::topic("room")).ids == Ids{"long"});
    CHECK(store.resolve(Audience::user("u1")).ids == Ids{"long"});
    CHECK(store.resolve(Audience::connections({"short", "long"})).ids == Ids{"long"});
    CHECK(store.resolve(Audience::everyone()).ids == Ids{"long"});
    CHECK(store.presence("room").size() == 1);
    CHECK(store.count() == 1);
    CHECK(store.scan("", 10).records.size() == 1);
    CHECK_FALSE(store.touch("short", clock->now(), clock->now() + 1h));  // absent: no resurrection
    CHECK(store.subscribe_capped("short", "other", 0) == SubscribeResult::not_found);
    REQUIRE(other.get("short"));  // still there for a reader whose clock says it is live

    // The sweep hands it back once, with its topics, and deletes it with its index items.
    auto gone = store.expire(clock->now());
    REQUIRE(gone.size() == 1);
    CHECK(gone[0].id == "short");
    CHECK(gone[0].topics == Ids{"room"});
    CHECK(gone[0].principal.permissions == Ids{"chat"});
    CHECK(store.expire(clock->now()).empty());
    CHECK_FALSE(other.get("short"));
    CHECK(other.subscribers("room") == Ids{"long"});
    CHECK(other.connections_of_user("u1") == Ids{"long"});
    CHECK(other.count() == 1);
}

TEST_CASE("dynamodb: two stores on one table (two Lambda instances) see each other's writes", "[store][dynamodb]") {
    auto s = fresh_table(std::make_shared<ManualClock>(t0));
    DynamoDbConnectionStore a(s), b(s);
    CHECK(a.shared());

    a.put(rec("c1", "u1", t0 + 1h, {"read"}));  // $connect handled by instance a
    auto seen = b.get("c1");                     // a message handled by instance b
    REQUIRE(seen);
    CHECK(seen->principal.user_id == "u1");
    CHECK(seen->principal.permissions == Ids{"read"});
    REQUIRE(b.subscribe("c1", "game:1"));
    CHECK(a.subscribers("game:1") == Ids{"c1"});
    CHECK(a.topics_of("c1") == Ids{"game:1"});
    CHECK(a.resolve(Audience::topic("game:1").requiring("read")).ids == Ids{"c1"});
    CHECK(a.resolve(Audience::topic("game:1").requiring("write")).filtered == 1);
    CHECK(b.touch("c1", t0 + 5s, t0 + 2h));
    CHECK(a.get("c1")->expires_at == t0 + 2h);
    CHECK(b.remove("c1"));  // $disconnect on b
    CHECK_FALSE(a.get("c1"));
    CHECK(a.subscribers("game:1").empty());
    CHECK_FALSE(a.remove("c1"));
}

TEST_CASE("dynamodb: stores racing to remove and expire the same connections each win it exactly once", "[store][dynamodb][concurrency]") {
    auto s = fresh_table(std::make_shared<ManualClock>(t0));
    DynamoDbConnectionStore a(s), b(s);
    constexpr int n = 40;
    for (int i = 0; i < n; ++i) {
        a.put(rec("r" + std::to_string(i), "u" + std::to_string(i % 3), t0 + 1s));
        REQUIRE(a.subscribe("r" + std::to_string(i), "room"));
    }
    std::vector<std::atomic<int>> wins(n);
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    // Two removers (one per store) and two sweepers (one per store).
    for (DynamoDbConnectionStore* st : {&a, &b}) {
        threads.emplace_back([&, st] {
            ready.fetch_add(1);
            while (ready.load() < 4) std::this_thread::yield();
            for (int i = 0; i < n; ++i)
                if (st->remove("r" + std::to_string(i))) wins[i].fetch_add(1);
        });
        threads.emplace_back([&, st] {
            ready.fetch_add(1);
            while (ready.load() < 4) std::this_thread::yield();
            for (int round = 0; round < 3; ++round)
                for (const auto& r : st->expire(t0 + 1s)) wins[std::stoi(r.id.substr(1))].fetch_add(1);
        });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < n; ++i) {
        INFO("r" << i);
        CHECK(wins[i].load() == 1);
    }
    CHECK(a.count() == 0);
    CHECK(b.subscribers("room").empty());
    CHECK(b.connections_of_user("u1").empty());
}

TEST_CASE("dynamodb: capped subscribes racing from two stores never pass the cap", "[store][dynamodb][concurrency]") {
    auto s = fresh_table(std::make_shared<ManualClock>(t0));
    DynamoDbConnectionStore a(s), b(s);
    a.put(rec("c1", "u1", t0 + 1h));
    constexpr std::size_t cap = 5;
    std::atomic<int> subscribed{0}, limited{0}, already{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            auto& st = t % 2 == 0 ? a : b;
            for (int i = 0; i < 6; ++i) {
                // Every thread also asks for one shared topic: held once, never double-counted.
                const auto topic = i == 0 ? std::string("shared") : "t" + std::to_string(t) + "-" + std::to_string(i);
                switch (st.subscribe_capped("c1", topic, cap)) {
                    case SubscribeResult::subscribed: ++subscribed; break;
                    case SubscribeResult::limit_reached: ++limited; break;
                    case SubscribeResult::already_subscribed: ++already; break;
                    case SubscribeResult::not_found: break;
                }
            }
        });
    for (auto& t : threads) t.join();
    CHECK(subscribed == static_cast<int>(cap));
    CHECK(subscribed + limited + already == 24);
    const auto held = a.topics_of("c1");
    CHECK(held.size() == cap);
    for (const auto& topic : held) CHECK(b.subscribers(topic) == Ids{"c1"});
    // The counter matches what is held: freeing one slot admits exactly one more.
    REQUIRE(a.unsubscribe("c1", held.front()));
    CHECK(b.subscribe_capped("c1", "late-1", cap) == SubscribeResult::subscribed);
    CHECK(a.subscribe_capped("c1", "late-2", cap) == SubscribeResult::limit_reached);
}

TEST_CASE("dynamodb: ids and topics too long for a DynamoDB key are stored under a digest", "[store][dynamodb]") {
    auto s = fresh_table(std::make_shared<ManualClock>(t0));
    DynamoDbConnectionStore store(s);
    const std::string id(3000, 'i'), topic(1500, 't'), user(2500, 'u');
    store.put(rec(id, user, t0 + 1h));
    REQUIRE(store.subscribe(id, topic));
    REQUIRE(store.subscribe(id, "=looks-like-a-digest"));
    CHECK(store.get(id)->topics == sorted({topic, "=looks-like-a-digest"}));
    CHECK(store.subscribers(topic) == Ids{id});
    CHECK(store.connections_of_user(user) == Ids{id});
    CHECK(store.scan("", 5).records.at(0).id == id);
    CHECK(store.remove(id));
    CHECK(store.subscribers(topic).empty());
}

TEST_CASE("dynamodb: the request counts docs/stores.md gives", "[store][dynamodb]") {
    auto http = std::make_shared<RecordingHttp>();
    auto s = fresh_table(std::make_shared<ManualClock>(t0));
    s.http = http;
    DynamoDbConnectionStore store(s);
    auto ops = [&] {
        auto o = http->operations();
        http->clear();
        return o;
    };
    using Ops = std::vector<std::string>;

    store.put(rec("c1", "u1", t0 + 1h));
    CHECK(ops() == Ops{"UpdateItem", "BatchWriteItem"});  // connect: meta, then user + node index
    CHECK(store.subscribe("c1", "room"));
    CHECK(ops() == Ops{"UpdateItem", "PutItem", "PutItem"});  // reserve, subscription, member
    (void)store.get("c1");
    CHECK(ops() == Ops{"Query"});
    CHECK(store.touch("c1", t0 + 1s));
    CHECK(ops() == Ops{"UpdateItem"});

    for (int i = 2; i <= 150; ++i) {
        store.put(rec("c" + std::to_string(i), "", t0 + 1h));
        REQUIRE(store.subscribe("c" + std::to_string(i), "room"));
    }
    http->clear();
    CHECK(store.resolve(Audience::topic("room")).ids.size() == 150);
    CHECK(ops() == Ops{"Query", "BatchGetItem", "BatchGetItem"});  // 1 page, ceil(150/100) batches

    CHECK(store.remove("c1"));
    CHECK(ops() == Ops{"DeleteItem", "Query", "BatchWriteItem"});
    (void)store.append("feed", R"({"n":1})", t0, {10, 0s});
    CHECK(ops() == Ops{"GetItem", "UpdateItem"});  // first append: no history item yet
    (void)store.append("feed", R"({"n":2})", t0, {10, 0s});
    CHECK(ops() == Ops{"GetItem", "BatchWriteItem", "UpdateItem"});
    CHECK(store.stats().errors == 0);
}

TEST_CASE("dynamodb: history keeps the last count of the latest append, bodies from the top item", "[store][dynamodb][stream]") {
    auto s = fresh_table(std::make_shared<ManualClock>(t0));
    DynamoDbConnectionStore a(s), b(s);
    for (int i = 1; i <= 7; ++i) (void)(i % 2 == 0 ? a : b).append("t", "{\"i\":" + std::to_string(i) + "}", t0, {3, 0s});
    auto r = a.read_stream("t", 0, 100, TimePoint::min());
    CHECK(r.top.offset == 7);
    CHECK(r.first_retained == 5);
    REQUIRE(r.publications.size() == 3);
    CHECK(r.publications.front().body == R"({"i":5})");
    CHECK(r.publications.back().body == R"({"i":7})");
    // A larger bound later keeps what is still there, from the first item found.
    (void)a.append("t", R"({"i":8})", t0, {100, 0s});
    auto wider = b.read_stream("t", 0, 100, TimePoint::min());
    CHECK(wider.first_retained >= 4);
    CHECK(wider.first_retained <= 5);
    CHECK(wider.publications.back().offset == 8);
    for (std::size_t i = 1; i < wider.publications.size(); ++i)
        CHECK(wider.publications[i].offset == wider.publications[i - 1].offset + 1);
    CHECK(b.latest("t", 2, TimePoint::min()).publications.front().offset == 7);
}

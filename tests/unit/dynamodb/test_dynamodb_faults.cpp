// DynamoDbConnectionStore under DynamoDB's faults, injected by tests/dynamodb/throttle_proxy.js in
// front of dynalite: throttled requests (ProvisionedThroughputExceededException and
// ThrottlingException) and batches cut short (UnprocessedItems / UnprocessedKeys) are retried until
// the table holds exactly what the calls asked for; a DynamoDB that only throttles ends in
// StoreError after max_attempts, in bounded time, and the Gateway answers a connect with 503.

#include "catch.hpp"
#include "dynalite_server.hpp"
#include "throttle_proxy.hpp"

#include <wsgate/aws/apigw_event.hpp>
#include <wsgate/dynamodb/dynamodb_store.hpp>
#include <wsgate/error.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/memory_transport.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace wsgate;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

test::DynaliteServer& dynalite() {
    static test::DynaliteServer server;
    return server;
}

/// A new table on dynalite (created directly, not through a proxy), for a store that will talk
/// to `endpoint`.
DynamoDbStoreSettings table_behind(const std::string& endpoint, DynamoDbRetry retry) {
    static std::atomic<int> counter{0};
    DynamoDbStoreSettings s;
    s.table = "faults-" + std::to_string(counter++);
    s.endpoint = dynalite().endpoint();
    s.region = "eu-west-1";
    s.credentials = aws::Credentials{"AKIDEXAMPLE", "secret", {}};
    REQUIRE(create_dynamodb_table(s).created);
    s.endpoint = endpoint;
    s.retry = retry;
    return s;
}

/// The same table, straight to dynalite: an observer no fault reaches.
DynamoDbStoreSettings direct(DynamoDbStoreSettings s) {
    s.endpoint = dynalite().endpoint();
    return s;
}

ConnectionRecord rec(const std::string& id, const std::string& user) {
    ConnectionRecord r;
    r.id = id;
    r.principal.kind = PrincipalKind::user;
    r.principal.user_id = user;
    r.principal.device_id = "dev-" + id;
    r.connected_at = r.last_seen = std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now());
    r.expires_at = r.connected_at + 1h;
    r.node_id = "node-a";
    return r;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
}

std::vector<std::string> ids(const std::set<std::string>& s) { return {s.begin(), s.end()}; }

/// What the workload should leave behind, kept beside the store.
struct Expected {
    std::map<std::string, std::string> user_of;              // live connection -> user
    std::map<std::string, std::set<std::string>> topics_of;  // live connection -> topics

    [[nodiscard]] std::vector<std::string> subscribers(const std::string& topic) const {
        std::set<std::string> out;
        for (const auto& [id, topics] : topics_of)
            if (topics.count(topic) != 0) out.insert(id);
        return ids(out);
    }
    [[nodiscard]] std::vector<std::string> of_user(const std::string& user) const {
        std::set<std::string> out;
        for (const auto& [id, u] : user_of)
            if (u == user) out.insert(id);
        return ids(out);
    }
    [[nodiscard]] std::vector<std::string> everyone() const {
        std::set<std::string> out;
        for (const auto& [id, u] : user_of) out.insert(id);
        return ids(out);
    }
};

const std::vector<std::string> topics{"room-0", "room-1", "room-2", "all"};
const std::vector<std::string> users{"u0", "u1", "u2", "u3", "u4"};

/// Puts, subscribes, unsubscribes and removes through `store`, mirroring them in the returned
/// Expected; every call must report what it did the first time, however often it was retried.
Expected run_workload(ConnectionStore& store) {
    Expected want;
    for (int i = 0; i < 30; ++i) {
        const std::string id = "c" + std::to_string(i);
        const std::string user = users[static_cast<std::size_t>(i) % users.size()];
        store.put(rec(id, user));
        want.user_of[id] = user;
        for (const auto& topic : {topics[static_cast<std::size_t>(i) % 3], std::string{"all"}}) {
            CHECK(store.subscribe(id, topic));
            want.topics_of[id].insert(topic);
        }
    }
    for (int i = 0; i < 30; i += 4) {
        const std::string id = "c" + std::to_string(i);
        CHECK(store.unsubscribe(id, "all"));
        want.topics_of[id].erase("all");
    }
    for (int i = 1; i < 30; i += 3) {
        const std::string id = "c" + std::to_string(i);
        CHECK(store.remove(id));
        want.user_of.erase(id);
        want.topics_of.erase(id);
    }
    CHECK_FALSE(store.remove("c1"));  // already gone: a retried delete must not report it twice
    return want;
}

/// Every read of `store` agrees with `want`.
void check_state(ConnectionStore& store, const Expected& want) {
    for (const auto& topic : topics) {
        INFO("topic " << topic);
        CHECK(sorted(store.subscribers(topic)) == want.subscribers(topic));
        CHECK(sorted(store.resolve(Audience::topic(topic)).ids) == want.subscribers(topic));
    }
    for (const auto& user : users) {
        INFO("user " << user);
        CHECK(sorted(store.connections_of_user(user)) == want.of_user(user));
        CHECK(sorted(store.resolve(Audience::user(user)).ids) == want.of_user(user));
    }
    CHECK(sorted(store.resolve(Audience::everyone()).ids) == want.everyone());
    CHECK(store.count() == want.user_of.size());
    for (const auto& [id, topics_of] : want.topics_of) {
        INFO("connection " << id);
        CHECK(sorted(store.topics_of(id)) == ids(topics_of));
        CHECK(store.get(id).has_value());
    }
    CHECK_FALSE(store.get("c1").has_value());
    CHECK(store.topics_of("c1").empty());
}

json proxy_stats(const test::ThrottleProxy& proxy) { return json::parse(proxy.stats()); }

}  // namespace

TEST_CASE("dynamodb faults: one request in three throttled and batches cut short still converge exactly",
          "[store][dynamodb][faults]") {
    test::ThrottleProxy proxy(dynalite().endpoint(), {"--throttle-every", "3", "--throttle-type", "alternate",
                                                      "--unprocessed-every", "2"});
    // Never two throttles in a row for one sequential caller, so 8 attempts always suffice.
    const auto settings = table_behind(proxy.endpoint(), DynamoDbRetry{8, Duration{1}, Duration{10}});
    DynamoDbConnectionStore store(settings);

    const Expected want = run_workload(store);
    check_state(store, want);

    // An observer straight on dynalite sees the same table: nothing was lost or written twice.
    DynamoDbConnectionStore observer(direct(settings));
    check_state(observer, want);
    CHECK(observer.stats().throttled_retries == 0);
    CHECK(observer.stats().unprocessed_retries == 0);

    const auto mine = store.stats();
    const auto seen = proxy_stats(proxy);
    INFO("proxy " << seen.dump());
    CHECK(mine.errors == 0);
    CHECK(mine.throttled_retries > 0);
    CHECK(mine.unprocessed_retries > 0);
    CHECK(seen["throttled_by_type"]["ProvisionedThroughputExceededException"].get<std::uint64_t>() > 0);
    CHECK(seen["throttled_by_type"]["ThrottlingException"].get<std::uint64_t>() > 0);
    CHECK(seen["unprocessed_items"].get<std::uint64_t>() > 0);  // BatchWriteItem cut short
    CHECK(seen["unprocessed_keys"].get<std::uint64_t>() > 0);   // BatchGetItem cut short
    // Both sides count the same: every request the store sent reached the proxy, each throttled
    // answer was retried once, and each batch cut short was followed by one call for the rest.
    CHECK(mine.requests == seen["requests"].get<std::uint64_t>());
    CHECK(mine.throttled_retries == seen["throttled"].get<std::uint64_t>());
    CHECK(mine.unprocessed_retries == seen["unprocessed_batches"].get<std::uint64_t>());
    CHECK(seen["errors"].get<std::uint64_t>() == 0);
}

TEST_CASE("dynamodb faults: batches cut short on every call still finish", "[store][dynamodb][faults]") {
    // Every batch forwards only the first half of its items: a batch of n takes about log2(n)
    // calls, all of them counted.
    test::ThrottleProxy proxy(dynalite().endpoint(), {"--unprocessed-every", "1"});
    const auto settings = table_behind(proxy.endpoint(), DynamoDbRetry{12, Duration{1}, Duration{5}});
    DynamoDbConnectionStore store(settings);
    const Expected want = run_workload(store);
    check_state(store, want);
    DynamoDbConnectionStore observer(direct(settings));
    check_state(observer, want);
    const auto seen = proxy_stats(proxy);
    INFO("proxy " << seen.dump());
    CHECK(seen["throttled"].get<std::uint64_t>() == 0);
    CHECK(store.stats().throttled_retries == 0);
    CHECK(store.stats().unprocessed_retries == seen["unprocessed_batches"].get<std::uint64_t>());
    CHECK(store.stats().errors == 0);
}

TEST_CASE("dynamodb faults: a DynamoDB that only throttles ends in StoreError after max_attempts",
          "[store][dynamodb][faults]") {
    test::ThrottleProxy proxy(dynalite().endpoint(), {"--fail-all", "--throttle-type", "throttling"});
    const auto settings = table_behind(proxy.endpoint(), DynamoDbRetry{4, Duration{5}, Duration{20}});
    DynamoDbConnectionStore store(settings);

    const auto start = std::chrono::steady_clock::now();
    try {
        store.put(rec("c1", "u1"));
        FAIL("put succeeded through a proxy that throttles everything");
    } catch (const StoreError& e) {
        const std::string what = e.what();
        INFO(what);
        CHECK(what.find("ThrottlingException") != std::string::npos);
        CHECK(e.code() == make_error_code(store_errc::unavailable));
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(elapsed < 5s);  // three sleeps of at most 20 ms, plus four loopback round trips

    auto seen = proxy_stats(proxy);
    INFO("proxy " << seen.dump());
    CHECK(seen["requests"].get<std::uint64_t>() == 4);  // exactly max_attempts, then it gave up
    CHECK(seen["forwarded"].get<std::uint64_t>() == 0);
    CHECK(store.stats().requests == 4);
    CHECK(store.stats().throttled_retries == 3);
    CHECK(store.stats().errors == 1);

    // Reads give up the same way; nothing reached the table.
    CHECK_THROWS_AS(store.get("c1"), StoreError);
    CHECK_THROWS_AS(store.subscribers("room"), StoreError);
    DynamoDbConnectionStore observer(direct(settings));
    CHECK_FALSE(observer.get("c1").has_value());
    CHECK(observer.count() == 0);
}

TEST_CASE("dynamodb faults: the Gateway answers a connect 503 when DynamoDB only throttles",
          "[store][dynamodb][faults][gateway]") {
    test::ThrottleProxy proxy(dynalite().endpoint(), {"--fail-all"});
    const auto settings = table_behind(proxy.endpoint(), DynamoDbRetry{3, Duration{1}, Duration{5}});
    auto store = std::make_shared<DynamoDbConnectionStore>(settings);
    auto transport = std::make_shared<InMemoryTransport>();
    GatewaySettings gs;
    gs.local_delivery_only = false;
    Gateway gateway(gs, store, transport, std::make_shared<AnonymousAuthorizer>());

    ConnectRequest request;
    request.connection_id = "apigw-1";
    request.source_ip = "203.0.113.10";
    const auto start = std::chrono::steady_clock::now();
    const auto result = gateway.on_connect(request);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    CHECK_FALSE(result.accepted);
    CHECK(result.status == 503);
    CHECK(result.reason == "store_unavailable");
    CHECK(gateway.metrics().active_connections.load() == 0);

    // The Lambda handler turns it into API Gateway's answer: the $connect is refused, not crashed.
    std::ifstream in{WSGATE_SOURCE_DIR "/examples/aws_lambda/events/01_connect.json"};
    REQUIRE(in);
    std::ostringstream event;
    event << in.rdbuf();
    aws::WebSocketEventHandler handler{gateway};
    const auto response = handler.handle(event.str());
    CHECK(response.status_code == 503);
    CHECK(response.body.find("store_unavailable") != std::string::npos);
    CHECK(proxy_stats(proxy)["forwarded"].get<std::uint64_t>() == 0);

    // A publish with the store unreachable is reported degraded, not thrown.
    const auto report = gateway.publish(Envelope{"tick"}, Audience::everyone());
    CHECK(report.degraded);
    CHECK(report.delivered == 0);
}

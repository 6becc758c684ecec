// RedisConnectionStore and RedisBus against a real Redis Cluster started on this machine
// (tests/support/redis_cluster.hpp: three masters, and for the failover cases one replica each):
// where the keys and channels land, cross-shard delivery, a master failing over while the store
// and the bus are in use, and settings a cluster refuses. The whole store contract also runs on a
// three-master cluster (tests/contract, RedisClusterStoreFactory).

#include "catch.hpp"
#include "raw_redis.hpp"
#include "redis_cluster.hpp"

#include <wsgate/error.hpp>
#include <wsgate/redis/redis_bus.hpp>
#include <wsgate/redis/redis_store.hpp>
#include <wsgate/stores/factory.hpp>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace wsgate;
using namespace std::chrono_literals;
using wsgate::test::RawRedis;
using wsgate::test::RedisCluster;

namespace {

template <class Pred>
bool eventually(Pred p, std::chrono::milliseconds limit = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (p()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return p();
}

RedisEndpoint endpoint_of(RedisCluster& c) {
    RedisEndpoint e;
    e.host = c.host();
    e.port = c.port();
    e.cluster = true;
    e.connect_timeout = 300ms;
    e.command_timeout = 1000ms;
    return e;
}

RedisStoreSettings store_settings(RedisCluster& c, std::string prefix) {
    RedisStoreSettings s;
    s.endpoint = endpoint_of(c);
    s.key_prefix = std::move(prefix);
    s.retry_after = 0ms;  // a failover test wants every call to try again
    return s;
}

RedisBusSettings bus_settings(RedisCluster& c) {
    RedisBusSettings b;
    b.endpoint = endpoint_of(c);
    b.reconnect_initial = 10ms;
    b.reconnect_max = 200ms;
    b.health_check_interval = 1s;
    return b;
}

ConnectionRecord record(const std::string& id, const std::string& user) {
    ConnectionRecord r;
    r.id = id;
    r.principal.kind = PrincipalKind::user;
    r.principal.user_id = user;
    r.principal.device_id = "d-" + id;
    r.node_id = "node-1";
    r.connected_at = r.last_seen = std::chrono::system_clock::now();
    r.expires_at = r.connected_at + 1h;
    return r;
}

std::vector<std::string> keys_on(int port) {
    RawRedis raw{port};
    auto keys = raw.cmd({"KEYS", "*"}).items;
    std::sort(keys.begin(), keys.end());
    return keys;
}

std::vector<std::string> shard_channels_on(int port) {
    RawRedis raw{port};
    return raw.cmd({"PUBSUB", "SHARDCHANNELS"}).items;
}

struct Collector {
    std::mutex mu;
    std::vector<BusMessage> got;
    void operator()(const BusMessage& m) {
        std::lock_guard lk(mu);
        got.push_back(m);
    }
    std::size_t count(std::string_view needle) {
        std::lock_guard lk(mu);
        return static_cast<std::size_t>(std::count_if(
            got.begin(), got.end(), [&](const BusMessage& m) { return m.payload.find(needle) != std::string::npos; }));
    }
};

BusMessage to_topic(const std::string& topic, const std::string& payload) {
    BusMessage m;
    m.origin_node = "node-a";
    m.audience = Audience::topic(topic);
    m.payload = payload;
    return m;
}

}  // namespace

TEST_CASE("redis cluster store: every key of a store is on the master serving its prefix's slot, and a prefix "
          "without a hash tag is wrapped in one",
          "[store][redis][redis-cluster]") {
    RedisCluster cluster{3};
    // Prefixes whose slots are on three different masters, one of them with the host's own tag.
    std::vector<std::string> prefixes;
    std::set<int> masters;
    for (int i = 0; prefixes.size() < 3 && i < 200; ++i) {
        const std::string p = i == 0 ? "app:{tenant-1}:" : "p" + std::to_string(i) + ":";
        const auto wrapped = i == 0 ? p : "{" + p + "}";
        const int m = cluster.master_of(cluster.slot_of(wrapped));
        REQUIRE(m >= 0);
        if (masters.insert(m).second) prefixes.push_back(p);
    }
    REQUIRE(prefixes.size() == 3);

    for (const auto& p : prefixes) {
        RedisConnectionStore store{store_settings(cluster, p)};
        const auto& kept = store.settings().key_prefix;
        CHECK(kept == (p == "app:{tenant-1}:" ? p : "{" + p + "}"));
        store.put(record("c1", "alice"));
        store.put(record("c2", "bob"));
        REQUIRE(store.subscribe("c1", "news"));
        REQUIRE(store.subscribe("c2", "news"));
        CHECK(store.subscribers("news").size() == 2);
        CHECK(store.connections_of_user("alice") == std::vector<ConnectionId>{"c1"});
        CHECK(store.remove("c2"));
        CHECK(store.count() == 1);
        HistoryRetention keep;
        keep.max_count = 10;
        CHECK(store.append("news", R"({"n":1})", std::chrono::system_clock::now(), keep).offset == 1);

        const int owner = cluster.master_of(cluster.slot_of(kept));
        INFO("prefix " << kept << " on node " << owner);
        for (std::size_t n = 0; n < cluster.size(); ++n) {
            const auto keys = keys_on(cluster.node(n).port());
            const auto mine = std::count_if(keys.begin(), keys.end(), [&](const std::string& k) { return k.starts_with(kept); });
            if (static_cast<int>(n) == owner) CHECK(mine >= 5);  // record, subs, indexes, stream...
            else CHECK(mine == 0);
        }
    }
}

TEST_CASE("redis cluster: settings a cluster cannot serve are refused with a clear error",
          "[store][bus][redis][redis-cluster]") {
    RedisStoreSettings s;
    s.endpoint.cluster = true;
    s.endpoint.database = 2;
    CHECK_THROWS_AS(RedisConnectionStore{s}, std::invalid_argument);
    s.endpoint.database = 0;
    s.key_prefix = "";
    CHECK_THROWS_AS(RedisConnectionStore{s}, std::invalid_argument);
    RedisBusSettings b;
    b.endpoint.cluster = true;
    b.endpoint.database = 1;
    CHECK_THROWS_AS(RedisBus{b}, std::invalid_argument);
    CHECK_THROWS_AS(make_store("redis://127.0.0.1:7000/3?cluster=1"), std::invalid_argument);
    CHECK_THROWS_AS(make_store("redis://127.0.0.1:7000?cluster=yes"), std::invalid_argument);
    CHECK_THROWS_AS(make_bus("redis://127.0.0.1:7000/1?cluster=1"), std::invalid_argument);

    // A single server given as a cluster: calls fail with a clear error, nothing crashes.
    wsgate::test::RedisServer single;
    RedisStoreSettings st;
    st.endpoint.host = single.host();
    st.endpoint.port = single.port();
    st.endpoint.cluster = true;
    RedisConnectionStore store{st};
    try {
        store.put(record("c1", "alice"));
        FAIL("a put through a server that is not a cluster succeeded");
    } catch (const StoreError& e) {
        CHECK(e.code() == make_error_code(store_errc::unavailable));
        CHECK(std::string(e.what()).find("CLUSTER SLOTS") != std::string::npos);
    }
}

TEST_CASE("redis cluster bus: each topic channel is subscribed on the master serving its slot, publishes cross "
          "shards, and unlisten unsubscribes there",
          "[bus][redis][redis-cluster][routing]") {
    RedisCluster cluster{3};
    Collector ca, cb;
    RedisBus a{bus_settings(cluster)};
    RedisBus b{bus_settings(cluster)};
    a.set_handler(std::ref(ca));
    b.set_handler(std::ref(cb));
    REQUIRE(a.wait_subscribed(10s));
    REQUIRE(b.wait_subscribed(10s));

    constexpr int kTopics = 12;
    std::set<int> owners;
    for (int t = 0; t < kTopics; ++t) REQUIRE(b.listen(BusRoute::topic("t" + std::to_string(t))));
    CHECK(b.stats().routes == kTopics);
    CHECK(b.stats().channels == kTopics + 1);
    for (int t = 0; t < kTopics; ++t) {
        const auto ch = b.channel_of(BusRoute::topic("t" + std::to_string(t)));
        const int owner = cluster.master_of(cluster.slot_of(ch));
        REQUIRE(owner >= 0);
        owners.insert(owner);
        for (std::size_t n = 0; n < cluster.size(); ++n) {
            const auto on = shard_channels_on(cluster.node(n).port());
            INFO(ch << " on node " << n << ", owner " << owner);
            CHECK((std::find(on.begin(), on.end(), ch) != on.end()) == (static_cast<int>(n) == owner));
        }
    }
    CHECK(owners.size() == 3);  // twelve topics spread over all three shards

    for (int t = 0; t < kTopics; ++t) REQUIRE(a.publish(to_topic("t" + std::to_string(t), "ev-" + std::to_string(t) + ";")));
    BusMessage all;
    all.origin_node = "node-a";
    all.audience = Audience::everyone();
    all.payload = "to-everyone";
    REQUIRE(a.publish(all));
    REQUIRE(eventually([&] { return cb.count("to-everyone") == 1; }));
    for (int t = 0; t < kTopics; ++t) REQUIRE(eventually([&] { return cb.count("ev-" + std::to_string(t) + ";") == 1; }));
    REQUIRE(eventually([&] { return ca.count("to-everyone") == 1; }));  // on A's own subscriber connection
    CHECK(ca.count("ev-") == 0);  // A listens to none of the topics
    CHECK(a.stats().route_messages == kTopics);

    // The last listener of t0 leaves: its channel goes from its shard, the others stay.
    const auto t0 = b.channel_of(BusRoute::topic("t0"));
    const int t0_owner = cluster.master_of(cluster.slot_of(t0));
    b.unlisten(BusRoute::topic("t0"));
    REQUIRE(eventually([&] {
        const auto on = shard_channels_on(cluster.node(static_cast<std::size_t>(t0_owner)).port());
        return std::find(on.begin(), on.end(), t0) == on.end();
    }));
    REQUIRE(a.publish(to_topic("t0", "after-unlisten")));
    REQUIRE(a.publish(to_topic("t1", "marker")));
    REQUIRE(eventually([&] { return cb.count("marker") == 1; }));
    CHECK(cb.count("after-unlisten") == 0);
    CHECK(b.stats().subscribe_errors == 0);
}

TEST_CASE("redis cluster failover: when a master dies its replica takes over, and the store and the bus follow it",
          "[store][bus][redis][redis-cluster][fault]") {
    RedisCluster cluster{3, 1};
    // The store's slot on the seed node (the endpoint both are given): when it dies, the slot map
    // must come from the masters remembered from the last one.
    const int master = 0;
    REQUIRE(cluster.master_of(cluster.slot_of("{fo-0:}")) >= 0);
    std::string prefix;
    for (int i = 0; prefix.empty() && i < 500; ++i)
        if (cluster.master_of(cluster.slot_of("{fo-" + std::to_string(i) + ":}")) == master)
            prefix = "fo-" + std::to_string(i) + ":";
    REQUIRE_FALSE(prefix.empty());
    RedisConnectionStore store{store_settings(cluster, prefix)};
    const int slot = cluster.slot_of(store.settings().key_prefix);

    // A bus listening to a topic whose channel is on the same master, and one publishing to it.
    std::string topic;
    for (int i = 0; topic.empty() && i < 500; ++i)
        if (cluster.master_of(cluster.slot_of("wsgate:bus:t:room-" + std::to_string(i))) == master)
            topic = "room-" + std::to_string(i);
    REQUIRE_FALSE(topic.empty());
    Collector cb;
    RedisBus a{bus_settings(cluster)};
    RedisBus b{bus_settings(cluster)};
    b.set_handler(std::ref(cb));
    REQUIRE(a.wait_subscribed(10s));
    REQUIRE(b.listen(BusRoute::topic(topic)));
    REQUIRE(a.publish(to_topic(topic, "before")));
    REQUIRE(eventually([&] { return cb.count("before") == 1; }));

    store.put(record("c1", "alice"));
    REQUIRE(store.subscribe("c1", "news"));
    // Replication is asynchronous: wait until the replica holds what the master does.
    const auto master_keys = keys_on(cluster.node(static_cast<std::size_t>(master)).port());
    int replica = -1;
    REQUIRE(eventually([&] {
        for (std::size_t n = 0; n < cluster.size(); ++n)
            if (static_cast<int>(n) != master && keys_on(cluster.node(n).port()) == master_keys) replica = static_cast<int>(n);
        return replica >= 0;
    }));

    cluster.node(static_cast<std::size_t>(master)).stop();  // SIGKILL
    REQUIRE(eventually([&] { return cluster.master_of(slot) == replica; }, 30s));
    cluster.wait_until_ok();

    // The store: a call on a pooled connection to the dead master fails (the store cannot know
    // whether a command on a lost connection ran, so it never resends one); that failure makes
    // every pooled connection reconnect, through the slot map the survivors give, to the promoted
    // replica, which has the data written before the failover.
    int failures = 0;
    REQUIRE(eventually([&] {
        try {
            return store.get("c1").has_value();
        } catch (const StoreError&) {
            ++failures;
            return false;
        }
    }));
    INFO("calls failed before the store found the new master: " << failures);
    for (int i = 0; i < 20; ++i) CHECK(store.topics_of("c1") == std::vector<std::string>{"news"});
    store.put(record("c2", "bob"));
    CHECK(store.count() == 2);

    // The bus: the subscriber lost its connection to the dead master, reconnects with the new
    // slot map and subscribes again; publishes reach it through the new master.
    REQUIRE(eventually([&] { return b.subscribed() && b.stats().reconnects >= 1; }, 30s));
    int sent = 0;
    REQUIRE(eventually([&] {
        if (a.publish(to_topic(topic, "after-" + std::to_string(sent)))) ++sent;
        return sent > 0 && cb.count("after-") >= 1;
    }));
    CHECK(b.stats().channels == 2);  // the common channel and the topic
}

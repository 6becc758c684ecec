// RedisBus on its own, then Gateway nodes that share one redis-server: cross-node delivery,
// send-to-user across nodes, and a Redis restart in the middle of publishing; then the routed bus
// (per-topic and per-user channels): who hears what, resubscription after a restart, the
// subscribe/publish race, and the single-channel mode.

#include "catch.hpp"
#include "raw_redis.hpp"
#include "redis_server.hpp"

#include <wsgate/gateway.hpp>
#include <wsgate/memory_transport.hpp>
#include <wsgate/memory_store.hpp>
#include <wsgate/redis/redis_bus.hpp>
#include <wsgate/redis/redis_store.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace wsgate;
using namespace std::chrono_literals;
using wsgate::test::RawRedis;
using wsgate::test::RedisServer;

namespace {

template <class Pred>
bool eventually(Pred p, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (p()) return true;
        std::this_thread::sleep_for(5ms);
    }
    return p();
}

RedisBusSettings bus_settings(const RedisServer& s, std::string channel = "wsgate:bus") {
    RedisBusSettings b;
    b.endpoint.host = s.host();
    b.endpoint.port = s.port();
    b.endpoint.connect_timeout = 200ms;
    b.endpoint.command_timeout = 1000ms;
    b.channel = std::move(channel);
    b.reconnect_initial = 10ms;
    b.reconnect_max = 200ms;
    return b;
}

struct Collector {
    std::mutex mu;
    std::vector<BusMessage> got;
    void operator()(const BusMessage& m) {
        std::lock_guard lk(mu);
        got.push_back(m);
    }
    std::size_t size() {
        std::lock_guard lk(mu);
        return got.size();
    }
};

std::size_t count_frames(const std::vector<std::string>& frames, std::string_view needle) {
    return static_cast<std::size_t>(std::count_if(frames.begin(), frames.end(),
                                                  [&](const std::string& f) { return f.find(needle) != std::string::npos; }));
}

/// One wsgate node: its own transport and gateway; the store and bus it is given.
struct Node {
    std::shared_ptr<ConnectionStore> store;
    std::shared_ptr<RedisBus> bus;
    std::shared_ptr<InMemoryTransport> transport = std::make_shared<InMemoryTransport>();
    std::unique_ptr<Gateway> gw;
    std::mutex frames_mu;
    std::map<ConnectionId, std::vector<std::string>> frames;

    Node(std::string node_id, std::shared_ptr<ConnectionStore> s, std::shared_ptr<RedisBus> b)
        : store(std::move(s)), bus(std::move(b)) {
        GatewaySettings gs;
        gs.node_id = std::move(node_id);
        gs.rate_per_second = 0;
        gs.router.topic_rules = {{"*", "", "", /*anonymous_read=*/true}};
        gw = std::make_unique<Gateway>(gs, store, transport, std::make_shared<AnonymousAuthorizer>(),
                                       std::make_shared<SystemClock>(), bus);
    }
    ~Node() { gw.reset(); }

    ConnectionId connect(const std::string& id, const std::string& user, const std::string& device) {
        ConnectRequest rq;
        rq.connection_id = id;
        transport->open(id);
        Principal p;
        p.kind = PrincipalKind::user;
        p.user_id = user;
        p.device_id = device;
        auto res = gw->on_connect(rq, p);
        REQUIRE(res.accepted);
        REQUIRE(res.id == id);
        return id;
    }
    void subscribe(const ConnectionId& id, const std::string& topic) {
        REQUIRE_FALSE(gw->on_message(id, R"({"type":"subscribe","topic":")" + topic + R"("})"));
        take(id);  // the ack
    }
    /// Frames received so far by `id` (accumulated across calls).
    std::vector<std::string> take(const ConnectionId& id) {
        std::lock_guard lk(frames_mu);
        auto& v = frames[id];
        for (auto& f : transport->drain(id)) v.push_back(std::move(f));
        return v;
    }
    std::size_t seen(const ConnectionId& id, std::string_view needle) { return count_frames(take(id), needle); }
    void unsubscribe(const ConnectionId& id, const std::string& topic) {
        REQUIRE_FALSE(gw->on_message(id, R"({"type":"unsubscribe","topic":")" + topic + R"("})"));
    }
};

}  // namespace

TEST_CASE("redis bus: a publish reaches every subscriber, malformed traffic is counted and dropped", "[bus][redis]") {
    RedisServer server;
    Collector ca, cb, ce;  // outlive the buses that call them
    RedisBus a{bus_settings(server)};
    RedisBus b{bus_settings(server)};
    RedisBus elsewhere{bus_settings(server, "other-channel")};
    a.set_handler(std::ref(ca));
    b.set_handler(std::ref(cb));
    elsewhere.set_handler(std::ref(ce));
    REQUIRE(a.wait_subscribed(10s));
    REQUIRE(b.wait_subscribed(10s));
    REQUIRE(elsewhere.wait_subscribed(10s));
    // A user audience travels on the user's channel: both buses listen to it.
    REQUIRE(a.listen(BusRoute::user("u1")));
    REQUIRE(b.listen(BusRoute::user("u1")));

    BusMessage m;
    m.origin_node = "node-a";
    m.audience = Audience::user("u1").except_device("phone").requiring("chat");
    m.payload = R"({"type":"dm","data":"héllo\u0000"})";
    REQUIRE(a.publish(m));
    REQUIRE(eventually([&] { return cb.size() == 1 && ca.size() == 1; }));
    {
        std::lock_guard lk(cb.mu);
        CHECK(cb.got[0].origin_node == "node-a");
        CHECK(cb.got[0].payload == m.payload);
        CHECK(cb.got[0].audience.kind == Audience::Kind::user);
        CHECK(cb.got[0].audience.excluded_device == "phone");
        CHECK(cb.got[0].audience.required_permission == "chat");
    }

    RawRedis raw{server.port()};
    raw.cmd({"PUBLISH", "wsgate:bus", "not json at all"});
    raw.cmd({"PUBLISH", "wsgate:bus", R"({"origin":"x","audience":{"kind":"martian"},"payload":"p"})"});
    REQUIRE(a.publish(m));  // ordered after the garbage: one server, one subscriber connection
    // `received` counts a message once its handler returned, so wait for the counter too.
    REQUIRE(eventually([&] { return cb.size() == 2 && b.stats().received == 2; }));
    CHECK(b.stats().malformed == 2);
    CHECK(b.stats().received == 2);
    CHECK(a.stats().published == 2);
    CHECK(ce.size() == 0);  // another channel hears nothing

    // a throwing handler does not stop the bus
    b.set_handler([](const BusMessage&) { throw std::runtime_error("handler bug"); });
    REQUIRE(a.publish(m));
    REQUIRE(eventually([&] { return b.stats().received == 3; }));
    b.set_handler(std::ref(cb));
    REQUIRE(a.publish(m));
    REQUIRE(eventually([&] { return cb.size() == 3; }));
}

TEST_CASE("redis bus: publish fails fast while Redis is down and the subscriber reconnects with backoff", "[bus][redis]") {
    RedisServer server;
    Collector cb;  // outlives the buses that call it
    RedisBus a{bus_settings(server)};
    RedisBus b{bus_settings(server)};
    b.set_handler(std::ref(cb));
    REQUIRE(b.wait_subscribed(10s));
    BusMessage m{"node-a", Audience::everyone(), "x"};
    REQUIRE(a.publish(m));
    REQUIRE(eventually([&] { return cb.size() == 1; }));

    server.stop();
    CHECK_FALSE(a.publish(m));
    REQUIRE(eventually([&] { return !b.subscribed(); }));
    for (int i = 0; i < 5; ++i) CHECK_FALSE(a.publish(m));
    CHECK(a.stats().publish_failures >= 6);

    server.start();
    REQUIRE(b.wait_subscribed(10s));
    CHECK(b.stats().reconnects >= 1);
    REQUIRE(eventually([&] { return a.publish(m); }));
    REQUIRE(eventually([&] { return cb.size() >= 2; }));
}

TEST_CASE("redis bus: a frozen server is detected by the health check and the bus resubscribes when it thaws", "[bus][redis][fault]") {
    RedisServer server;
    Collector cb;
    auto settings = bus_settings(server);
    settings.health_check_interval = 100ms;
    RedisBus a{bus_settings(server)};
    RedisBus b{settings};
    b.set_handler(std::ref(cb));
    REQUIRE(b.wait_subscribed(10s));

    server.pause();  // the TCP connection stays up; nothing answers
    REQUIRE(eventually([&] { return !b.subscribed(); }));
    server.resume();
    REQUIRE(b.wait_subscribed(10s));
    CHECK(b.stats().reconnects >= 1);
    BusMessage m{"node-a", Audience::everyone(), "after-thaw"};
    REQUIRE(eventually([&] { return a.publish(m) && cb.size() >= 1; }));
    server.stop();  // SIGKILL also ends a stopped process
}

TEST_CASE("two nodes on one redis: a client on node A receives an event published on node B, once", "[bus][redis][gateway]") {
    RedisServer server;
    RedisStoreSettings st;
    st.endpoint.host = server.host();
    st.endpoint.port = server.port();
    Node a{"node-a", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(bus_settings(server))};
    Node b{"node-b", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(bus_settings(server))};
    REQUIRE(a.bus->wait_subscribed(10s));
    REQUIRE(b.bus->wait_subscribed(10s));

    a.connect("a-1", "alice", "alice-phone");
    b.connect("b-1", "bob", "bob-phone");
    b.connect("b-2", "carol", "carol-phone");
    a.subscribe("a-1", "news");
    b.subscribe("b-1", "news");

    // the shared store is the cluster-wide view
    CHECK(a.store->count() == 3);
    CHECK(a.store->get("b-1")->node_id == "node-b");
    CHECK(b.store->get("a-1")->node_id == "node-a");
    CHECK(a.gw->local_count() == 1);
    CHECK(b.gw->local_count() == 2);

    auto report = b.gw->publish(Envelope{"headline"}.topic("news").data("first"), Audience::topic("news"));
    CHECK(report.delivered == 1);  // node B delivers only to its own socket
    REQUIRE(eventually([&] { return a.seen("a-1", "first") == 1; }));
    // a marker published after it: once the marker is in, both nodes have handled "first"
    b.gw->publish(Envelope{"headline"}.topic("news").data("marker"), Audience::topic("news"));
    REQUIRE(eventually([&] { return a.seen("a-1", "marker") == 1; }));
    REQUIRE(eventually([&] { return b.bus->stats().received >= 2; }));  // B heard its own publishes...
    CHECK(b.seen("b-1", "first") == 1);                                    // ...and did not deliver them twice
    CHECK(a.seen("a-1", "first") == 1);
    CHECK(b.seen("b-2", "first") == 0);  // not subscribed
    CHECK(b.gw->metrics().bus_errors == 0);
    CHECK(a.gw->metrics().bus_received >= 2);

    // and the other way round
    a.gw->publish(Envelope{"headline"}.topic("news").data("from-a"), Audience::topic("news"));
    REQUIRE(eventually([&] { return b.seen("b-1", "from-a") == 1; }));
    CHECK(a.seen("a-1", "from-a") == 1);

    // disconnect on one node is seen by the other
    a.gw->on_disconnect("a-1");
    CHECK_FALSE(b.store->get("a-1"));
    CHECK(b.store->subscribers("news") == std::vector<std::string>{"b-1"});
}

TEST_CASE("two nodes on one redis: send_to_user reaches the user's devices on both nodes except the sender's", "[bus][redis][gateway]") {
    RedisServer server;
    RedisStoreSettings st;
    st.endpoint.host = server.host();
    st.endpoint.port = server.port();
    Node a{"node-a", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(bus_settings(server))};
    Node b{"node-b", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(bus_settings(server))};
    REQUIRE(a.bus->wait_subscribed(10s));
    REQUIRE(b.bus->wait_subscribed(10s));

    a.connect("a-phone", "u1", "phone");
    b.connect("b-laptop", "u1", "laptop");
    b.connect("b-tablet", "u1", "tablet");
    a.connect("a-other", "u2", "phone2");

    // a user's connections across nodes come from the shared store
    auto mine = a.store->connections_of_user("u1");
    std::sort(mine.begin(), mine.end());
    CHECK(mine == std::vector<std::string>{"a-phone", "b-laptop", "b-tablet"});

    // sent from the laptop (node B): phone (node A) and tablet (node B), not the laptop
    b.gw->send_to_user("u1", Envelope{"dm"}.data("from-laptop"), "laptop");
    REQUIRE(eventually([&] { return a.seen("a-phone", "from-laptop") == 1; }));
    CHECK(b.seen("b-tablet", "from-laptop") == 1);
    CHECK(b.seen("b-laptop", "from-laptop") == 0);

    // sent from the phone (node A): both devices on node B
    a.gw->send_to_user("u1", Envelope{"dm"}.data("from-phone"), "phone");
    REQUIRE(eventually([&] { return b.seen("b-laptop", "from-phone") == 1 && b.seen("b-tablet", "from-phone") == 1; }));
    // a marker to the same user from node A: when it arrived on B, A's own copy has been handled too
    a.gw->send_to_user("u1", Envelope{"dm"}.data("marker"), "");
    REQUIRE(eventually([&] { return b.seen("b-laptop", "marker") == 1 && a.seen("a-phone", "marker") == 1; }));
    REQUIRE(eventually([&] { return a.bus->stats().received >= 3; }));
    CHECK(a.seen("a-phone", "from-phone") == 0);
    CHECK(a.seen("a-phone", "from-laptop") == 1);
    CHECK(a.seen("a-other", "from") == 0);  // another user hears nothing
    CHECK(a.seen("a-phone", "marker") == 1);
}

TEST_CASE("fault: redis-server killed and restarted while publishing; local clients keep being served, the gap is counted", "[bus][redis][gateway][fault]") {
    RedisServer server;
    // Node-local stores: the nodes keep working without Redis; only the bus depends on it.
    Node a{"node-a", std::make_shared<InMemoryConnectionStore>(), std::make_shared<RedisBus>(bus_settings(server))};
    Node b{"node-b", std::make_shared<InMemoryConnectionStore>(), std::make_shared<RedisBus>(bus_settings(server))};
    REQUIRE(a.bus->wait_subscribed(10s));
    REQUIRE(b.bus->wait_subscribed(10s));
    a.connect("a-1", "alice", "pa");
    b.connect("b-1", "bob", "pb");
    a.subscribe("a-1", "ticks");
    b.subscribe("b-1", "ticks");

    int seq = 0;
    auto tick = [&] {
        const auto tag = "tick-" + std::to_string(seq++) + "-";
        a.gw->publish(Envelope{"tick"}.topic("ticks").data(tag), Audience::topic("ticks"));
        return tag;
    };
    {
        const auto tag = tick();
        REQUIRE(eventually([&] { return b.seen("b-1", tag) == 1; }));
    }
    CHECK(a.gw->metrics().bus_errors == 0);

    // Redis dies while node A keeps publishing
    std::atomic<bool> stop{false};
    std::atomic<int> published_while_down{0};
    server.stop();
    const auto down_from = seq;
    for (int i = 0; i < 20; ++i) {
        tick();
        ++published_while_down;
        std::this_thread::sleep_for(2ms);
    }
    (void)stop;
    // node A served its own client every one of them
    for (int i = down_from; i < seq; ++i) CHECK(a.seen("a-1", "tick-" + std::to_string(i) + "-") == 1);
    const auto gap = a.gw->metrics().bus_errors.load();
    CHECK(gap >= 1);
    CHECK(gap <= static_cast<std::uint64_t>(published_while_down.load()));
    for (int i = down_from; i < seq; ++i) CHECK(b.seen("b-1", "tick-" + std::to_string(i) + "-") == 0);

    // Redis comes back on the same port: the bus reconnects and delivery resumes
    server.start();
    REQUIRE(b.bus->wait_subscribed(10s));
    REQUIRE(a.bus->wait_subscribed(10s));
    bool resumed = eventually(
        [&] {
            const auto tag = tick();
            return eventually([&] { return b.seen("b-1", tag) == 1; }, 200ms);
        },
        15s);
    REQUIRE(resumed);
    CHECK(a.bus->stats().reconnects >= 1);
    CHECK(b.bus->stats().reconnects >= 1);
    CHECK(a.gw->metrics().bus_errors >= gap);
    // every tick reached node A's own client exactly once, before, during and after the outage
    for (int i = 0; i < seq; ++i) CHECK(a.seen("a-1", "tick-" + std::to_string(i) + "-") == 1);
}

// ---- routed bus: per-topic and per-user channels ------------------------------------------

namespace {

RedisStoreSettings store_settings(const RedisServer& s) {
    RedisStoreSettings st;
    st.endpoint.host = s.host();
    st.endpoint.port = s.port();
    return st;
}

std::vector<std::string> shard_channels(RawRedis& raw) {
    auto items = raw.cmd({"PUBSUB", "SHARDCHANNELS"}).items;
    std::sort(items.begin(), items.end());
    return items;
}

/// PUBSUB SHARDNUMSUB for one channel, read through the raw reply.
long long shard_numsub(int port, const std::string& channel) {
    redisContext* c = redisConnect("127.0.0.1", port);
    REQUIRE(c != nullptr);
    auto* r = static_cast<redisReply*>(redisCommand(c, "PUBSUB SHARDNUMSUB %b", channel.data(), channel.size()));
    REQUIRE(r != nullptr);
    REQUIRE(r->type == REDIS_REPLY_ARRAY);
    REQUIRE(r->elements == 2);
    const long long n = r->element[1]->integer;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

bool has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

/// Publishes an everyone-marker from `from` and waits until `to`'s connection `conn` received it.
/// The marker travels after everything published before it (one publish connection per node, one
/// server, one subscriber connection per node): once it is in, `to`'s bus has handled every
/// earlier message it was sent, so its `received` count is final up to the marker.
void settle(Node& from, Node& to, const ConnectionId& conn, const std::string& tag) {
    from.gw->publish(Envelope{"marker"}.data(tag), Audience::everyone());
    REQUIRE(eventually([&] { return to.seen(conn, tag) == 1; }));
}

}  // namespace

TEST_CASE("routed bus: route_bus_message sends topics and users on their own routes, narrowed per user", "[bus][routing]") {
    BusMessage m{"n", Audience::everyone(), "p"};
    auto legs = route_bus_message(m);
    REQUIRE(legs.size() == 1);
    CHECK(legs[0].route == BusRoute::everyone());

    m.audience = Audience::connections({"c1", "c2"});
    legs = route_bus_message(m);
    REQUIRE(legs.size() == 1);
    CHECK(legs[0].route == BusRoute::everyone());

    m.audience = Audience::topic("news").requiring("read");
    legs = route_bus_message(m);
    REQUIRE(legs.size() == 1);
    CHECK(legs[0].route == BusRoute::topic("news"));
    CHECK(legs[0].message.audience.required_permission == "read");

    m.audience = Audience::users({"bob", "alice", "bob", ""}).except_device("phone").requiring("chat");
    m.audience.excluded_device_user = "alice";
    m.offset = 7;
    legs = route_bus_message(m, 2);
    REQUIRE(legs.size() == 2);  // distinct, non-empty users
    CHECK(legs[0].route == BusRoute::user("alice"));
    CHECK(legs[1].route == BusRoute::user("bob"));
    for (const auto& leg : legs) {
        CHECK(leg.message.audience.kind == Audience::Kind::user);
        CHECK(leg.message.audience.user_ids == std::vector<std::string>{leg.route.name});
        CHECK(leg.message.audience.excluded_device == "phone");
        CHECK(leg.message.audience.excluded_device_user == "alice");
        CHECK(leg.message.audience.required_permission == "chat");
        CHECK(leg.message.payload == "p");
        CHECK(leg.message.offset == 7);
        CHECK(leg.message.origin_node == "n");
    }
    // more users than the limit: one message on the common route, unchanged
    legs = route_bus_message(m, 1);
    REQUIRE(legs.size() == 1);
    CHECK(legs[0].route == BusRoute::everyone());
    CHECK(legs[0].message.audience.kind == Audience::Kind::users);
    CHECK(legs[0].message.audience.user_ids.size() == 4);

    m.audience = Audience::users({});
    CHECK(route_bus_message(m).empty());
}

TEST_CASE("routed bus: a node hears a topic only while it has a local subscriber, and the last one leaving unsubscribes", "[bus][redis][gateway][routing]") {
    RedisServer server;
    RawRedis raw{server.port()};
    auto st = store_settings(server);
    Node a{"node-a", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(bus_settings(server))};
    Node b{"node-b", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(bus_settings(server))};
    Node c{"node-c", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(bus_settings(server))};
    for (Node* n : {&a, &b, &c}) REQUIRE(n->bus->wait_subscribed(10s));
    CHECK(a.bus->routed());
    a.connect("a-1", "alice", "pa");
    b.connect("b-1", "bob", "pb");
    c.connect("c-1", "carol", "pc");
    a.subscribe("a-1", "t1");

    const std::string t1 = "wsgate:bus:t:t1";
    CHECK(a.bus->channel_of(BusRoute::topic("t1")) == t1);
    CHECK(has(shard_channels(raw), t1));
    CHECK(shard_numsub(server.port(), t1) == 1);  // node A only
    CHECK(a.bus->stats().routes == 2);             // t1 and alice
    CHECK(a.bus->stats().channels == 3);           // the common channel, t1, alice

    // Counts below are absolute: a bus counts what its node was sent, its own publishes included.
    for (int i = 0; i < 20; ++i) c.gw->publish(Envelope{"ev"}.topic("t1").data("t1-" + std::to_string(i) + "-"), Audience::topic("t1"));
    REQUIRE(eventually([&] { return a.seen("a-1", "t1-19-") == 1; }));
    settle(c, b, "b-1", "marker-1");
    REQUIRE(eventually([&] { return b.bus->stats().received == 1; }));  // the marker, none of t1's twenty
    REQUIRE(eventually([&] { return a.bus->stats().received == 21; }));
    for (int i = 0; i < 20; ++i) CHECK(a.seen("a-1", "t1-" + std::to_string(i) + "-") == 1);
    CHECK(c.bus->stats().route_messages >= 20);

    // node B gains a subscriber: from its ack on, it hears t1 too
    b.subscribe("b-1", "t1");
    CHECK(shard_numsub(server.port(), t1) == 2);
    c.gw->publish(Envelope{"ev"}.topic("t1").data("both"), Audience::topic("t1"));
    REQUIRE(eventually([&] { return a.seen("a-1", "both") == 1 && b.seen("b-1", "both") == 1; }));

    // a second local subscriber on A, then both leave: the channel goes only with the last one
    a.connect("a-2", "alice", "pa2");
    a.subscribe("a-2", "t1");
    a.unsubscribe("a-1", "t1");
    CHECK(shard_numsub(server.port(), t1) == 2);
    a.unsubscribe("a-2", "t1");
    REQUIRE(eventually([&] { return shard_numsub(server.port(), t1) == 1; }));  // node B's
    CHECK(a.bus->stats().route_unsubscribes >= 1);
    CHECK(a.gw->local_index_size().topics == 0);

    // B's subscriber ends with its connection: the channel is gone from the server
    b.gw->on_disconnect("b-1");
    REQUIRE(eventually([&] { return !has(shard_channels(raw), t1); }));
    REQUIRE(eventually([&] { return !has(shard_channels(raw), "wsgate:bus:u:bob"); }));
    CHECK(b.bus->stats().routes == 0);
    REQUIRE(eventually([&] { return b.bus->stats().channels == 1; }));  // the common channel
    CHECK(a.gw->metrics().bus_listen_failures == 0);
    CHECK(b.gw->metrics().bus_listen_failures == 0);

    // nobody on A or B listens to t1 any more: their buses hear none of it ("both", then the marker)
    c.gw->publish(Envelope{"ev"}.topic("t1").data("nobody"), Audience::topic("t1"));
    settle(c, a, "a-2", "marker-2");
    REQUIRE(eventually([&] { return a.bus->stats().received == 23 && b.bus->stats().received == 3; }));
    CHECK(a.seen("a-1", "nobody") == 0);
}

TEST_CASE("routed bus: everyone reaches every node, a user only the nodes with that user's connections, users() each connection once", "[bus][redis][gateway][routing]") {
    RedisServer server;
    auto st = store_settings(server);
    Node a{"node-a", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(bus_settings(server))};
    Node b{"node-b", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(bus_settings(server))};
    Node c{"node-c", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(bus_settings(server))};
    for (Node* n : {&a, &b, &c}) REQUIRE(n->bus->wait_subscribed(10s));
    a.connect("a-1", "alice", "alice-phone");
    a.connect("a-2", "bob", "bob-phone");
    b.connect("b-1", "alice", "alice-laptop");
    b.connect("b-2", "carol", "carol-phone");
    c.connect("c-1", "dave", "dave-phone");

    c.gw->publish(Envelope{"all"}.data("to-everyone"), Audience::everyone());
    REQUIRE(eventually([&] {
        return a.seen("a-1", "to-everyone") == 1 && a.seen("a-2", "to-everyone") == 1 && b.seen("b-1", "to-everyone") == 1 &&
               b.seen("b-2", "to-everyone") == 1 && c.seen("c-1", "to-everyone") == 1;
    }));

    // bob is on node A only: node B's bus does not hear his message (counts are absolute: a bus
    // counts what its node was sent, its own publishes included)
    c.gw->publish(Envelope{"dm"}.data("to-bob"), Audience::user("bob"));
    REQUIRE(eventually([&] { return a.seen("a-2", "to-bob") == 1; }));
    settle(c, b, "b-2", "marker-1");
    REQUIRE(eventually([&] { return b.bus->stats().received == 2; }));  // to-everyone, marker-1
    CHECK(a.seen("a-1", "to-bob") == 0);

    // alice on A and B, carol on B, bob on A, nobody on C; alice twice in the list, and a
    // connection of hers excluded by device
    const auto routed_before = a.bus->stats().route_messages;
    a.gw->publish(Envelope{"dm"}.data("to-some"), Audience::users({"alice", "carol", "bob", "alice", "erin"}));
    a.gw->publish(Envelope{"dm"}.data("not-phone"), Audience::users({"alice", "carol"}).except_device("alice-phone"));
    REQUIRE(eventually([&] { return b.seen("b-1", "not-phone") == 1 && b.seen("b-2", "not-phone") == 1; }));
    settle(a, c, "c-1", "marker-2");
    // to-everyone, marker-1, marker-2: no leg for C, dave was not named
    REQUIRE(eventually([&] { return c.bus->stats().received == 3; }));
    CHECK(a.bus->stats().route_messages == routed_before + 4 + 2);  // one message per named user
    settle(a, b, "b-1", "marker-3");
    settle(a, a, "a-1", "marker-4");
    CHECK(a.seen("a-1", "to-some") == 1);
    CHECK(a.seen("a-2", "to-some") == 1);
    CHECK(b.seen("b-1", "to-some") == 1);
    CHECK(b.seen("b-2", "to-some") == 1);
    CHECK(c.seen("c-1", "to-some") == 0);
    CHECK(a.seen("a-1", "not-phone") == 0);
    CHECK(a.seen("a-2", "not-phone") == 0);

    // more users than max_user_routes: one message on the common channel, delivered once per connection
    auto wide = bus_settings(server);
    wide.max_user_routes = 1;
    Node d{"node-d", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(wide)};
    REQUIRE(d.bus->wait_subscribed(10s));
    d.gw->publish(Envelope{"dm"}.data("wide"), Audience::users({"alice", "carol"}));
    REQUIRE(eventually([&] { return a.seen("a-1", "wide") == 1 && b.seen("b-1", "wide") == 1 && b.seen("b-2", "wide") == 1; }));
    // heard (after markers 3 and 4), delivered nothing
    REQUIRE(eventually([&] { return c.bus->stats().received == 6; }));
    settle(d, a, "a-1", "marker-5");
    settle(d, b, "b-1", "marker-6");
    CHECK(a.seen("a-1", "wide") == 1);
    CHECK(b.seen("b-1", "wide") == 1);
    CHECK(c.seen("c-1", "wide") == 0);
    CHECK(d.bus->stats().route_messages == 0);
}

TEST_CASE("routed bus: after redis-server restarts, every route with members is subscribed again, and a listen made while it was down too", "[bus][redis][gateway][routing][fault]") {
    RedisServer server;
    // Node-local stores: the nodes keep their members through the outage; only the bus needs Redis.
    Node a{"node-a", std::make_shared<InMemoryConnectionStore>(), std::make_shared<RedisBus>(bus_settings(server))};
    Node b{"node-b", std::make_shared<InMemoryConnectionStore>(), std::make_shared<RedisBus>(bus_settings(server))};
    REQUIRE(a.bus->wait_subscribed(10s));
    REQUIRE(b.bus->wait_subscribed(10s));
    a.connect("a-1", "alice", "pa");
    b.connect("b-1", "bob", "pb");
    a.subscribe("a-1", "ticks");
    b.subscribe("b-1", "ticks");
    CHECK(shard_numsub(server.port(), "wsgate:bus:t:ticks") == 2);

    server.stop();
    REQUIRE(eventually([&] { return !b.bus->subscribed() && !a.bus->subscribed(); }));
    CHECK(b.bus->stats().channels == 0);
    // a subscribe while Redis is down: local delivery still works, the listen is counted as failed
    b.connect("b-2", "carol", "pc");
    b.subscribe("b-2", "late");
    CHECK(b.gw->metrics().bus_listen_failures >= 2);  // carol's user channel and "late"
    CHECK(b.bus->stats().listen_failures >= 2);
    b.gw->publish(Envelope{"ev"}.topic("late").data("local-only"), Audience::topic("late"));
    CHECK(b.seen("b-2", "local-only") == 1);

    server.start();
    REQUIRE(a.bus->wait_subscribed(10s));
    REQUIRE(b.bus->wait_subscribed(10s));
    RawRedis raw{server.port()};
    // subscribed() comes only after every route is confirmed
    const auto channels = shard_channels(raw);
    CHECK(has(channels, "wsgate:bus:t:ticks"));
    CHECK(has(channels, "wsgate:bus:t:late"));
    CHECK(has(channels, "wsgate:bus:u:alice"));
    CHECK(has(channels, "wsgate:bus:u:bob"));
    CHECK(has(channels, "wsgate:bus:u:carol"));
    CHECK(shard_numsub(server.port(), "wsgate:bus:t:ticks") == 2);
    CHECK(b.bus->stats().channels == 5);  // the common channel, ticks, late, bob, carol
    CHECK(b.bus->stats().routes == 4);

    // cross-node publishes arrive again (the publish connection reconnects after its backoff)
    int n = 0;
    REQUIRE(eventually([&] {
        const auto tag = "after-" + std::to_string(n++) + "-";
        a.gw->publish(Envelope{"ev"}.topic("ticks").data(tag), Audience::topic("ticks"));
        return eventually([&] { return b.seen("b-1", tag) == 1; }, 300ms);
    }, 15s));
    a.gw->publish(Envelope{"ev"}.topic("late").data("late-remote"), Audience::topic("late"));
    REQUIRE(eventually([&] { return b.seen("b-2", "late-remote") == 1; }));
    a.gw->publish(Envelope{"dm"}.data("to-carol"), Audience::user("carol"));
    REQUIRE(eventually([&] { return b.seen("b-2", "to-carol") == 1; }));
    CHECK(a.bus->stats().reconnects >= 1);
    CHECK(b.bus->stats().reconnects >= 1);
}

TEST_CASE("routed bus: a subscriber acked on node B receives a publish made on node A right after the ack, under churn", "[bus][redis][gateway][routing]") {
    RedisServer server;
    auto st = store_settings(server);
    Node a{"node-a", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(bus_settings(server))};
    Node b{"node-b", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(bus_settings(server))};
    REQUIRE(a.bus->wait_subscribed(10s));
    REQUIRE(b.bus->wait_subscribed(10s));
    a.connect("a-0", "publisher", "pp");
    b.connect("b-1", "bob", "pb");
    b.connect("b-2", "bob", "pb2");

    // b-2 joins and leaves the same topics meanwhile, so b-1's subscribe meets every state of the
    // channel: subscribed, an SUNSUBSCRIBE queued or in flight, an SSUBSCRIBE in flight.
    std::atomic<bool> stop{false};
    std::thread churn([&] {
        for (int i = 0; !stop.load(); ++i) {
            const auto topic = "race-" + std::to_string(i % 3);
            b.gw->on_message("b-2", R"({"type":"subscribe","topic":")" + topic + R"("})");
            b.gw->on_message("b-2", R"({"type":"unsubscribe","topic":")" + topic + R"("})");
            b.transport->drain("b-2");  // the acks: b-2's queue never fills
        }
    });
    int missed = 0;
    for (int i = 0; i < 300; ++i) {
        const auto topic = "race-" + std::to_string(i % 3);
        const auto tag = "race-tag-" + std::to_string(i) + "-";
        b.subscribe("b-1", topic);  // returns after the ack went out
        a.gw->publish(Envelope{"ev"}.topic(topic).data(tag), Audience::topic(topic));
        if (!eventually([&] { return b.seen("b-1", tag) == 1; }, 5s)) ++missed;
        b.unsubscribe("b-1", topic);
    }
    stop = true;
    churn.join();
    CHECK(missed == 0);
    CHECK(b.gw->metrics().bus_listen_failures == 0);
    CHECK(b.bus->stats().route_unsubscribes >= 1);
    // every listen was given back: only bob's user channel is left
    REQUIRE(eventually([&] { return b.bus->stats().routes == 1; }));
    RawRedis raw{server.port()};
    REQUIRE(eventually([&] {
        const auto ch = shard_channels(raw);
        return !has(ch, "wsgate:bus:t:race-0") && !has(ch, "wsgate:bus:t:race-1") && !has(ch, "wsgate:bus:t:race-2");
    }));
}

TEST_CASE("redis bus with per_topic_channels off: one channel that every node hears, as in 0.1", "[bus][redis][gateway]") {
    RedisServer server;
    auto flat = bus_settings(server);
    flat.per_topic_channels = false;
    auto st = store_settings(server);
    Node a{"node-a", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(flat)};
    Node b{"node-b", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(flat)};
    REQUIRE(a.bus->wait_subscribed(10s));
    REQUIRE(b.bus->wait_subscribed(10s));
    CHECK_FALSE(a.bus->routed());
    CHECK(a.bus->channel_of(BusRoute::topic("news")) == "wsgate:bus");
    a.connect("a-1", "alice", "pa");
    b.connect("b-1", "bob", "pb");
    a.subscribe("a-1", "news");

    RawRedis raw{server.port()};
    CHECK(shard_channels(raw).empty());
    CHECK(raw.cmd({"PUBSUB", "CHANNELS"}).items == std::vector<std::string>{"wsgate:bus"});

    const auto b_before = b.bus->stats().received;
    b.gw->publish(Envelope{"headline"}.topic("news").data("flat-news"), Audience::topic("news"));
    b.gw->publish(Envelope{"dm"}.data("flat-dm"), Audience::users({"alice", "bob"}));
    REQUIRE(eventually([&] { return a.seen("a-1", "flat-news") == 1 && a.seen("a-1", "flat-dm") == 1; }));
    CHECK(b.seen("b-1", "flat-dm") == 1);
    // node B hears its own two publishes, though it has no subscriber of "news"
    REQUIRE(eventually([&] { return b.bus->stats().received == b_before + 2; }));
    CHECK(a.bus->stats().route_messages == 0);
    CHECK(b.bus->stats().route_subscribes == 0);
    CHECK(a.gw->metrics().bus_listen_failures == 0);
    settle(a, b, "b-1", "marker");
    CHECK(b.seen("b-1", "flat-dm") == 1);
}

TEST_CASE("routed bus: a token refresh that changes a connection's user moves its user channel", "[bus][redis][gateway][routing]") {
    RedisServer server;
    RawRedis raw{server.port()};
    auto st = store_settings(server);
    Node a{"node-a", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(bus_settings(server))};
    Node b{"node-b", std::make_shared<RedisConnectionStore>(st), std::make_shared<RedisBus>(bus_settings(server))};
    REQUIRE(a.bus->wait_subscribed(10s));
    REQUIRE(b.bus->wait_subscribed(10s));
    a.connect("a-1", "alice", "pa");
    CHECK(has(shard_channels(raw), "wsgate:bus:u:alice"));

    Principal zed;
    zed.kind = PrincipalKind::user;
    zed.user_id = "zed";
    REQUIRE(a.gw->refresh_principal("a-1", zed));
    CHECK(has(shard_channels(raw), "wsgate:bus:u:zed"));  // subscribed before refresh_principal returned
    REQUIRE(eventually([&] { return !has(shard_channels(raw), "wsgate:bus:u:alice"); }));
    b.gw->publish(Envelope{"dm"}.data("to-zed"), Audience::user("zed"));
    REQUIRE(eventually([&] { return a.seen("a-1", "to-zed") == 1; }));
    CHECK(a.bus->stats().routes == 1);

    a.gw->on_disconnect("a-1");
    REQUIRE(eventually([&] { return shard_channels(raw).empty(); }));
    CHECK(a.bus->stats().routes == 0);
}

TEST_CASE("routed bus: while Redis is known to be down, a connect or subscribe does not wait for its channel", "[bus][redis][gateway][routing][fault]") {
    RedisServer server;
    auto settings = bus_settings(server);
    settings.endpoint.command_timeout = 60s;  // what a listen would wait for a server that only froze
    Node b{"node-b", std::make_shared<InMemoryConnectionStore>(), std::make_shared<RedisBus>(settings)};
    REQUIRE(b.bus->wait_subscribed(10s));
    server.stop();
    REQUIRE(eventually([&] { return !b.bus->subscribed(); }));

    // The calls run on their own thread: a listen that waited out the command timeout would still
    // be blocked when the deadline below passes.
    std::atomic<bool> done{false};
    std::atomic<bool> accepted{false};
    std::atomic<bool> subscribed{false};
    b.transport->open("b-1");
    std::thread caller([&] {
        ConnectRequest rq;
        rq.connection_id = "b-1";
        Principal p;
        p.kind = PrincipalKind::user;
        p.user_id = "carol";
        p.device_id = "pc";
        accepted = b.gw->on_connect(rq, p).accepted;
        subscribed = accepted && !b.gw->on_message("b-1", R"({"type":"subscribe","topic":"late"})");
        done = true;
    });
    const bool finished = eventually([&] { return done.load(); }, 20s);
    caller.join();
    REQUIRE(finished);
    CHECK(accepted);
    CHECK(subscribed);
    CHECK(b.bus->stats().listen_failures >= 2);  // the user channel and the topic, both kept
    b.gw->publish(Envelope{"ev"}.topic("late").data("local-only"), Audience::topic("late"));
    CHECK(b.seen("b-1", "local-only") == 1);

    server.start();
    REQUIRE(b.bus->wait_subscribed(20s));
    RawRedis raw{server.port()};
    const auto channels = shard_channels(raw);
    CHECK(has(channels, "wsgate:bus:t:late"));
    CHECK(has(channels, "wsgate:bus:u:carol"));
}

// RedisBus on its own, then Gateway nodes that share one redis-server: cross-node delivery,
// send-to-user across nodes, and a Redis restart in the middle of publishing.

#include "catch.hpp"
#include "raw_redis.hpp"
#include "redis_server.hpp"

#include <wsgate/gateway.hpp>
#include <wsgate/memory_transport.hpp>
#include <wsgate/memory_store.hpp>
#include <wsgate/redis/redis_bus.hpp>
#include <wsgate/redis/redis_store.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

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
    REQUIRE(a.publish(m));  // ordered after the garbage on the same channel
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

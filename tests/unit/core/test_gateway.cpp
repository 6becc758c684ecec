#include "catch.hpp"
#include "gateway_fixture.hpp"

#include <set>

using namespace wsgate;
using namespace std::chrono_literals;
using wsgate::test::GatewayFixture;

TEST_CASE("connect stores a record with TTL, source IP and user agent", "[gateway][connect]") {
    GatewayFixture f;
    ConnectRequest req;
    req.query["as"] = "user:u1:phone";
    req.source_ip = "203.0.113.9";
    req.headers["user-agent"] = "bubble/1.0";
    auto r = f.gw->on_connect(req);
    REQUIRE(r.accepted);
    CHECK(r.status == 200);
    CHECK(r.id.size() == 22);
    auto rec = f.store->get(r.id);
    REQUIRE(rec);
    CHECK(rec->source_ip == "203.0.113.9");
    CHECK(rec->user_agent == "bubble/1.0");
    CHECK(rec->principal.user_id == "u1");
    CHECK(rec->expires_at - rec->connected_at == 1h);
    CHECK(rec->node_id == f.gw->node_id());
    CHECK(f.gw->metrics().connects == 1);
    CHECK(f.gw->metrics().active_connections == 1);
}

TEST_CASE("denied connects are counted and carry status and reason", "[gateway][connect][auth]") {
    GatewayFixture f;
    ConnectRequest req;
    req.query["as"] = "deny";
    auto r = f.gw->on_connect(req);
    CHECK_FALSE(r.accepted);
    CHECK(r.status == 401);
    CHECK(r.reason == "missing_token");
    req.query["as"] = "throw";
    r = f.gw->on_connect(req);
    CHECK_FALSE(r.accepted);
    CHECK(r.status == 401);
    CHECK(r.reason == "auth_error");
    CHECK(f.gw->metrics().denied_connects == 2);
    CHECK(f.store->count() == 0);
}

TEST_CASE("per-user and per-node connection caps", "[gateway][connect][limits]") {
    GatewaySettings s;
    s.max_connections_per_user = 2;
    s.max_connections = 4;
    GatewayFixture f{s};
    CHECK_FALSE(f.connect("user:u1:a").empty());
    CHECK_FALSE(f.connect("user:u1:b").empty());
    ConnectRequest req;
    req.query["as"] = "user:u1:c";
    auto r = f.gw->on_connect(req);
    CHECK_FALSE(r.accepted);
    CHECK(r.status == 429);
    CHECK(r.reason == "too_many_connections");
    CHECK_FALSE(f.connect("user:u2:a").empty());  // other users unaffected
    CHECK_FALSE(f.connect("anon").empty());
    req.query["as"] = "anon";
    r = f.gw->on_connect(req);
    CHECK(r.status == 503);
    CHECK(r.reason == "server_full");
    // a slot frees up when a connection ends
    f.gw->on_disconnect(f.store->connections_of_user("u1").front());
    CHECK_FALSE(f.connect("user:u1:c").empty());
}

TEST_CASE("a host-chosen connection id is kept; a duplicate is refused", "[gateway][connect]") {
    GatewayFixture f;
    ConnectRequest req;
    req.query["as"] = "anon";
    req.connection_id = "L0SM9cOFvHcCIhw=";
    auto r = f.gw->on_connect(req);
    REQUIRE(r.accepted);
    CHECK(r.id == "L0SM9cOFvHcCIhw=");
    auto again = f.gw->on_connect(req);
    CHECK_FALSE(again.accepted);
    CHECK(again.status == 409);
    CHECK(f.store->count() == 1);
}

TEST_CASE("oversized messages: error by default, 1009 close by policy", "[gateway][limits]") {
    SECTION("reply_error") {
        GatewaySettings s;
        s.max_message_bytes = 64;
        GatewayFixture f{s};
        auto id = f.connect();
        CHECK(f.gw->on_message(id, R"({"type":"ping","pad":")" + std::string(100, 'x') + "\"}") ==
              make_error_code(protocol_errc::too_large));
        auto out = f.frames(id);
        REQUIRE(out.size() == 1);
        CHECK(out[0]["status"] == 413);
        CHECK(f.say(id, R"({"type":"ping"})")[0]["type"] == "pong");
        CHECK(f.gw->metrics().oversize == 1);
    }
    SECTION("close") {
        GatewaySettings s;
        s.max_message_bytes = 64;
        s.oversize_policy = LimitPolicy::close;
        GatewayFixture f{s};
        auto id = f.connect();
        auto other = f.connect();
        f.gw->on_message(id, std::string(65, ' '));
        CHECK(f.transport->close_code(id) == CloseCode::message_too_big);
        CHECK_FALSE(f.store->get(id));
        CHECK(f.gw->metrics().ended_total(EndReason::policy) == 1);
        CHECK(f.say(other, R"({"type":"ping"})")[0]["type"] == "pong");
    }
}

TEST_CASE("rate limit is hit and recovers as the clock moves", "[gateway][limits][rate]") {
    GatewaySettings s;
    s.rate_per_second = 2;
    s.rate_burst = 3;
    GatewayFixture f{s};
    auto id = f.connect();
    auto other = f.connect();
    for (int i = 0; i < 3; ++i) CHECK(f.say(id, R"({"type":"ping"})")[0]["type"] == "pong");
    CHECK(f.gw->on_message(id, R"({"type":"ping"})") == make_error_code(protocol_errc::rate_limited));
    auto out = f.frames(id);
    REQUIRE(out.size() == 1);
    CHECK(out[0]["status"] == 429);
    CHECK(f.say(other, R"({"type":"ping"})")[0]["type"] == "pong");  // per connection
    f.clock->advance(500ms);  // one token back
    CHECK(f.say(id, R"({"type":"ping"})")[0]["type"] == "pong");
    CHECK(f.say(id, R"({"type":"ping"})")[0]["status"] == 429);
    f.clock->advance(10s);  // refills to the burst, not beyond
    for (int i = 0; i < 3; ++i) CHECK(f.say(id, R"({"type":"ping"})")[0]["type"] == "pong");
    CHECK(f.say(id, R"({"type":"ping"})")[0]["status"] == 429);
    CHECK(f.gw->metrics().rate_limited == 3);
}

TEST_CASE("rate limit under the close policy ends the connection with 1008", "[gateway][limits][rate]") {
    GatewaySettings s;
    s.rate_per_second = 1;
    s.rate_burst = 1;
    s.rate_policy = LimitPolicy::close;
    GatewayFixture f{s};
    auto id = f.connect();
    f.say(id, R"({"type":"ping"})");
    f.gw->on_message(id, R"({"type":"ping"})");
    CHECK(f.transport->close_code(id) == CloseCode::policy_violation);
    CHECK_FALSE(f.store->get(id));
}

TEST_CASE("a Gone during fan-out removes that record and delivery goes on", "[gateway][fanout][gone]") {
    GatewayFixture f;
    std::vector<ConnectionId> ids;
    for (int i = 0; i < 10; ++i) ids.push_back(f.connect());
    for (auto& id : ids) f.store->subscribe(id, "news");
    f.transport->vanish(ids[3]);
    f.transport->vanish(ids[7]);
    std::vector<std::pair<ConnectionId, EndReason>> ended;
    f.gw->set_end_hook([&](const ConnectionRecord& r, EndReason why) { ended.emplace_back(r.id, why); });

    auto rep = f.gw->publish(Envelope{"headline"}.data("hi"), Audience::topic("news"));
    CHECK(rep.targets == 10);
    CHECK(rep.delivered == 8);
    CHECK(rep.gone_removed == 2);
    CHECK(rep.failed == 0);
    CHECK_FALSE(f.store->get(ids[3]));
    CHECK_FALSE(f.store->get(ids[7]));
    CHECK(f.store->count() == 8);
    CHECK(ended.size() == 2);
    for (auto& [id, why] : ended) CHECK(why == EndReason::gone);
    for (int i : {0, 1, 2, 4, 5, 6, 8, 9}) {
        auto got = f.frames(ids[static_cast<std::size_t>(i)]);
        REQUIRE(got.size() == 1);
        CHECK(got[0]["data"] == "hi");
    }
    CHECK(f.gw->metrics().gone_cleanups == 2);
    CHECK(f.gw->metrics().deliveries == 8);
    // the next publish has only live targets
    rep = f.gw->publish(Envelope{"headline"}, Audience::topic("news"));
    CHECK(rep.targets == 8);
    CHECK(rep.gone_removed == 0);
}

TEST_CASE("a full queue reports backpressure without losing the connection", "[gateway][fanout][backpressure]") {
    GatewayFixture f{{}, 2};
    auto slow = f.connect();
    auto fast = f.connect();
    BroadcastReport rep;
    for (int i = 0; i < 3; ++i) {
        rep = f.gw->publish(Envelope{"tick"}, Audience::everyone());
        f.frames(fast);
    }
    CHECK(rep.backpressured == 1);
    CHECK(rep.delivered == 1);
    CHECK(f.transport->queued(slow) == 2);
    CHECK(f.store->get(slow));
    CHECK(f.gw->metrics().backpressured == 1);
}

TEST_CASE("send to a user's devices except the sending device", "[gateway][fanout][user]") {
    GatewayFixture f;
    auto phone1 = f.connect("user:u1:phone");
    auto phone2 = f.connect("user:u1:phone");  // two tabs on one device
    auto tablet = f.connect("user:u1:tablet");
    auto other = f.connect("user:u2:phone");
    auto rep = f.gw->send_to_user("u1", Envelope{"timer"}.data({{"id", "t1"}}), "phone");
    CHECK(rep.delivered == 1);
    CHECK(rep.filtered == 2);
    CHECK(f.frames(tablet).size() == 1);
    CHECK(f.frames(phone1).empty());
    CHECK(f.frames(phone2).empty());
    CHECK(f.frames(other).empty());

    // except_sender keys by device id when there is one, else by connection
    auto sender = *f.store->get(phone1);
    rep = f.gw->publish(Envelope{"x"}, Audience::users({"u1", "u2"}).except_sender(sender));
    CHECK(rep.delivered == 2);  // u1's tablet and u2's phone: the exclusion is u1's phone only
    CHECK(f.frames(other).size() == 1);
    CHECK(f.frames(phone1).empty());
    auto anon = f.connect("anon");
    f.connect("anon");
    rep = f.gw->publish(Envelope{"x"}, Audience::everyone().except_sender(*f.store->get(anon)));
    CHECK(rep.delivered == 5);
}

TEST_CASE("TTL, idle and maximum age expire through sweep with the manual clock", "[gateway][sweep]") {
    GatewaySettings s;
    s.ttl = 1h;
    s.inactivity_timeout = 10min;
    s.max_age = 2h;
    s.extend_ttl_on_message = true;
    s.rate_per_second = 0;
    GatewayFixture f{s};
    auto idle = f.connect();
    auto chatty = f.connect();
    std::vector<EndReason> reasons;
    f.gw->set_end_hook([&](const ConnectionRecord&, EndReason r) { reasons.push_back(r); });

    f.clock->advance(9min);
    f.say(chatty, R"({"type":"ping"})");
    CHECK(f.gw->sweep().idle == 0);
    f.clock->advance(1min);
    auto rep = f.gw->sweep();
    CHECK(rep.idle == 1);
    CHECK_FALSE(f.store->get(idle));
    CHECK(f.transport->close_code(idle) == CloseCode::going_away);
    REQUIRE(f.store->get(chatty));

    // chatty keeps talking: idle never fires, TTL slides, max age ends it at 2 h
    for (int i = 0; i < 21; ++i) {
        f.clock->advance(5min);
        f.say(chatty, R"({"type":"ping"})");
        CHECK(f.gw->sweep().max_age == 0);
    }
    f.clock->advance(5min);
    rep = f.gw->sweep();
    CHECK(rep.max_age == 1);
    CHECK_FALSE(f.store->get(chatty));
    CHECK(reasons == std::vector<EndReason>{EndReason::idle, EndReason::max_age});
    CHECK(f.gw->metrics().ended_total(EndReason::idle) == 1);
    CHECK(f.gw->metrics().ended_total(EndReason::max_age) == 1);
    CHECK(f.gw->metrics().active_connections == 0);
}

TEST_CASE("touch() restarts the inactivity clock without a message or a store write", "[gateway][sweep]") {
    GatewaySettings s;
    s.inactivity_timeout = 10min;
    s.rate_per_second = 0;
    // Sweeps here are minutes apart: a 30 s lease would run out between them, and the node would
    // register its connections again (writing last_seen).
    s.node_lease = 1h;
    GatewayFixture f{s};
    auto viewer = f.connect();
    auto silent = f.connect();
    const auto seen_in_store = f.store->get(viewer)->last_seen;

    f.clock->advance(9min);
    CHECK(f.gw->touch(viewer));  // a pong the transport saw
    CHECK_FALSE(f.gw->touch("not-a-connection"));
    f.clock->advance(2min);
    auto rep = f.gw->sweep();
    CHECK(rep.idle == 1);
    CHECK_FALSE(f.store->get(silent));
    REQUIRE(f.store->get(viewer));
    CHECK(f.store->get(viewer)->last_seen == seen_in_store);
    f.clock->advance(9min);
    CHECK(f.gw->sweep().idle == 1);
    CHECK_FALSE(f.store->get(viewer));
}

TEST_CASE("TTL expiry (seed 000: one hour)", "[gateway][sweep][ttl]") {
    GatewaySettings s;
    s.inactivity_timeout = 0ms;
    s.max_age = 0ms;
    GatewayFixture f{s};
    auto a = f.connect();
    f.clock->advance(59min);
    auto b = f.connect();
    f.clock->advance(1min);
    auto rep = f.gw->sweep();
    CHECK(rep.ttl_expired == 1);
    CHECK_FALSE(f.store->get(a));
    CHECK(f.store->get(b));
    CHECK(f.gw->metrics().ended_total(EndReason::ttl_expired) == 1);
    CHECK(f.gw->sweep(f.clock->now()).ttl_expired == 0);
}

TEST_CASE("records nobody holds locally are expired from the store too", "[gateway][sweep]") {
    GatewayFixture f;
    ConnectionRecord orphan;
    orphan.id = "orphan";
    orphan.expires_at = f.clock->now() + 1s;
    f.store->put(orphan);
    f.clock->advance(2s);
    CHECK(f.gw->sweep().ttl_expired == 1);
    CHECK(f.store->count() == 0);
}

TEST_CASE("the reaper ends a connection once when reasons race", "[gateway][reaper]") {
    GatewayFixture f;
    auto id = f.connect();
    int hooks = 0;
    f.gw->set_end_hook([&](const ConnectionRecord&, EndReason) { ++hooks; });
    CHECK(f.gw->end(id, EndReason::kicked));
    CHECK_FALSE(f.gw->end(id, EndReason::idle));
    f.gw->on_disconnect(id);
    f.clock->advance(2h);
    f.gw->sweep();
    CHECK(hooks == 1);
    CHECK(f.transport->close_count(id) == 1);
    CHECK(f.gw->metrics().disconnects == 1);
    CHECK(f.gw->metrics().ended_total(EndReason::kicked) == 1);
    CHECK(f.gw->metrics().active_connections == 0);
    // a message from an ended connection is refused without a reply
    CHECK(f.gw->on_message(id, R"({"type":"ping"})") == make_error_code(protocol_errc::unknown_connection));
    CHECK(f.gw->end("never-existed", EndReason::kicked) == false);
}

TEST_CASE("a client close does not send a close frame back", "[gateway][reaper]") {
    GatewayFixture f;
    auto id = f.connect();
    f.gw->on_disconnect(id);
    CHECK(f.transport->close_count(id) == 0);
    CHECK(f.gw->metrics().ended_total(EndReason::client_closed) == 1);
}

namespace {
/// A store whose every call fails, as a backend outage would.
class BrokenStore final : public ConnectionStore {
public:
    [[noreturn]] static void fail() { throw StoreError(store_errc::unavailable, "backend down"); }
    void put(const ConnectionRecord&) override { fail(); }
    std::optional<ConnectionRecord> get(const ConnectionId&) override { fail(); }
    bool remove(const ConnectionId&) override { fail(); }
    bool touch(const ConnectionId&, TimePoint, std::optional<TimePoint>) override { fail(); }
    bool subscribe(const ConnectionId&, const std::string&) override { fail(); }
    SubscribeResult subscribe_capped(const ConnectionId&, const std::string&, std::size_t) override { fail(); }
    bool unsubscribe(const ConnectionId&, const std::string&) override { fail(); }
    std::vector<std::string> topics_of(const ConnectionId&) override { fail(); }
    std::vector<ConnectionId> subscribers(const std::string&) override { fail(); }
    std::vector<ConnectionId> connections_of_user(const std::string&) override { fail(); }
    ScanPage scan(const std::string&, std::size_t) override { fail(); }
    std::vector<ConnectionRecord> expire(TimePoint) override { fail(); }
    std::size_t count() override { fail(); }
};
}  // namespace

TEST_CASE("a failing store is caught at the boundary", "[gateway][store][errors]") {
    auto transport = std::make_shared<InMemoryTransport>();
    Gateway gw{{}, std::make_shared<BrokenStore>(), transport, std::make_shared<AnonymousAuthorizer>(),
               std::make_shared<ManualClock>()};
    auto r = gw.on_connect({});
    CHECK_FALSE(r.accepted);
    CHECK(r.status == 503);
    CHECK(r.reason == "store_unavailable");
    transport->open("x");
    CHECK(gw.on_message("x", R"({"type":"ping"})") == make_error_code(protocol_errc::store_unavailable));
    CHECK(nlohmann::json::parse(transport->drain("x").at(0))["status"] == 503);
    auto rep = gw.publish(Envelope{"e"}, Audience::everyone());
    CHECK(rep.delivered == 0);
    CHECK_NOTHROW(gw.sweep());
    CHECK(gw.metrics().store_errors >= 3);
    CHECK(gw.local_count() == 0);
    // Subscription operations answer a store failure as a value, never by throwing.
    ConnectionRecord rec;
    rec.id = "x";
    rec.principal.kind = PrincipalKind::user;
    rec.principal.user_id = "u";
    GatewaySettings open;
    open.router.open_topics = true;
    Gateway gw2{open, std::make_shared<BrokenStore>(), transport, std::make_shared<AnonymousAuthorizer>(),
                std::make_shared<ManualClock>()};
    SubscriptionResult sub;
    CHECK_NOTHROW(sub = gw2.subscribe(rec, "t"));
    CHECK(sub.error == protocol_errc::store_unavailable);
    CHECK(status_of(sub.error) == 503);
    CHECK(gw2.unsubscribe("x", "t").error == protocol_errc::store_unavailable);
    CHECK(gw2.drop_unreadable("x", rec.principal).empty());
}

TEST_CASE("construction rejects misconfiguration", "[gateway][config]") {
    auto store = std::make_shared<InMemoryConnectionStore>();
    auto transport = std::make_shared<InMemoryTransport>();
    auto auth = std::make_shared<AnonymousAuthorizer>();
    CHECK_THROWS_AS(Gateway({}, nullptr, transport, auth), std::invalid_argument);
    CHECK_THROWS_AS(Gateway({}, store, nullptr, auth), std::invalid_argument);
    CHECK_THROWS_AS(Gateway({}, store, transport, nullptr), std::invalid_argument);
    GatewaySettings s;
    s.max_message_bytes = 0;
    CHECK_THROWS_AS(Gateway(s, store, transport, auth), std::invalid_argument);
    s = {};
    s.rate_burst = 0.5;
    CHECK_THROWS_AS(Gateway(s, store, transport, auth), std::invalid_argument);
    s = {};
    s.ttl = Duration{0};
    CHECK_THROWS_AS(Gateway(s, store, transport, auth), std::invalid_argument);
}

namespace {
/// A bus that loops messages back, as a second node would see them.
class LoopBus final : public Bus {
public:
    bool publish(const BusMessage& m) override {
        published.push_back(m);
        return up;
    }
    void set_handler(Handler h) override { handler = std::move(h); }
    std::vector<BusMessage> published;
    Handler handler;
    bool up = true;
};
}  // namespace

TEST_CASE("publishes go through the bus; a node ignores its own and delivers others'", "[gateway][bus]") {
    auto bus = std::make_shared<LoopBus>();
    auto store = std::make_shared<InMemoryConnectionStore>();
    auto transport = std::make_shared<InMemoryTransport>();
    GatewaySettings s;
    s.node_id = "node-a";
    Gateway gw{s, store, transport, std::make_shared<AnonymousAuthorizer>(), std::make_shared<ManualClock>(), bus};
    ConnectRequest req;
    req.connection_id = "c1";
    transport->open("c1");
    REQUIRE(gw.on_connect(req).accepted);

    auto rep = gw.publish(Envelope{"hello"}, Audience::everyone());
    CHECK(rep.delivered == 1);
    REQUIRE(bus->published.size() == 1);
    CHECK(bus->published[0].origin_node == "node-a");
    bus->handler(bus->published[0]);  // its own message back from the bus: ignored
    CHECK(transport->drain("c1").size() == 1);

    bus->handler(BusMessage{"node-b", Audience::everyone(), R"({"type":"from-b"})"});
    auto got = transport->drain("c1");
    REQUIRE(got.size() == 1);
    CHECK(got[0] == R"({"type":"from-b"})");
    CHECK(gw.metrics().bus_received == 1);

    bus->up = false;
    gw.publish(Envelope{"hello"}, Audience::everyone());
    CHECK(gw.metrics().bus_errors == 1);
    CHECK(transport->drain("c1").size() == 1);  // local delivery goes on
}

TEST_CASE("metrics export as Prometheus text", "[gateway][metrics]") {
    GatewayFixture f;
    auto id = f.connect();
    f.say(id, R"({"type":"ping"})");
    f.gw->on_disconnect(id);
    auto text = f.gw->metrics().prometheus_text();
    CHECK(text.find("# TYPE wsgate_connects_total counter\nwsgate_connects_total 1\n") != std::string::npos);
    CHECK(text.find("wsgate_messages_in_total 1\n") != std::string::npos);
    CHECK(text.find("wsgate_active_connections 0\n") != std::string::npos);
    CHECK(text.find("wsgate_connections_ended_total{reason=\"client_closed\"} 1\n") != std::string::npos);
}

TEST_CASE("every EndReason has one row: name, counter, close code and close text", "[gateway][reaper][metrics]") {
    STATIC_REQUIRE(end_reason_count == static_cast<std::size_t>(EndReason::shutdown) + 1);
    std::set<std::string_view> names;
    for (std::size_t i = 0; i < end_reason_count; ++i) {
        const auto r = static_cast<EndReason>(i);
        const auto& row = end_reason_info(r);
        CHECK(row.reason == r);
        CHECK_FALSE(row.name.empty());
        CHECK_FALSE(row.close_text.empty());
        CHECK(names.insert(row.name).second);  // names are unique: they label one Prometheus series each
        CHECK(to_string(r) == row.name);
        CHECK(close_code_for(r) == row.close_code);
    }
    CHECK(close_code_for(EndReason::token_expired) == CloseCode::token_expired);
    CHECK(close_code_for(EndReason::policy) == CloseCode::policy_violation);
    CHECK(close_code_for(EndReason::idle) == CloseCode::going_away);
    CHECK(close_code_for(EndReason::kicked) == CloseCode::normal);
    CHECK_FALSE(end_reason_info(EndReason::client_closed).sends_close);
    CHECK_FALSE(end_reason_info(EndReason::gone).sends_close);
    // A value outside the enum is named, not read past the table.
    CHECK(to_string(static_cast<EndReason>(200)) == "unknown");

    // Each reason ends a connection with its row's close code and text, counts under its name, and
    // the Prometheus export has one line per reason.
    GatewayFixture f;
    for (const auto& row : end_reasons) {
        auto id = f.connect();
        REQUIRE(f.gw->end(id, row.reason));
        CHECK(f.gw->metrics().ended_total(row.reason) == 1);
        if (row.sends_close) {
            CHECK(f.transport->close_code(id) == row.close_code);
        } else {
            CHECK(f.transport->close_count(id) == 0);
        }
    }
    const auto text = f.gw->metrics().prometheus_text();
    for (const auto& row : end_reasons)
        CHECK(text.find("wsgate_connections_ended_total{reason=\"" + std::string{row.name} + "\"} 1\n") !=
              std::string::npos);
    CHECK(f.gw->metrics().disconnects == end_reason_count);
}

TEST_CASE("a topic publish names its topic unless the host named one", "[gateway][fanout][envelope]") {
    RouterSettings r;
    r.open_topics = true;
    GatewaySettings s;
    s.router = r;
    GatewayFixture f{s};
    auto id = f.connect("user:u1:d1");
    REQUIRE(f.say(id, R"({"type":"subscribe","topic":"news"})")[0]["type"] == "ack");

    SECTION("no topic set: the audience's topic is filled in") {
        f.gw->publish(Envelope{"headline"}.data("hi"), Audience::topic("news"));
        auto got = f.frames(id);
        REQUIRE(got.size() == 1);
        CHECK(got[0]["topic"] == "news");
        CHECK(got[0]["data"] == "hi");
    }
    SECTION("an explicit topic wins") {
        f.gw->publish(Envelope{"headline"}.topic("news:eu"), Audience::topic("news"));
        auto got = f.frames(id);
        REQUIRE(got.size() == 1);
        CHECK(got[0]["topic"] == "news:eu");
    }
    SECTION("a topic given as an extra field wins too") {
        f.gw->publish(Envelope{"headline"}.field("topic", "custom"), Audience::topic("news"));
        auto got = f.frames(id);
        REQUIRE(got.size() == 1);
        CHECK(got[0]["topic"] == "custom");
    }
    SECTION("other audiences get no topic") {
        f.gw->publish(Envelope{"notice"}, Audience::user("u1"));
        auto got = f.frames(id);
        REQUIRE(got.size() == 1);
        CHECK_FALSE(got[0].contains("topic"));
    }
}

// Delivery guarantees on the in-memory store: stream positions, history, recovery on subscribe,
// device cursors, presence and request references.

#include "catch.hpp"
#include "gateway_fixture.hpp"

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

using namespace wsgate;
using namespace std::chrono_literals;
using wsgate::test::GatewayFixture;
using nlohmann::json;

namespace {

GatewaySettings stream_settings(std::size_t history = 100) {
    GatewaySettings s;
    s.rate_per_second = 0;
    s.max_connections_per_user = 0;
    TopicRule feed{"feed:*", "read", "post"};
    feed.history_size = history;
    feed.device_cursors = true;
    feed.presence = true;
    feed.presence_events = true;
    TopicRule plain{"plain:*", "read", "post"};
    s.router.topic_rules = {feed, plain};
    return s;
}

std::vector<json> of_type(const std::vector<json>& frames, const std::string& type) {
    std::vector<json> out;
    for (const auto& f : frames)
        if (f.value("type", "") == type) out.push_back(f);
    return out;
}

std::string since(std::uint64_t offset, const std::string& epoch) {
    return json{{"offset", offset}, {"epoch", epoch}}.dump();
}

Principal reader(std::string user = "u", std::string device = "") {
    Principal p;
    p.kind = PrincipalKind::user;
    p.user_id = std::move(user);
    p.device_id = std::move(device);
    p.permissions = {"read"};
    return p;
}

void publish_n(GatewayFixture& f, const std::string& topic, int n, int first = 0) {
    for (int i = 0; i < n; ++i) f.gw->publish(Envelope{"tick"}.data(first + i), Audience::topic(topic));
}

}  // namespace

TEST_CASE("stream topics give every publish the next offset within one epoch; plain topics none",
          "[delivery][positions]") {
    GatewayFixture f{stream_settings()};
    auto c = f.connect("user:u1:d1:read");
    f.say(c, R"({"type":"subscribe","topic":"feed:1"})");
    f.say(c, R"({"type":"subscribe","topic":"plain:1"})");
    auto r1 = f.gw->publish(Envelope{"tick"}.data(1), Audience::topic("feed:1"));
    auto r2 = f.gw->publish(Envelope{"tick"}.data(2).position(99, "forged"), Audience::topic("feed:1"));
    auto r3 = f.gw->publish(Envelope{"tick"}.data(3), Audience::topic("plain:1"));
    CHECK(r1.offset == 1);
    CHECK(r2.offset == 2);
    CHECK(r3.offset == 0);
    auto frames = f.frames(c);
    REQUIRE(frames.size() == 3);
    CHECK(frames[0]["offset"] == 1);
    CHECK(frames[1]["offset"] == 2);  // the host's own position is replaced by the store's
    CHECK(frames[0]["epoch"].is_string());
    CHECK(frames[0]["epoch"] == frames[1]["epoch"]);
    CHECK(frames[1]["epoch"] != "forged");
    CHECK(frames[0]["topic"] == "feed:1");
    CHECK_FALSE(frames[2].contains("offset"));
    CHECK_FALSE(frames[2].contains("epoch"));
    // Another topic has its own offsets.
    CHECK(f.gw->publish(Envelope{"tick"}, Audience::topic("feed:2")).offset == 1);
}

TEST_CASE("a subscribe with the ack's position gets every missed publication once, in order, then live",
          "[delivery][recovery]") {
    GatewayFixture f{stream_settings(1000)};
    auto a = f.connect("user:u1:d1:read");
    auto ack = f.say(a, R"({"type":"subscribe","topic":"feed:1"})");
    REQUIRE(ack.size() == 1);
    CHECK(ack[0]["position"]["offset"] == 0);
    publish_n(f, "feed:1", 3);
    auto got = f.frames(a);
    REQUIRE(got.size() == 3);
    const std::string epoch = got.back()["epoch"];
    const std::uint64_t last = got.back()["offset"];
    f.gw->on_disconnect(a);

    publish_n(f, "feed:1", 500, 100);
    auto b = f.connect("user:u1:d1:read");
    auto frames = f.say(b, R"({"type":"subscribe","topic":"feed:1","since":)" + since(last, epoch) + "}");
    REQUIRE(frames.size() == 501);
    CHECK(frames[0]["type"] == "ack");
    CHECK(frames[0]["recovered"] == true);
    CHECK(frames[0]["missed"] == 500);
    CHECK(frames[0]["resumedFrom"] == "since");
    CHECK(frames[0]["position"]["offset"] == 503);
    CHECK_FALSE(frames[0].contains("reason"));
    for (std::size_t i = 1; i < frames.size(); ++i) {
        CHECK(frames[i]["offset"] == last + i);
        CHECK(frames[i]["data"] == 100 + static_cast<int>(i) - 1);
        CHECK(frames[i]["epoch"] == epoch);
    }
    f.gw->publish(Envelope{"tick"}.data(-1), Audience::topic("feed:1"));
    auto live = f.frames(b);
    REQUIRE(live.size() == 1);
    CHECK(live[0]["offset"] == 504);

    // Up to date: recovered, nothing to replay.
    auto c = f.connect("user:u1:d1:read");
    auto up = f.say(c, R"({"type":"subscribe","topic":"feed:1","since":)" + since(504, epoch) + "}");
    REQUIRE(up.size() == 1);
    CHECK(up[0]["recovered"] == true);
    CHECK(up[0]["missed"] == 0);
    CHECK(f.gw->metrics().replayed == 500);
    CHECK(f.gw->metrics().recoveries == 2);
}

TEST_CASE("a client that saw a stream before its first publication recovers all of it", "[delivery][recovery]") {
    GatewayFixture f{stream_settings()};
    auto a = f.connect("user:u1:d1:read");
    auto ack = f.say(a, R"({"type":"subscribe","topic":"feed:new"})");
    REQUIRE(ack.size() == 1);
    CHECK(ack[0]["position"] == json{{"offset", 0}, {"epoch", ""}});
    f.gw->on_disconnect(a);
    publish_n(f, "feed:new", 3);
    auto b = f.connect("user:u1:d1:read");
    auto frames = f.say(b, R"({"type":"subscribe","topic":"feed:new","since":{"offset":0,"epoch":""}})");
    REQUIRE(frames.size() == 4);
    CHECK(frames[0]["recovered"] == true);
    CHECK(frames[0]["missed"] == 3);
    CHECK(frames[3]["offset"] == 3);
    // An empty epoch names only that starting point.
    auto c = f.connect("user:u1:d1:read");
    CHECK(f.say(c, R"({"type":"subscribe","topic":"feed:new","since":{"offset":2,"epoch":""}})")[0]["status"] == 400);
    // Acknowledging offset 0 writes no cursor.
    CHECK(f.say(c, R"({"type":"ack","topic":"feed:other","offset":0})")[0]["type"] == "ack");
    CHECK_FALSE(f.store->load_cursor(Gateway::device_key(reader("u1", "d1")), "feed:other", f.clock->now()));
}

TEST_CASE("a position that cannot be resumed says why and replays nothing", "[delivery][recovery]") {
    auto s = stream_settings(10);
    s.router.topic_rules[0].history_ttl = 1min;
    GatewayFixture f{s};
    publish_n(f, "feed:1", 50);
    const std::string epoch = f.gw->history(reader(), "feed:1", 1).position.epoch;
    REQUIRE_FALSE(epoch.empty());
    auto check = [&](const std::string& since_json, const std::string& reason) {
        auto c = f.connect("user:u1:d1:read");
        auto frames = f.say(c, R"({"type":"subscribe","topic":"feed:1","since":)" + since_json + "}");
        REQUIRE(frames.size() == 1);
        CHECK(frames[0]["type"] == "ack");
        CHECK(frames[0]["recovered"] == false);
        CHECK(frames[0]["reason"] == reason);
        CHECK(frames[0]["missed"] == 0);
        CHECK(frames[0]["position"]["offset"] == 50);
        CHECK(frames[0]["position"]["epoch"] == epoch);
        // Still subscribed: live publications arrive.
        f.gw->publish(Envelope{"tick"}, Audience::topic("feed:1"));
        CHECK(f.frames(c).size() == 1);
        f.gw->on_disconnect(c);
    };
    SECTION("another epoch") { check(since(45, "an-old-epoch"), "epoch_changed"); }
    SECTION("pushed out of the history by count") { check(since(30, epoch), "too_old"); }
    SECTION("ahead of the stream") { check(since(51, epoch), "unknown_position"); }
    SECTION("aged out of the history") {
        f.clock->advance(2min);
        check(since(45, epoch), "too_old");
    }
    SECTION("the last kept one is still enough") {
        auto c = f.connect("user:u1:d1:read");
        auto frames = f.say(c, R"({"type":"subscribe","topic":"feed:1","since":)" + since(40, epoch) + "}");
        REQUIRE(frames.size() == 11);
        CHECK(frames[0]["recovered"] == true);
        CHECK(frames[1]["offset"] == 41);
        CHECK(frames[10]["offset"] == 50);
    }
}

TEST_CASE("a malformed 'since' is a 400 and subscribes nothing", "[delivery][recovery][negative]") {
    GatewayFixture f{stream_settings()};
    auto c = f.connect("user:u1:d1:read");
    for (const std::string bad : {R"("5")", R"({"offset":-1,"epoch":"e"})", R"({"offset":1})", R"({"offset":1,"epoch":""})",
                                  R"({"offset":1.5,"epoch":"e"})", R"({"offset":1,"epoch":7})", "[1]"}) {
        INFO(bad);
        auto frames = f.say(c, R"({"type":"subscribe","topic":"feed:1","since":)" + bad + "}");
        REQUIRE(frames.size() == 1);
        CHECK(frames[0]["type"] == "error");
        CHECK(frames[0]["status"] == 400);
    }
    CHECK(f.store->topics_of(c).empty());
    // A reader without permission learns nothing about the stream.
    auto d = f.connect("user:u2:d2:other");
    auto denied = f.say(d, R"({"type":"subscribe","topic":"feed:1","since":{"offset":0,"epoch":"e"}})");
    REQUIRE(denied.size() == 1);
    CHECK(denied[0]["status"] == 403);
    CHECK_FALSE(denied[0].contains("position"));
}

TEST_CASE("history returns the last N publications as subscribers got them", "[delivery][history]") {
    GatewayFixture f{stream_settings(5)};
    publish_n(f, "feed:1", 8);
    auto c = f.connect("user:u1:d1:read");
    auto h = f.say(c, R"({"type":"history","topic":"feed:1","limit":3})");
    REQUIRE(h.size() == 1);
    CHECK(h[0]["type"] == "history");
    CHECK(h[0]["topic"] == "feed:1");
    CHECK(h[0]["position"]["offset"] == 8);
    REQUIRE(h[0]["publications"].size() == 3);
    CHECK(h[0]["publications"][0]["offset"] == 6);
    CHECK(h[0]["publications"][2]["offset"] == 8);
    CHECK(h[0]["publications"][2]["data"] == 7);
    CHECK(h[0]["publications"][2]["epoch"] == h[0]["position"]["epoch"]);
    // Without a limit: the whole kept history (history_size).
    auto all = f.say(c, R"({"type":"history","topic":"feed:1"})");
    CHECK(all[0]["publications"].size() == 5);
    auto huge = f.say(c, R"({"type":"history","topic":"feed:1","limit":100000})");
    CHECK(huge[0]["publications"].size() == 5);

    CHECK(f.say(c, R"({"type":"history","topic":"plain:1"})")[0]["status"] == 400);
    CHECK(f.say(c, R"({"type":"history","topic":"feed:1","limit":0})")[0]["status"] == 400);
    CHECK(f.say(c, R"({"type":"history","topic":"feed:1","limit":"3"})")[0]["status"] == 400);
    auto other = f.connect("user:u2:d2:other");
    CHECK(f.say(other, R"({"type":"history","topic":"feed:1"})")[0]["status"] == 403);
}

TEST_CASE("device cursors: a device resumes from its last acknowledged position", "[delivery][cursor]") {
    GatewayFixture f{stream_settings(1000)};
    auto a = f.connect("user:u1:phone:read");
    f.say(a, R"({"type":"subscribe","topic":"feed:1"})");
    publish_n(f, "feed:1", 10);
    auto got = f.frames(a);
    REQUIRE(got.size() == 10);
    auto ok = f.say(a, R"({"type":"ack","topic":"feed:1","offset":4})");
    REQUIRE(ok.size() == 1);
    CHECK(ok[0]["type"] == "ack");
    CHECK(ok[0]["action"] == "ack");
    CHECK(ok[0]["offset"] == 4);
    // Cumulative: an older acknowledgement does not move it back.
    f.say(a, R"({"type":"ack","topic":"feed:1","offset":2})");
    f.gw->on_disconnect(a);
    publish_n(f, "feed:1", 5, 10);

    // The device lost its own state: a subscribe without `since` resumes from the cursor, so
    // the 6 unacknowledged deliveries and the 5 missed ones arrive.
    auto b = f.connect("user:u1:phone:read");
    auto frames = f.say(b, R"({"type":"subscribe","topic":"feed:1"})");
    REQUIRE(frames.size() == 12);
    CHECK(frames[0]["recovered"] == true);
    CHECK(frames[0]["resumedFrom"] == "cursor");
    CHECK(frames[0]["missed"] == 11);
    CHECK(frames[1]["offset"] == 5);
    CHECK(frames[11]["offset"] == 15);

    // Another device of the same user has no cursor: it starts live.
    auto tablet = f.connect("user:u1:tablet:read");
    auto fresh = f.say(tablet, R"({"type":"subscribe","topic":"feed:1"})");
    REQUIRE(fresh.size() == 1);
    CHECK_FALSE(fresh[0].contains("recovered"));
}

TEST_CASE("acknowledgements are refused where no cursor can be kept", "[delivery][cursor][negative]") {
    GatewayFixture f{stream_settings()};
    publish_n(f, "feed:1", 3);
    auto c = f.connect("user:u1:phone:read");
    auto status = [&](const ConnectionId& id, const std::string& msg) {
        auto frames = f.say(id, msg);
        REQUIRE(frames.size() == 1);
        return frames[0].value("status", 200);
    };
    CHECK(status(c, R"({"type":"ack","topic":"feed:1","offset":4})") == 400);                  // ahead
    CHECK(status(c, R"({"type":"ack","topic":"feed:1","offset":2,"epoch":"other"})") == 400);  // another epoch
    CHECK(status(c, R"({"type":"ack","topic":"feed:1","offset":-2})") == 400);
    CHECK(status(c, R"({"type":"ack","topic":"feed:1"})") == 400);
    CHECK(status(c, R"({"type":"ack","topic":"plain:1","offset":0})") == 400);  // no cursors there
    auto nodevice = f.connect("user:u2::read");
    CHECK(status(nodevice, R"({"type":"ack","topic":"feed:1","offset":1})") == 400);
    auto other = f.connect("user:u3:d3:other");
    CHECK(status(other, R"({"type":"ack","topic":"feed:1","offset":1})") == 403);
    CHECK_FALSE(f.store->load_cursor(Gateway::device_key(reader("u1", "phone")),
                                     "feed:1", f.clock->now()));
    CHECK(status(c, R"({"type":"ack","topic":"feed:1","offset":3})") == 200);
}

TEST_CASE("presence lists a topic's members; join and leave reach the others", "[delivery][presence]") {
    GatewayFixture f{stream_settings()};
    auto a = f.connect("user:alice:phone:read");
    auto a2 = f.connect("user:alice:laptop:read");
    auto b = f.connect("user:bob:phone:read");
    f.say(a, R"({"type":"subscribe","topic":"feed:1"})");
    auto joined = f.say(b, R"({"type":"subscribe","topic":"feed:1"})");
    CHECK(of_type(joined, "join").empty());  // not told about itself
    auto seen = of_type(f.frames(a), "join");
    REQUIRE(seen.size() == 1);
    CHECK(seen[0]["topic"] == "feed:1");
    CHECK(seen[0]["member"]["userId"] == "bob");
    CHECK(seen[0]["member"]["deviceId"] == "phone");
    CHECK_FALSE(seen[0].contains("offset"));  // not a publication of the stream
    f.say(a2, R"({"type":"subscribe","topic":"feed:1"})");
    f.frames(a);
    f.frames(b);

    auto p = f.say(b, R"({"type":"presence","topic":"feed:1"})");
    REQUIRE(p.size() == 1);
    CHECK(p[0]["type"] == "presence");
    CHECK(p[0]["connections"] == 3);
    CHECK(p[0]["users"] == 2);
    REQUIRE(p[0]["members"].size() == 3);
    CHECK(p[0]["members"][0]["userId"] == "alice");

    f.gw->on_disconnect(b);
    auto left = of_type(f.frames(a), "leave");
    REQUIRE(left.size() == 1);
    CHECK(left[0]["member"]["userId"] == "bob");
    f.say(a2, R"({"type":"unsubscribe","topic":"feed:1"})");
    auto laptop_left = of_type(f.frames(a), "leave");
    REQUIRE(laptop_left.size() == 1);
    CHECK(laptop_left[0]["member"]["deviceId"] == "laptop");
    CHECK(f.gw->presence(reader("x"), "feed:1").connections == 1);

    CHECK(f.say(a, R"({"type":"presence","topic":"plain:1"})")[0]["status"] == 400);
    auto other = f.connect("user:eve:d:other");
    CHECK(f.say(other, R"({"type":"presence","topic":"feed:1"})")[0]["status"] == 403);
}

TEST_CASE("every reply to a message echoes its ref", "[delivery][ref]") {
    GatewayFixture f{stream_settings()};
    f.gw->router().on("echo", [](MessageContext& ctx) { ctx.reply(Envelope{"echoed"}); });
    auto c = f.connect("user:u1:d1:read,post");
    auto reply_to = [&](const std::string& msg) {
        auto frames = f.say(c, msg);
        REQUIRE_FALSE(frames.empty());
        return frames[0];
    };
    CHECK(reply_to(R"({"type":"ping","ref":1})")["ref"] == 1);
    CHECK(reply_to(R"({"type":"subscribe","topic":"feed:1","ref":"s1"})")["ref"] == "s1");
    CHECK(reply_to(R"({"type":"subscribe","topic":"secret","ref":"s2"})")["ref"] == "s2");  // 403
    CHECK(reply_to(R"({"type":"unsubscribe","topic":"feed:1","ref":3})")["ref"] == 3);
    CHECK(reply_to(R"({"type":"publish","topic":"feed:1","ref":4})")["ref"] == 4);
    CHECK(reply_to(R"({"type":"history","topic":"feed:1","ref":5})")["ref"] == 5);
    CHECK(reply_to(R"({"type":"presence","topic":"feed:1","ref":6})")["ref"] == 6);
    CHECK(reply_to(R"({"type":"ack","topic":"feed:1","offset":1,"ref":7})")["ref"] == 7);
    CHECK(reply_to(R"({"type":"echo","ref":"h"})")["ref"] == "h");
    CHECK(reply_to(R"({"type":"whatever","ref":8})")["ref"] == 8);  // unknown-route ack
    CHECK(reply_to(R"({"route":"no type","ref":9})")["ref"] == 9);  // missing route error
    CHECK(reply_to(R"({"type":"refresh","ref":10})")["ref"] == 10);  // 400: no token
    // Without a ref nothing is echoed.
    CHECK_FALSE(reply_to(R"({"type":"ping"})").contains("ref"));

    const std::vector<std::string> bad_refs{R"({"a":1})", R"([1])", "1.5", "true", "\"\"", "\"" + std::string(65, 'x') + "\""};
    for (const auto& bad : bad_refs) {
        INFO(bad);
        auto e = reply_to(R"({"type":"ping","ref":)" + bad + "}");
        CHECK(e["type"] == "error");
        CHECK(e["status"] == 400);
        CHECK_FALSE(e.contains("ref"));
    }
    CHECK(reply_to(R"({"type":"ping","ref":")" + std::string(64, 'x') + R"("})")["type"] == "pong");
}

TEST_CASE("clients may not publish the server's presence and history events", "[delivery][negative]") {
    GatewayFixture f{stream_settings()};
    auto c = f.connect("user:u1:d1:read,post");
    for (const std::string ev : {"join", "leave", "history", "presence"}) {
        INFO(ev);
        auto frames = f.say(c, R"({"type":"publish","topic":"feed:1","event":")" + ev + R"("})");
        REQUIRE(frames.size() == 1);
        CHECK(frames[0]["status"] == 400);
    }
}

namespace {
// A store that keeps records and subscriptions but no streams (a custom backend without them).
class StreamlessStore final : public ConnectionStore {
public:
    void put(const ConnectionRecord& r) override { inner.put(r); }
    std::optional<ConnectionRecord> get(const ConnectionId& id) override { return inner.get(id); }
    bool remove(const ConnectionId& id) override { return inner.remove(id); }
    bool touch(const ConnectionId& id, TimePoint now, std::optional<TimePoint> e) override { return inner.touch(id, now, e); }
    bool subscribe(const ConnectionId& id, const std::string& t) override { return inner.subscribe(id, t); }
    SubscribeResult subscribe_capped(const ConnectionId& id, const std::string& t, std::size_t m) override {
        return inner.subscribe_capped(id, t, m);
    }
    bool unsubscribe(const ConnectionId& id, const std::string& t) override { return inner.unsubscribe(id, t); }
    std::vector<std::string> topics_of(const ConnectionId& id) override { return inner.topics_of(id); }
    std::vector<ConnectionId> subscribers(const std::string& t) override { return inner.subscribers(t); }
    std::vector<ConnectionId> connections_of_user(const std::string& u) override { return inner.connections_of_user(u); }
    ScanPage scan(const std::string& c, std::size_t l) override { return inner.scan(c, l); }
    std::vector<ConnectionRecord> expire(TimePoint now) override { return inner.expire(now); }
    std::size_t count() override { return inner.count(); }
    InMemoryConnectionStore inner;
};
}  // namespace

TEST_CASE("rules that need streams are refused at construction with the rule named", "[delivery][negative]") {
    auto transport = std::make_shared<InMemoryTransport>();
    auto auth = std::make_shared<AnonymousAuthorizer>();
    auto make = [&](TopicRule r, std::shared_ptr<ConnectionStore> store) {
        GatewaySettings s;
        s.router.topic_rules = {std::move(r)};
        Gateway gw{s, std::move(store), transport, auth};
    };
    auto memory = [] { return std::make_shared<InMemoryConnectionStore>(); };
    TopicRule cursors{"t", "r", ""};
    cursors.device_cursors = true;
    CHECK_THROWS_WITH(make(cursors, memory()), Catch::Contains("'t'") && Catch::Contains("device_cursors"));
    TopicRule events{"t", "r", ""};
    events.presence_events = true;
    CHECK_THROWS_AS(make(events, memory()), std::invalid_argument);
    TopicRule negative{"t", "r", ""};
    negative.history_size = 1;
    negative.history_ttl = -1s;
    CHECK_THROWS_AS(make(negative, memory()), std::invalid_argument);
    TopicRule history{"t", "r", ""};
    history.history_size = 10;
    CHECK_THROWS_WITH(make(history, std::make_shared<StreamlessStore>()), Catch::Contains("topic streams"));
    CHECK_NOTHROW(make(history, memory()));
    // Plain rules work with any store, and the store's defaults refuse streams clearly.
    CHECK_NOTHROW(make(TopicRule{"t", "r", ""}, std::make_shared<StreamlessStore>()));
    StreamlessStore bare;
    CHECK_THROWS_AS(bare.append("t", "{}", TimePoint{}, {}), StoreError);
}

TEST_CASE("with_position splices the position into the body", "[delivery][positions]") {
    CHECK(with_position(R"({"type":"x"})", {7, "ep"}) == R"({"type":"x","offset":7,"epoch":"ep"})");
    CHECK(with_position("{}", {1, "e\"q"}) == R"({"offset":1,"epoch":"e\"q"})");
    CHECK(json::parse(with_position(R"({"a":[1,{"b":"}"}]})", {2, "e"}))["offset"] == 2);
    CHECK_THROWS_AS(with_position("[1]", {1, "e"}), std::invalid_argument);
    CHECK_THROWS_AS(with_position("", {1, "e"}), std::invalid_argument);
}

#include "catch.hpp"
#include "gateway_fixture.hpp"

#include <type_traits>

using namespace wsgate;
using wsgate::test::GatewayFixture;

namespace {
GatewaySettings with_router(RouterSettings r) {
    GatewaySettings s;
    s.router = std::move(r);
    return s;
}
}  // namespace

TEST_CASE("ping is answered with pong", "[router]") {
    GatewayFixture f;
    auto id = f.connect();
    auto out = f.say(id, R"({"type":"ping","timestamp":123})");
    REQUIRE(out.size() == 1);
    CHECK(out[0]["type"] == "pong");
    CHECK(out[0]["timestamp"].is_string());
}

TEST_CASE("unhappy messages get error envelopes and the connection survives", "[router][errors]") {
    RouterSettings r;
    r.unknown_route = UnknownRoutePolicy::error;
    GatewayFixture f{with_router(r)};
    auto id = f.connect();
    struct Case {
        const char* text;
        int status;
        protocol_errc code;
    };
    const Case cases[] = {
        {"not json", 400, protocol_errc::malformed_json},
        {"{\"type\":", 400, protocol_errc::malformed_json},
        {"", 400, protocol_errc::malformed_json},
        {"[1,2]", 400, protocol_errc::not_an_object},
        {"42", 400, protocol_errc::not_an_object},
        {"{}", 400, protocol_errc::missing_route},
        {R"({"type":7})", 400, protocol_errc::missing_route},
        {R"({"type":""})", 400, protocol_errc::missing_route},
        {R"({"type":null})", 400, protocol_errc::missing_route},
        {"{\"type\":\"\xff\xfe\"}", 400, protocol_errc::malformed_json},  // invalid UTF-8
    };
    for (const auto& c : cases) {
        INFO(c.text);
        CHECK(f.gw->on_message(id, c.text) == make_error_code(c.code));
        auto out = f.frames(id);
        REQUIRE(out.size() == 1);
        CHECK(out[0]["type"] == "error");
        CHECK(out[0]["status"] == c.status);
        CHECK(out[0]["error"].is_string());
    }
    // deeply nested input is refused before parsing
    std::string deep(10000, '[');
    CHECK(f.gw->on_message(id, R"({"type":"x","a":)" + deep) == make_error_code(protocol_errc::malformed_json));
    f.frames(id);
    // still alive and answering
    auto out = f.say(id, R"({"type":"ping"})");
    REQUIRE(out.size() == 1);
    CHECK(out[0]["type"] == "pong");
    CHECK(f.gw->metrics().bad_messages >= 10);
}

TEST_CASE("unknown routes follow the policy", "[router][unknown]") {
    SECTION("ack (seed 000)") {
        GatewayFixture f;
        auto id = f.connect();
        auto out = f.say(id, R"({"type":"whatever"})");
        REQUIRE(out.size() == 1);
        CHECK(out[0]["type"] == "ack");
        CHECK(out[0]["message"] == "Message received");
    }
    SECTION("error 400 (seed 003)") {
        RouterSettings r;
        r.unknown_route = UnknownRoutePolicy::error;
        GatewayFixture f{with_router(r)};
        auto id = f.connect();
        CHECK(f.gw->on_message(id, R"({"type":"whatever"})") == std::error_code{});
        auto out = f.frames(id);
        REQUIRE(out.size() == 1);
        CHECK(out[0]["type"] == "error");
        CHECK(out[0]["status"] == 400);
        // the echoed route is truncated
        f.gw->on_message(id, R"({"type":")" + std::string(5000, 'x') + "\"}");
        auto long_out = f.frames(id);
        REQUIRE(long_out.size() == 1);
        CHECK(long_out[0]["error"].get<std::string>().size() < 200);
    }
}

TEST_CASE("anything else is acknowledged under the ack policy: no route key, arrays, scalars", "[router][unknown]") {
    GatewayFixture f;  // UnknownRoutePolicy::ack is the default
    auto id = f.connect();
    const auto bad_before = f.gw->metrics().bad_messages.load();
    for (const char* text : {"{}", R"({"hello":"world"})", R"({"type":7})", R"({"type":""})", R"({"type":null})",
                             "[1,2]", "[]", "42", R"("text")", "true", "null"}) {
        INFO(text);
        CHECK(f.gw->on_message(id, text) == std::error_code{});
        auto out = f.frames(id);
        REQUIRE(out.size() == 1);
        CHECK(out[0]["type"] == "ack");
        CHECK(out[0]["message"] == "Message received");
        CHECK_FALSE(out[0].contains("ref"));
    }
    // an object without a route still has its ref echoed
    auto out = f.say(id, R"({"ref":"r1","payload":1})");
    REQUIRE(out.size() == 1);
    CHECK(out[0]["type"] == "ack");
    CHECK(out[0]["ref"] == "r1");
    CHECK(f.gw->metrics().bad_messages == bad_before);

    // what is not JSON, or carries a bad ref, is still an error
    const std::pair<const char*, protocol_errc> errors[] = {
        {"not json", protocol_errc::malformed_json},
        {"", protocol_errc::malformed_json},
        {R"({"ref":{"x":1}})", protocol_errc::invalid_ref},
    };
    for (const auto& [text, code] : errors) {
        INFO(text);
        CHECK(f.gw->on_message(id, text) == make_error_code(code));
        auto err = f.frames(id);
        REQUIRE(err.size() == 1);
        CHECK(err[0]["type"] == "error");
        CHECK(err[0]["status"] == 400);
    }
    CHECK(f.gw->on_message(id, "[" + std::string(10000, '[')) == make_error_code(protocol_errc::malformed_json));
    CHECK(f.frames(id).at(0)["type"] == "error");

    SECTION("with a route key other than type") {
        RouterSettings r;
        r.route_key = "action";
        GatewayFixture g{with_router(r)};
        auto c = g.connect();
        for (const char* text : {R"({"type":"sendMessage"})", "[1]", "3.5"}) {
            INFO(text);
            auto acked = g.say(c, text);
            REQUIRE(acked.size() == 1);
            CHECK(acked[0]["type"] == "ack");
        }
    }
}

TEST_CASE("ping gets pong whatever the route key and the unknown-route policy", "[router][route_key]") {
    for (const char* key : {"type", "action", "/meta/kind"}) {
        for (auto policy : {UnknownRoutePolicy::ack, UnknownRoutePolicy::error}) {
            INFO(key << " policy " << static_cast<int>(policy));
            RouterSettings r;
            r.route_key = key;
            r.unknown_route = policy;
            GatewayFixture f{with_router(r)};
            auto id = f.connect();
            auto out = f.say(id, R"({"type":"ping","ref":7})");
            REQUIRE(out.size() == 1);
            CHECK(out[0]["type"] == "pong");
            CHECK(out[0]["ref"] == 7);
            // type ping wins over the configured key (the heartbeat is never routed elsewhere)
            out = f.say(id, R"({"type":"ping","action":"sendMessage","meta":{"kind":"x"}})");
            REQUIRE(out.size() == 1);
            CHECK(out[0]["type"] == "pong");
            // anonymous connections are answered too
            auto anon = f.connect("anon");
            out = f.say(anon, R"({"type":"ping"})");
            REQUIRE(out.size() == 1);
            CHECK(out[0]["type"] == "pong");
        }
    }
    SECTION("a host ping handler still replaces the built-in") {
        RouterSettings r;
        r.route_key = "action";
        GatewayFixture f{with_router(r)};
        f.gw->router().on("ping", [](MessageContext& ctx) { ctx.ack({{"mine", true}}); });
        auto id = f.connect("user:u1");
        auto out = f.say(id, R"({"type":"ping"})");
        REQUIRE(out.size() == 1);
        CHECK(out[0]["mine"] == true);
    }
}

TEST_CASE("route key: action field and JSON pointer", "[router][route_key]") {
    SECTION("action (seed 001)") {
        RouterSettings r;
        r.route_key = "action";
        GatewayFixture f{with_router(r)};
        auto id = f.connect();
        auto out = f.say(id, R"({"action":"ping"})");
        REQUIRE(out.size() == 1);
        CHECK(out[0]["type"] == "pong");
        // the client heartbeat is answered whatever the route key
        out = f.say(id, R"({"type":"ping","ref":"hb"})");
        REQUIRE(out.size() == 1);
        CHECK(out[0]["type"] == "pong");
        CHECK(out[0]["ref"] == "hb");
    }
    SECTION("JSON pointer") {
        RouterSettings r;
        r.route_key = "/meta/kind";
        r.unknown_route = UnknownRoutePolicy::error;
        GatewayFixture f{with_router(r)};
        auto id = f.connect();
        auto out = f.say(id, R"({"meta":{"kind":"ping"}})");
        REQUIRE(out.size() == 1);
        CHECK(out[0]["type"] == "pong");
        out = f.say(id, R"({"meta":"flat"})");
        REQUIRE(out.size() == 1);
        CHECK(out[0]["status"] == 400);
    }
    SECTION("a bad pointer is a construction error") {
        RouterSettings r;
        r.route_key = "/a/~2";
        CHECK_THROWS_AS(EventRouter{r}, std::invalid_argument);
        r.route_key = "";
        CHECK_THROWS_AS(EventRouter{r}, std::invalid_argument);
    }
}

TEST_CASE("host handlers by route and by action; a throwing handler is contained", "[router][handlers]") {
    GatewayFixture f;
    int calls = 0;
    f.gw->router().on("get_leaderboard", [&](MessageContext& ctx) {
        ++calls;
        ctx.reply(Envelope{"leaderboard"}.data({{"gameId", ctx.message().value("gameId", "")}}));
    });
    f.gw->router().on("timer", "update", [&](MessageContext& ctx) { ctx.ack({{"action", "update"}}); });
    f.gw->router().on("timer", "stop", [&](MessageContext&) { throw std::runtime_error("boom"); });
    auto id = f.connect("user:u1:phone");
    auto other = f.connect("user:u2:phone");

    auto out = f.say(id, R"({"type":"get_leaderboard","gameId":"g1"})");
    REQUIRE(out.size() == 1);
    CHECK(out[0]["type"] == "leaderboard");
    CHECK(out[0]["data"]["gameId"] == "g1");
    CHECK(calls == 1);

    out = f.say(id, R"({"type":"timer","action":"update"})");
    REQUIRE(out.size() == 1);
    CHECK(out[0]["type"] == "ack");

    out = f.say(id, R"({"type":"timer","action":"launch"})");
    REQUIRE(out.size() == 1);
    CHECK(out[0]["status"] == 400);
    out = f.say(id, R"({"type":"timer"})");
    REQUIRE(out.size() == 1);
    CHECK(out[0]["status"] == 400);

    CHECK(f.gw->on_message(id, R"({"type":"timer","action":"stop"})") == make_error_code(protocol_errc::handler_failed));
    out = f.frames(id);
    REQUIRE(out.size() == 1);
    CHECK(out[0]["status"] == 500);
    CHECK(f.gw->metrics().handler_errors == 1);
    // others unaffected
    out = f.say(other, R"({"type":"ping"})");
    REQUIRE(out.size() == 1);
    CHECK(out[0]["type"] == "pong");
}

TEST_CASE("subscribe and unsubscribe, with topic validation", "[router][subscribe]") {
    RouterSettings r;
    r.open_topics = true;  // users may read topics no rule covers
    GatewayFixture f{with_router(r)};
    auto id = f.connect("user:u1:d1");
    auto out = f.say(id, R"({"type":"subscribe","topic":"game:42"})");
    REQUIRE(out.size() == 1);
    CHECK(out[0]["type"] == "ack");
    CHECK(out[0]["action"] == "subscribe");
    CHECK(out[0]["topic"] == "game:42");
    CHECK(f.store->subscribers("game:42") == std::vector<ConnectionId>{id});

    for (auto bad : {R"({"type":"subscribe"})", R"({"type":"subscribe","topic":5})", R"({"type":"subscribe","topic":""})",
                     "{\"type\":\"subscribe\",\"topic\":\"a\\u0001b\"}"}) {
        INFO(bad);
        out = f.say(id, bad);
        REQUIRE(out.size() == 1);
        CHECK(out[0]["status"] == 400);
    }
    out = f.say(id, R"({"type":"subscribe","topic":")" + std::string(300, 't') + "\"}");
    REQUIRE(out.size() == 1);
    CHECK(out[0]["status"] == 400);

    out = f.say(id, R"({"type":"unsubscribe","topic":"game:42"})");
    REQUIRE(out.size() == 1);
    CHECK(out[0]["type"] == "ack");
    CHECK(out[0]["wasSubscribed"] == true);
    CHECK(f.store->subscribers("game:42").empty());
}

TEST_CASE("subscriptions per connection are capped", "[router][limits]") {
    RouterSettings r;
    r.max_subscriptions = 2;
    r.open_topics = true;
    GatewayFixture f{with_router(r)};
    auto id = f.connect("user:u1:d1");
    CHECK(f.say(id, R"({"type":"subscribe","topic":"a"})")[0]["type"] == "ack");
    CHECK(f.say(id, R"({"type":"subscribe","topic":"b"})")[0]["type"] == "ack");
    CHECK(f.say(id, R"({"type":"subscribe","topic":"a"})")[0]["type"] == "ack");  // already held
    auto out = f.say(id, R"({"type":"subscribe","topic":"c"})");
    CHECK(out[0]["status"] == 429);
    CHECK(out[0]["error"] == "too many subscriptions");
    // The refused subscribe left nothing behind.
    CHECK(f.store->topics_of(id) == std::vector<std::string>{"a", "b"});
    CHECK(f.store->subscribers("c").empty());
    // Freeing a slot lets the next one in.
    CHECK(f.say(id, R"({"type":"unsubscribe","topic":"a"})")[0]["wasSubscribed"] == true);
    CHECK(f.say(id, R"({"type":"subscribe","topic":"c"})")[0]["type"] == "ack");
}

TEST_CASE("Gateway::subscribe applies the topic policy and the cap, and a refusal changes nothing", "[gateway][subscribe][security]") {
    RouterSettings r;
    r.max_subscriptions = 1;
    r.topic_rules = {{"scores:*", "read_scores", ""}, {"open:*", "", ""}};
    GatewayFixture f{with_router(r)};
    auto reader = f.connect("user:u1:d1:read_scores");
    auto stranger = f.connect("user:u2:d2");
    auto rec = *f.store->get(reader);
    auto other = *f.store->get(stranger);

    SECTION("a principal without the read permission is refused, with no subscription written") {
        auto res = f.gw->subscribe(other, "scores:1");
        CHECK_FALSE(res);
        CHECK(res.error == protocol_errc::forbidden);
        CHECK(status_of(res.error) == 403);
        CHECK(f.store->topics_of(stranger).empty());
        CHECK(f.store->subscribers("scores:1").empty());
    }
    SECTION("the cap refuses a second topic but not the one held") {
        auto first = f.gw->subscribe(rec, "scores:1");
        CHECK(first);
        CHECK(first.changed);
        auto again = f.gw->subscribe(rec, "scores:1");
        CHECK(again);
        CHECK_FALSE(again.changed);
        auto second = f.gw->subscribe(rec, "open:1");
        CHECK(second.error == protocol_errc::too_many_subscriptions);
        CHECK(status_of(second.error) == 429);
        CHECK(f.store->topics_of(reader) == std::vector<std::string>{"scores:1"});
        CHECK(f.store->subscribers("open:1").empty());
    }
    SECTION("a connection that is gone gets unknown_connection") {
        f.gw->on_disconnect(reader);
        CHECK(f.gw->subscribe(rec, "scores:1").error == protocol_errc::unknown_connection);
        CHECK(f.store->subscribers("scores:1").empty());
    }
    SECTION("unsubscribe reports whether there was a subscription") {
        REQUIRE(f.gw->subscribe(rec, "scores:1"));
        auto was = f.gw->unsubscribe(reader, "scores:1");
        CHECK(was);
        CHECK(was.changed);
        auto not_any_more = f.gw->unsubscribe(reader, "scores:1");
        CHECK(not_any_more);
        CHECK_FALSE(not_any_more.changed);
    }
    SECTION("drop_unreadable removes exactly the topics a narrower principal may not read") {
        RouterSettings wide;
        wide.max_subscriptions = 0;
        wide.topic_rules = r.topic_rules;
        GatewayFixture g{with_router(wide)};
        auto id = g.connect("user:u1:d1:read_scores");
        auto full = *g.store->get(id);
        REQUIRE(g.gw->subscribe(full, "scores:1"));
        REQUIRE(g.gw->subscribe(full, "open:1"));
        Principal narrower = full.principal;
        narrower.permissions.clear();
        CHECK(g.gw->drop_unreadable(id, narrower) == std::vector<std::string>{"scores:1"});
        CHECK(g.store->topics_of(id) == std::vector<std::string>{"open:1"});
        CHECK(g.gw->drop_unreadable(id, narrower).empty());
    }
}

TEST_CASE("the router is one concrete class the Gateway owns; hosts extend it with handlers", "[router]") {
    STATIC_REQUIRE(std::is_final_v<EventRouter>);
    STATIC_REQUIRE_FALSE(std::is_polymorphic_v<EventRouter>);
    // A host handler replaces a built-in route: here `subscribe` answers without subscribing.
    RouterSettings r;
    r.open_topics = true;
    GatewayFixture f{with_router(r)};
    f.gw->router().on("subscribe", [](MessageContext& ctx) { ctx.ack({{"custom", true}}); });
    auto id = f.connect("user:u1:d1");
    auto out = f.say(id, R"({"type":"subscribe","topic":"news"})");
    REQUIRE(out.size() == 1);
    CHECK(out[0]["custom"] == true);
    CHECK(f.store->topics_of(id).empty());
}

TEST_CASE("the Gateway owns the topic policy the router applies", "[gateway][permissions][security]") {
    RouterSettings r;
    r.topic_rules = {{"game:*", "play", "play"}, {"news", "", ""}, {"public:*", "read_public", "", true}};
    GatewayFixture f{with_router(r)};
    Principal player;
    player.kind = PrincipalKind::user;
    player.user_id = "u1";
    player.permissions = {"play"};
    Principal user = player;
    user.permissions.clear();
    Principal device;
    device.kind = PrincipalKind::public_device;
    device.permissions = {"play", "read_public"};
    Principal anonymous;
    anonymous.kind = PrincipalKind::anonymous;
    anonymous.permissions = {"read_public"};

    CHECK(f.gw->rule_for("game:7") == &f.gw->settings().router.topic_rules[0]);
    CHECK(f.gw->rule_for("elsewhere") == nullptr);
    CHECK(f.gw->read_permission("game:7") == "play");
    CHECK(f.gw->read_permission("elsewhere").empty());

    CHECK(f.gw->may_read(player, "game:7"));
    CHECK_FALSE(f.gw->may_read(user, "game:7"));
    CHECK(f.gw->may_read(user, "news"));
    CHECK_FALSE(f.gw->may_read(user, "elsewhere"));  // closed unless open_topics
    CHECK(f.gw->may_read(device, "game:7"));
    CHECK_FALSE(f.gw->may_read(device, "news"));      // a public device needs a named permission
    CHECK(f.gw->may_read(anonymous, "public:1"));
    CHECK_FALSE(f.gw->may_read(anonymous, "game:7"));

    CHECK(f.gw->may_publish(player, "game:7"));
    CHECK_FALSE(f.gw->may_publish(user, "game:7"));
    CHECK_FALSE(f.gw->may_publish(player, "news"));   // no publish permission: nobody
    CHECK_FALSE(f.gw->may_publish(device, "game:7"));  // public devices never act
    CHECK_FALSE(f.gw->may_publish(anonymous, "public:1"));
}

TEST_CASE("topic permission rules for subscribe and publish", "[router][permissions]") {
    RouterSettings r;
    r.topic_rules = {{"leaderboard:*", "read_leaderboard", "admin"}, {"events", "read_events", ""}};
    r.open_topics = true;
    GatewayFixture f{with_router(r)};
    auto kiosk = f.connect("public:kiosk-1:read_leaderboard");
    auto user = f.connect("user:u1:d1");
    auto admin = f.connect("user:boss:d9:admin,read_leaderboard");

    // public: may read what its permissions name, nothing else, and publish nothing
    CHECK(f.say(kiosk, R"({"type":"subscribe","topic":"leaderboard:42"})")[0]["type"] == "ack");
    CHECK(f.say(kiosk, R"({"type":"subscribe","topic":"events"})")[0]["status"] == 403);
    CHECK(f.say(kiosk, R"({"type":"subscribe","topic":"random"})")[0]["status"] == 403);
    CHECK(f.say(kiosk, R"({"type":"publish","topic":"leaderboard:42","data":1})")[0]["status"] == 403);

    // user without the permission
    CHECK(f.say(user, R"({"type":"subscribe","topic":"leaderboard:42"})")[0]["status"] == 403);
    CHECK(f.say(user, R"({"type":"subscribe","topic":"random"})")[0]["type"] == "ack");
    CHECK(f.say(user, R"({"type":"publish","topic":"leaderboard:42","data":1})")[0]["status"] == 403);

    // admin publishes; the kiosk (subscribed) receives, the publisher gets an ack, not an echo
    CHECK(f.say(admin, R"({"type":"subscribe","topic":"leaderboard:42"})")[0]["type"] == "ack");
    auto out = f.say(admin, R"({"type":"publish","topic":"leaderboard:42","event":"leaderboard_update","data":{"top":"ann"}})");
    REQUIRE(out.size() == 1);
    CHECK(out[0]["type"] == "ack");
    CHECK(out[0]["delivered"] == 1);
    auto got = f.frames(kiosk);
    REQUIRE(got.size() == 1);
    CHECK(got[0]["type"] == "leaderboard_update");
    CHECK(got[0]["topic"] == "leaderboard:42");
    CHECK(got[0]["data"]["top"] == "ann");

    // echo on request
    out = f.say(admin, R"({"type":"publish","topic":"leaderboard:42","echo":true,"data":2})");
    CHECK(out.size() == 2);
}

TEST_CASE("permission is checked per publish, not only at subscribe", "[router][permissions]") {
    RouterSettings r;
    r.topic_rules = {{"leaderboard:*", "read_leaderboard", ""}};
    GatewayFixture f{with_router(r)};
    auto kiosk = f.connect("public:kiosk-1:read_leaderboard");
    REQUIRE(f.say(kiosk, R"({"type":"subscribe","topic":"leaderboard:1"})")[0]["type"] == "ack");

    auto rep = f.gw->publish(Envelope{"leaderboard_update"}, Audience::topic("leaderboard:1"));
    CHECK(rep.delivered == 1);
    f.frames(kiosk);

    // The token is refreshed with fewer permissions: the next publish filters it out.
    Principal reduced = f.store->get(kiosk)->principal;
    reduced.permissions = {"read_events"};
    REQUIRE(f.gw->refresh_principal(kiosk, reduced));
    rep = f.gw->publish(Envelope{"leaderboard_update"}, Audience::topic("leaderboard:1"));
    CHECK(rep.delivered == 0);
    CHECK(rep.filtered == 1);
    CHECK(f.frames(kiosk).empty());
}

// ---- least privilege -------------------------------------------------------------------

TEST_CASE("a client publishes nowhere by default: no rule, or a rule without a publish permission", "[router][permissions][security]") {
    RouterSettings r;
    r.open_topics = true;
    r.topic_rules = {{"chat:*", "", ""}};
    GatewayFixture f{with_router(r)};
    auto reader = f.connect("user:u2:d2");
    auto writer = f.connect("user:u1:d1:*");  // even a principal holding every permission
    REQUIRE(f.say(reader, R"({"type":"subscribe","topic":"auction:7"})")[0]["type"] == "ack");
    REQUIRE(f.say(reader, R"({"type":"subscribe","topic":"chat:1"})")[0]["type"] == "ack");
    for (auto topic : {"auction:7", "chat:1"}) {
        INFO(topic);
        auto out = f.say(writer, std::string{R"({"type":"publish","topic":")"} + topic + R"(","event":"bid_placed"})");
        REQUIRE(out.size() == 1);
        CHECK(out[0]["type"] == "error");
        CHECK(out[0]["status"] == 403);
    }
    CHECK(f.frames(reader).empty());
    // the server itself publishes anywhere
    CHECK(f.gw->publish(Envelope{"bid_placed"}, Audience::topic("auction:7")).delivered == 1);
}

TEST_CASE("topics no rule covers are closed to subscribers unless the host opens them", "[router][permissions][security]") {
    GatewayFixture closed;
    auto u = closed.connect("user:u1:d1:*");
    CHECK(closed.say(u, R"({"type":"subscribe","topic":"private:bob"})")[0]["status"] == 403);
    RouterSettings r;
    r.open_topics = true;
    GatewayFixture open{with_router(r)};
    auto v = open.connect("user:u1:d1");
    CHECK(open.say(v, R"({"type":"subscribe","topic":"private:bob"})")[0]["type"] == "ack");
    auto kiosk = open.connect("public:k:*");
    CHECK(open.say(kiosk, R"({"type":"subscribe","topic":"private:bob"})")[0]["status"] == 403);
    auto anon = open.connect("anon");
    CHECK(open.say(anon, R"({"type":"subscribe","topic":"private:bob"})")[0]["status"] == 403);
}

TEST_CASE("a client may not publish the server's own event types", "[router][permissions][security]") {
    RouterSettings r;
    r.topic_rules = {{"room:*", "", "chat"}};
    r.reserved_event_types.push_back("leaderboard_update");
    GatewayFixture f{with_router(r)};
    auto reader = f.connect("user:u2:d2");
    auto writer = f.connect("user:u1:d1:chat");
    REQUIRE(f.say(reader, R"({"type":"subscribe","topic":"room:1"})")[0]["type"] == "ack");
    for (auto ev : {"ack", "error", "pong", "token_expiring", "unsubscribed", "leaderboard_update"}) {
        INFO(ev);
        auto out = f.say(writer, std::string{R"({"type":"publish","topic":"room:1","event":")"} + ev + R"("})");
        REQUIRE(out.size() == 1);
        CHECK(out[0]["status"] == 400);
    }
    CHECK(f.say(writer, R"({"type":"publish","topic":"room:1","event":")" + std::string(200, 'e') + "\"}")[0]["status"] == 400);
    CHECK(f.say(writer, "{\"type\":\"publish\",\"topic\":\"room:1\",\"event\":\"a\\u0007\"}")[0]["status"] == 400);
    CHECK(f.frames(reader).empty());
    CHECK(f.say(writer, R"({"type":"publish","topic":"room:1","event":"said"})")[0]["type"] == "ack");
    CHECK(f.frames(reader).size() == 1);
}

TEST_CASE("client publishes carry their sender; server publishes never do", "[router][security]") {
    RouterSettings r;
    r.topic_rules = {{"room:*", "", "chat"}};
    GatewayFixture f{with_router(r)};
    auto reader = f.connect("user:u2:d2");
    auto writer = f.connect("user:u1:phone:chat");
    REQUIRE(f.say(reader, R"({"type":"subscribe","topic":"room:1"})")[0]["type"] == "ack");
    // A client cannot forge the field: only "data" is copied from its message.
    REQUIRE(f.say(writer, R"({"type":"publish","topic":"room:1","event":"said","data":1,"from":{"userId":"admin"}})")[0]["type"] == "ack");
    auto got = f.frames(reader);
    REQUIRE(got.size() == 1);
    CHECK(got[0]["from"] == nlohmann::json{{"userId", "u1"}, {"deviceId", "phone"}});
    f.gw->publish(Envelope{"said"}.data(2), Audience::topic("room:1"));
    got = f.frames(reader);
    REQUIRE(got.size() == 1);
    CHECK_FALSE(got[0].contains("from"));

    RouterSettings named = r;
    named.sender.field = "sender";
    named.sender.device_id = false;
    named.sender.nickname = true;
    GatewayFixture g{with_router(named)};
    auto rd = g.connect("user:u2:d2");
    auto wr = g.connect("user:u1:phone:chat");
    REQUIRE(g.say(rd, R"({"type":"subscribe","topic":"room:1"})")[0]["type"] == "ack");
    REQUIRE(g.say(wr, R"({"type":"publish","topic":"room:1","data":1})")[0]["type"] == "ack");
    got = g.frames(rd);
    REQUIRE(got.size() == 1);
    CHECK(got[0]["sender"] == nlohmann::json{{"userId", "u1"}});
    RouterSettings bad = r;
    bad.sender.field = "type";
    CHECK_THROWS_AS(EventRouter{bad}, std::invalid_argument);
}

TEST_CASE("anonymous principals read only topics whose rule names them, and never act", "[router][anonymous][security]") {
    RouterSettings r;
    r.open_topics = true;
    r.topic_rules = {{"board:*", "", "", /*anonymous_read=*/true}, {"events:*", "read_events", "publish"}};
    GatewayFixture f{with_router(r)};
    int calls = 0;
    f.gw->router().on("get_board", [&](MessageContext& ctx) {
        ++calls;
        ctx.ack();
    });
    f.gw->router().on("whoami", [&](MessageContext& ctx) { ctx.ack(); }, RouteAccess::include_anonymous);
    auto anon = f.connect("anon");
    CHECK(f.say(anon, R"({"type":"subscribe","topic":"board:1"})")[0]["type"] == "ack");
    CHECK(f.say(anon, R"({"type":"subscribe","topic":"events:1"})")[0]["status"] == 403);   // rule does not name it
    CHECK(f.say(anon, R"({"type":"subscribe","topic":"anything"})")[0]["status"] == 403);   // open_topics is for users
    CHECK(f.say(anon, R"({"type":"publish","topic":"board:1","data":1})")[0]["status"] == 403);
    CHECK(f.say(anon, R"({"type":"get_board"})")[0]["status"] == 403);
    CHECK(calls == 0);
    CHECK(f.say(anon, R"({"type":"whoami"})")[0]["type"] == "ack");
    CHECK(f.say(anon, R"({"type":"ping"})")[0]["type"] == "pong");
    // and it receives what it subscribed to
    CHECK(f.gw->publish(Envelope{"moved"}, Audience::topic("board:1")).delivered == 1);
}

TEST_CASE("anonymous connections are capped per source IP", "[gateway][anonymous][limits][security]") {
    GatewaySettings s;
    s.max_anonymous_per_ip = 2;
    GatewayFixture f{s};
    auto connect_from = [&](const std::string& ip, const std::string& as = "anon") {
        ConnectRequest req;
        req.query["as"] = as;
        req.source_ip = ip;
        return f.gw->on_connect(req);
    };
    auto a = connect_from("10.0.0.1");
    auto b = connect_from("10.0.0.1");
    REQUIRE(a.accepted);
    REQUIRE(b.accepted);
    auto c = connect_from("10.0.0.1");
    CHECK_FALSE(c.accepted);
    CHECK(c.status == 429);
    CHECK(c.reason == "too_many_anonymous_connections");
    CHECK(connect_from("10.0.0.2").accepted);              // another address has its own count
    CHECK(connect_from("10.0.0.1", "user:u1:d1").accepted);  // users are not anonymous
    f.gw->on_disconnect(a.id);                             // a slot frees when one ends
    CHECK(connect_from("10.0.0.1").accepted);
    CHECK_FALSE(connect_from("10.0.0.1").accepted);
}

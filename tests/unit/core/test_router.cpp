#include "catch.hpp"
#include "gateway_fixture.hpp"

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
    GatewayFixture f;
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

TEST_CASE("route key: action field and JSON pointer", "[router][route_key]") {
    SECTION("action (seed 001)") {
        RouterSettings r;
        r.route_key = "action";
        GatewayFixture f{with_router(r)};
        auto id = f.connect();
        auto out = f.say(id, R"({"action":"ping"})");
        REQUIRE(out.size() == 1);
        CHECK(out[0]["type"] == "pong");
        out = f.say(id, R"({"type":"ping"})");
        REQUIRE(out.size() == 1);
        CHECK(out[0]["type"] == "error");
    }
    SECTION("JSON pointer") {
        RouterSettings r;
        r.route_key = "/meta/kind";
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
    GatewayFixture f;
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
    GatewayFixture f{with_router(r)};
    auto id = f.connect();
    CHECK(f.say(id, R"({"type":"subscribe","topic":"a"})")[0]["type"] == "ack");
    CHECK(f.say(id, R"({"type":"subscribe","topic":"b"})")[0]["type"] == "ack");
    CHECK(f.say(id, R"({"type":"subscribe","topic":"a"})")[0]["type"] == "ack");  // already held
    auto out = f.say(id, R"({"type":"subscribe","topic":"c"})");
    CHECK(out[0]["status"] == 429);
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

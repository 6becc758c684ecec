// The Gateway with a TokenAuthorizer: tokens decide who connects and as what.

#include "catch.hpp"

#include <wsgate/auth/token_authorizer.hpp>
#include <wsgate/auth/public_tokens.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/memory_transport.hpp>
#include <wsgate/memory_store.hpp>

using namespace wsgate;

TEST_CASE("Gateway::on_connect authorizes session and public tokens", "[auth][token][gateway]") {
    constexpr std::int64_t now_s = 1'700'000'000;
    auto clock = std::make_shared<ManualClock>(from_unix_seconds(now_s));
    auto session_key = jwt::SigningKey::hmac(jwt::Algorithm::hs256, "gateway-session-secret-0123456789");
    PublicTokenSettings boards;
    boards.default_permissions = {"read_leaderboard", "read_events"};
    PublicTokenIssuer issuer{jwt::SigningKey::hmac(jwt::Algorithm::hs256, "gateway-public-secret-0123456789"), boards,
                             clock};
    auto auth = std::make_shared<TokenAuthorizer>(
        jwt::Verifier{}.allow(session_key.verification_key()).require_claim("exp").with_clock(clock),
        issuer.verifier());
    auto store = std::make_shared<InMemoryConnectionStore>();
    auto transport = std::make_shared<InMemoryTransport>();
    Gateway gw{{}, store, transport, auth, clock};

    ConnectRequest user;
    user.query["token"] = jwt::sign({{"sub", "u-1"}, {"sid", "s-1"}, {"exp", now_s + 60}}, session_key);
    auto cu = gw.on_connect(user);
    REQUIRE(cu.accepted);
    CHECK(cu.principal.kind == PrincipalKind::user);
    CHECK(cu.principal.user_id == "u-1");

    ConnectRequest board;
    board.headers["authorization"] = "Bearer " + issuer.issue({"board-7", std::nullopt, std::nullopt})->token;
    auto cb = gw.on_connect(board);
    REQUIRE(cb.accepted);
    CHECK(cb.principal.kind == PrincipalKind::public_device);
    CHECK(cb.principal.device_id == "board-7");
    CHECK(cb.principal.has_permission("read_leaderboard"));
    CHECK_FALSE(cb.principal.has_permission("publish_chat"));

    auto none = gw.on_connect(ConnectRequest{});
    CHECK_FALSE(none.accepted);
    CHECK(none.status == 401);
    CHECK(none.reason == "missing_token");

    clock->advance(std::chrono::minutes{2});
    auto late = gw.on_connect(user);
    CHECK_FALSE(late.accepted);
    CHECK(late.status == 401);
    CHECK(late.reason == "expired");
}

TEST_CASE("a type:public token admitted by the alias can do only what a public token may",
          "[auth][token][public][gateway][security]") {
    constexpr std::int64_t now_s = 1'700'000'000;
    auto clock = std::make_shared<ManualClock>(from_unix_seconds(now_s));
    auto session_key = jwt::SigningKey::hmac(jwt::Algorithm::hs256, "gateway-session-secret-0123456789");
    auto public_key = jwt::SigningKey::hmac(jwt::Algorithm::hs256, "gateway-public-secret-0123456789");
    PublicTokenIssuer issuer{public_key, {}, clock};
    TokenAuthorizerSettings alias;
    alias.accept_type_public = true;
    auto auth = std::make_shared<TokenAuthorizer>(
        jwt::Verifier{}.allow(session_key.verification_key()).require_claim("exp").with_clock(clock),
        issuer.verifier(), alias);
    GatewaySettings gs;
    gs.router.topic_rules = {{"leaderboard:*", "read_leaderboard", ""}, {"chat:*", "", "publish_chat"}};
    gs.router.open_topics = true;
    auto transport = std::make_shared<InMemoryTransport>();
    Gateway gw{gs, std::make_shared<InMemoryConnectionStore>(), transport, auth, clock};
    int host_calls = 0;
    gw.router().on("admin_reset", [&](MessageContext& ctx) {
        if (ctx.principal().kind != PrincipalKind::user) return ctx.reply_error(403, "users only");
        ++host_calls;
        ctx.ack();
    });

    // A seed-style board token that even claims a user and a publish permission.
    ConnectRequest req;
    req.query["token"] = jwt::sign({{"deviceId", "board-9"},
                                    {"type", "public"},
                                    {"sub", "u-admin"},
                                    {"permissions", {"read_leaderboard", "publish_chat"}},
                                    {"exp", now_s + 3600}},
                                   public_key);
    auto c = gw.on_connect(req);
    REQUIRE(c.accepted);
    CHECK(c.principal.kind == PrincipalKind::public_device);
    CHECK(c.principal.user_id.empty());
    transport->open(c.id);
    auto say = [&](const std::string& text) {
        CHECK_FALSE(gw.on_message(c.id, text));
        auto frames = transport->drain(c.id);
        REQUIRE(frames.size() == 1);
        return nlohmann::json::parse(frames[0]);
    };
    CHECK(say(R"({"type":"subscribe","topic":"leaderboard:1"})")["type"] == "ack");  // what it may read
    CHECK(say(R"({"type":"subscribe","topic":"chat:1"})")["status"] == 403);         // users-only topic
    CHECK(say(R"({"type":"subscribe","topic":"open:1"})")["status"] == 403);         // open topics: users only
    CHECK(say(R"({"type":"publish","topic":"chat:1","data":1})")["status"] == 403);  // public never publishes
    CHECK(say(R"({"type":"publish","topic":"leaderboard:1","data":1})")["status"] == 403);
    CHECK(say(R"({"type":"admin_reset"})")["status"] == 403);
    CHECK(host_calls == 0);
    CHECK(say(R"({"type":"ping"})")["type"] == "pong");

    // A refresh cannot turn the connection into the user its token named.
    auto user_token = jwt::sign({{"sub", "u-admin"}, {"exp", now_s + 3600}}, session_key);
    CHECK(say(R"({"type":"refresh","token":")" + user_token + "\"}")["status"] == 403);
    CHECK(gw.local_count() == 0);
}

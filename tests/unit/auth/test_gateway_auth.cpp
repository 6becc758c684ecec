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

// TokenAuthorizer: token sources, session-then-public order, principal mapping, denials.

#include "catch.hpp"

#include <wsgate/auth/token_authorizer.hpp>
#include <wsgate/auth/public_tokens.hpp>

using namespace wsgate;

namespace {

constexpr std::int64_t now_s = 1'700'000'000;
const std::string session_secret = "session-secret-0123456789abcdefghij";
const std::string public_secret = "public-secret-0123456789abcdefghijkl";

// Status-board tokens: they read the leaderboard and events.
PublicTokenSettings board_tokens() {
    PublicTokenSettings s;
    s.default_permissions = {"read_leaderboard", "read_events"};
    return s;
}

struct Fixture {
    std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>(from_unix_seconds(now_s));
    jwt::SigningKey session_key = jwt::SigningKey::hmac(jwt::Algorithm::hs256, session_secret);
    PublicTokenIssuer issuer{jwt::SigningKey::hmac(jwt::Algorithm::hs256, public_secret), board_tokens(), clock};
    TokenAuthorizer auth{jwt::Verifier{}.allow(session_key.verification_key()).require_claim("exp").with_clock(clock),
                         issuer.verifier()};

    std::string session_token(nlohmann::json extra = nlohmann::json::object()) const {
        nlohmann::json c{{"sub", "user-1"},      {"sid", "sess-9"},     {"deviceId", "phone-2"},
                         {"nickname", "Ana"},    {"scope", "read_events  publish_chat"},
                         {"iat", now_s - 5},     {"exp", now_s + 3600}, {"team", "blue"}};
        for (auto it = extra.begin(); it != extra.end(); ++it) c[it.key()] = it.value();
        return jwt::sign(c, session_key);
    }
};

ConnectRequest with_query(const std::string& token) {
    ConnectRequest r;
    r.query["token"] = token;
    return r;
}

}  // namespace

TEST_CASE("a session token becomes a user principal", "[auth][token]") {
    Fixture f;
    auto token = f.session_token();
    auto d = f.auth.authorize(with_query(token));
    REQUIRE(d.allowed);
    const Principal& p = d.principal;
    CHECK(p.kind == PrincipalKind::user);
    CHECK(p.user_id == "user-1");
    CHECK(p.session_id == "sess-9");
    CHECK(p.device_id == "phone-2");
    CHECK(p.nickname == "Ana");
    CHECK(p.permissions == std::vector<std::string>{"read_events", "publish_chat"});
    CHECK(p.issued_at == from_unix_seconds(now_s - 5));
    CHECK(p.claims.at("team") == "blue");
    CHECK(p.claims.at("exp") == now_s + 3600);
    CHECK_FALSE(p.claims.contains("sub"));
    CHECK_FALSE(p.claims.contains("scope"));
}

TEST_CASE("alternative claim names map to the same principal fields", "[auth][token]") {
    jwt::Token t;
    t.claims = {{"userId", "u2"}, {"sessionId", "s2"}, {"device_id", "d2"}, {"name", "Bo"},
                {"permissions", {"read_leaderboard"}}, {"scope", "ignored"}};
    auto p = TokenAuthorizer::session_principal(t);
    CHECK(p.user_id == "u2");
    CHECK(p.session_id == "s2");
    CHECK(p.device_id == "d2");
    CHECK(p.nickname == "Bo");
    CHECK(p.permissions == std::vector<std::string>{"read_leaderboard"});
    CHECK(p.claims.at("scope") == "ignored");
    CHECK_FALSE(p.issued_at);
}

TEST_CASE("a public token becomes a public_device principal", "[auth][token]") {
    Fixture f;
    auto t = f.issuer.issue({"board-1", std::nullopt, std::nullopt});
    REQUIRE(t);
    auto d = f.auth.authorize(with_query(t->token));
    REQUIRE(d.allowed);
    CHECK(d.principal.kind == PrincipalKind::public_device);
    CHECK(d.principal.device_id == "board-1");
    CHECK(d.principal.user_id.empty());
    CHECK(d.principal.permissions == std::vector<std::string>{"read_leaderboard", "read_events"});
    CHECK(d.principal.issued_at == from_unix_seconds(now_s));
    CHECK_FALSE(d.principal.claims.contains("kind"));
}

TEST_CASE("the token is read from the query, a Bearer header, or Sec-WebSocket-Protocol", "[auth][token]") {
    Fixture f;
    auto token = f.session_token();
    ConnectRequest bearer;
    bearer.headers["authorization"] = "Bearer " + token;
    CHECK(f.auth.authorize(bearer).allowed);
    bearer.headers["authorization"] = "bearer   " + token + "  ";
    CHECK(f.auth.authorize(bearer).allowed);
    bearer.headers["authorization"] = "Basic dXNlcjpwYXNz";
    CHECK(f.auth.authorize(bearer).reason == "missing_token");

    ConnectRequest proto;
    proto.headers["sec-websocket-protocol"] = "bearer, " + token;
    CHECK(f.auth.authorize(proto).allowed);
    proto.headers["sec-websocket-protocol"] = "wsgate, " + token;
    CHECK(f.auth.authorize(proto).allowed);
    proto.headers["sec-websocket-protocol"] = "bearer, chat";
    CHECK(f.auth.authorize(proto).reason == "malformed_token");
    // A bare token has no protocol name the server could echo: it is not taken.
    proto.headers["sec-websocket-protocol"] = token;
    CHECK(f.auth.authorize(proto).reason == "missing_token");
    proto.headers["sec-websocket-protocol"] = "chat.v1, " + token;
    CHECK(f.auth.authorize(proto).reason == "missing_token");

    // The query parameter wins over headers.
    ConnectRequest both = with_query(token);
    both.headers["authorization"] = "Bearer garbage";
    CHECK(f.auth.authorize(both).allowed);

    TokenAuthorizerSettings only_header;
    only_header.query_parameter.clear();
    only_header.accept_subprotocol = false;
    CHECK_FALSE(TokenAuthorizer::extract_token(with_query(token), only_header));
    CHECK(TokenAuthorizer::extract_token(bearer, only_header) == std::nullopt);
}

TEST_CASE("missing and invalid tokens are denied with 401 and a reason, never the token", "[auth][token]") {
    Fixture f;
    auto d = f.auth.authorize(ConnectRequest{});
    CHECK_FALSE(d.allowed);
    CHECK(d.status == 401);
    CHECK(d.reason == "missing_token");

    auto check_denied = [&](const std::string& token, const std::string& reason, jwt_errc ec) {
        INFO(reason);
        auto dd = f.auth.authorize(with_query(token));
        CHECK_FALSE(dd.allowed);
        CHECK(dd.status == 401);
        CHECK(dd.reason == reason);
        CHECK(dd.error == ec);
        CHECK(dd.reason.find(token) == std::string::npos);
        CHECK(dd.error.message().find(token) == std::string::npos);
    };
    check_denied("not-a-token", "malformed_token", jwt_errc::malformed);
    check_denied(f.session_token({{"exp", now_s - 1}}), "expired", jwt_errc::expired);
    check_denied(jwt::sign({{"sub", "x"}, {"exp", now_s + 60}}, jwt::SigningKey::hmac(jwt::Algorithm::hs256, "some-other-secret-0123456789abcdef")),
                 "bad_signature", jwt_errc::bad_signature);
    // An expired public token reports `expired`, not the session verifier's bad_signature.
    auto pt = f.issuer.issue();
    f.clock->advance(std::chrono::hours{24 * 31});
    check_denied(pt->token, "expired", jwt_errc::expired);
}

TEST_CASE("token kinds cannot be swapped between the two verifiers", "[auth][token]") {
    auto clock = std::make_shared<ManualClock>(from_unix_seconds(now_s));
    // One secret for both (a misconfiguration the kind claim still guards).
    auto key = jwt::SigningKey::hmac(jwt::Algorithm::hs256, session_secret);
    PublicTokenIssuer issuer{key, {}, clock};
    TokenAuthorizer auth{jwt::Verifier{}.allow(key.verification_key()).with_clock(clock), issuer.verifier()};
    auto pub = issuer.issue();
    auto d = auth.authorize(with_query(pub->token));
    REQUIRE(d.allowed);
    CHECK(d.principal.kind == PrincipalKind::public_device);
    CHECK(d.principal.user_id.empty());

    // A session token presented to a public-only authorizer is refused.
    TokenAuthorizer public_only{std::nullopt, issuer.verifier()};
    auto session = jwt::sign({{"sub", "u"}, {"deviceId", "d"}, {"exp", now_s + 60}}, key);
    auto ds = public_only.authorize(with_query(session));
    CHECK_FALSE(ds.allowed);
    CHECK(ds.error == jwt_errc::invalid_claim);

    CHECK_THROWS_AS(TokenAuthorizer(std::nullopt, std::nullopt), std::invalid_argument);
}

TEST_CASE("with one verifier it is a plain JWT authorizer: session tokens in, public tokens out", "[auth][token]") {
    Fixture f;
    TokenAuthorizer jwt_only{jwt::Verifier{}.allow(f.session_key.verification_key()).with_clock(f.clock)};

    auto d = jwt_only.authorize(with_query(f.session_token()));
    REQUIRE(d.allowed);
    CHECK(d.principal.kind == PrincipalKind::user);
    CHECK(d.principal.user_id == "user-1");

    auto pub = f.issuer.issue();
    REQUIRE(pub);
    auto dp = jwt_only.authorize(with_query(pub->token));
    CHECK_FALSE(dp.allowed);
    CHECK(dp.status == 401);
}

namespace {

// A public token as an existing `POST /public/token` mints it (seed 001): marked with `type`,
// not wsgate's `kind`, and carrying `createdAt`.
std::string seed_public_token(const std::string& secret, nlohmann::json extra = nlohmann::json::object()) {
    nlohmann::json c{{"deviceId", "device-1700000000000-k2j4h5g6f"},
                     {"type", "public"},
                     {"permissions", {"read_leaderboard", "read_events"}},
                     {"createdAt", "2023-11-14T22:13:20.000Z"},
                     {"iat", now_s},
                     {"exp", now_s + 30 * 24 * 3600}};
    for (auto it = extra.begin(); it != extra.end(); ++it) c[it.key()] = it.value();
    return jwt::sign(c, jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret));
}

TokenAuthorizer with_type_alias(const Fixture& f) {
    TokenAuthorizerSettings s;
    s.accept_type_public = true;
    return TokenAuthorizer{jwt::Verifier{}.allow(f.session_key.verification_key()).require_claim("exp").with_clock(f.clock),
                           f.issuer.verifier(), s};
}

}  // namespace

TEST_CASE("a token marked type:public is no public token unless the host enables the alias",
          "[auth][token][public][security]") {
    Fixture f;
    CHECK_FALSE(TokenAuthorizerSettings{}.accept_type_public);
    const auto token = seed_public_token(public_secret);

    // Off (the default): the public verifier checks the signature but finds no public marker.
    auto off = f.auth.authorize(with_query(token));
    CHECK_FALSE(off.allowed);
    CHECK(off.status == 401);
    CHECK(off.error == jwt_errc::invalid_claim);
    CHECK(off.principal.kind != PrincipalKind::public_device);
    CHECK(off.principal.permissions.empty());

    // On: the same token is a public device with its permissions, and nothing more.
    auto alias = with_type_alias(f);
    auto on = alias.authorize(with_query(token));
    REQUIRE(on.allowed);
    CHECK(on.principal.kind == PrincipalKind::public_device);
    CHECK(on.principal.device_id == "device-1700000000000-k2j4h5g6f");
    CHECK(on.principal.user_id.empty());
    CHECK(on.principal.session_id.empty());
    CHECK(on.principal.permissions == std::vector<std::string>{"read_leaderboard", "read_events"});
    CHECK(on.principal.expires_at == from_unix_seconds(now_s + 30 * 24 * 3600));
    CHECK_FALSE(on.principal.claims.contains("type"));
    CHECK(on.principal.claims.at("createdAt") == "2023-11-14T22:13:20.000Z");

    // wsgate's own public tokens and session tokens are unaffected by the alias.
    auto own = alias.authorize(with_query(f.issuer.issue({"board-1", std::nullopt, std::nullopt})->token));
    REQUIRE(own.allowed);
    CHECK(own.principal.kind == PrincipalKind::public_device);
    auto user = alias.authorize(with_query(f.session_token()));
    REQUIRE(user.allowed);
    CHECK(user.principal.kind == PrincipalKind::user);

    // Only the string "public" marks a token; other values, or a public token without a device, do not.
    for (const auto& extra : {nlohmann::json{{"type", "user"}}, nlohmann::json{{"type", nlohmann::json::array({"public"})}},
                              nlohmann::json{{"type", "Public"}}, nlohmann::json{{"deviceId", nullptr}}}) {
        INFO(extra.dump());
        auto d = alias.authorize(with_query(seed_public_token(public_secret, extra)));
        CHECK_FALSE(d.allowed);
        CHECK(d.status == 401);
    }
    // A token signed with neither key is refused whatever it claims.
    CHECK_FALSE(alias.authorize(with_query(seed_public_token("another-secret-0123456789abcdefghijkl"))).allowed);
}

TEST_CASE("the type:public alias never turns a token into a user, nor a user token into more",
          "[auth][token][public][security]") {
    Fixture f;
    auto alias = with_type_alias(f);

    // A public-key token claiming `sub` (and a session id, nickname, scope) stays a public device:
    // the user fields are not read from a public token.
    auto claims_user = seed_public_token(public_secret, {{"sub", "admin"}, {"sid", "s-1"}, {"nickname", "Root"},
                                                         {"userId", "admin"}, {"scope", "publish_chat admin"}});
    auto d = alias.authorize(with_query(claims_user));
    REQUIRE(d.allowed);
    CHECK(d.principal.kind == PrincipalKind::public_device);
    CHECK(d.principal.user_id.empty());
    CHECK(d.principal.session_id.empty());
    CHECK(d.principal.nickname.empty());
    CHECK(d.principal.permissions == std::vector<std::string>{"read_leaderboard", "read_events"});
    // Without the alias it is refused, not taken as a session (it is not signed with the session key).
    CHECK_FALSE(f.auth.authorize(with_query(claims_user)).allowed);

    // A session-key token with type:public and a sub: with the alias it is marked public, so it is
    // no session (as with kind:public), and the public verifier does not know its key.
    auto session_marked = f.session_token({{"type", "public"}});
    auto on = alias.authorize(with_query(session_marked));
    CHECK_FALSE(on.allowed);
    CHECK(on.status == 401);
    // Without the alias it is the session it always was: the same user, no extra permissions.
    auto off = f.auth.authorize(with_query(session_marked));
    REQUIRE(off.allowed);
    CHECK(off.principal.kind == PrincipalKind::user);
    CHECK(off.principal.user_id == "user-1");
    CHECK(off.principal.permissions == std::vector<std::string>{"read_events", "publish_chat"});
    CHECK(off.principal.claims.at("type") == "public");
}

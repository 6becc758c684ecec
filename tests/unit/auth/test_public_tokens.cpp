// Public device tokens and the Lambda-authorizer-shaped result.

#include "catch.hpp"

#include <wsgate/auth/token_authorizer.hpp>
#include <wsgate/auth/lambda_authorizer.hpp>
#include <wsgate/auth/public_tokens.hpp>

#include <set>

using namespace wsgate;

namespace {
const std::string public_secret = "public-device-secret-0123456789abcdef";
}

TEST_CASE("the issuer mints 30-day tokens with a random device id and the configured default permissions",
          "[auth][public]") {
    auto clock = std::make_shared<ManualClock>(from_unix_seconds(1'700'000'000));
    PublicTokenSettings s;
    s.default_permissions = {"read_leaderboard", "read_events"};
    PublicTokenIssuer issuer{jwt::SigningKey::hmac(jwt::Algorithm::hs256, public_secret), s, clock};
    auto t = issuer.issue();
    REQUIRE(t);
    CHECK(t->device_id.rfind("device-", 0) == 0);
    CHECK(t->device_id.size() == 7 + 22);  // 128 CSPRNG bits in base64url
    CHECK(t->permissions == std::vector<std::string>{"read_leaderboard", "read_events"});
    CHECK(t->issued_at == clock->now());
    CHECK(t->expires_at == clock->now() + std::chrono::hours{24 * 30});

    nlohmann::json j = *t;
    CHECK(j.at("deviceId") == t->device_id);
    CHECK(j.at("token") == t->token);
    CHECK(j.at("permissions") == nlohmann::json{"read_leaderboard", "read_events"});
    CHECK(j.at("expiresAt") == "2023-12-14T22:13:20.000Z");

    jwt::Token decoded;
    REQUIRE_FALSE(issuer.verifier().verify(t->token, decoded));
    CHECK(decoded.claims.at("kind") == "public");
    CHECK(decoded.claims.at("deviceId") == t->device_id);
    CHECK(decoded.claims.at("exp") == 1'700'000'000 + 30 * 24 * 3600);

    // Device ids do not repeat.
    std::set<std::string> ids;
    for (int i = 0; i < 200; ++i) ids.insert(issuer.issue()->device_id);
    CHECK(ids.size() == 200);

    // Thirty days later the token has expired.
    clock->advance(std::chrono::hours{24 * 30});
    CHECK(issuer.verifier().verify(t->token, decoded) == jwt_errc::expired);
}

TEST_CASE("an issuer with default settings grants no permissions", "[auth][public]") {
    auto clock = std::make_shared<ManualClock>(from_unix_seconds(1'700'000'000));
    PublicTokenIssuer issuer{jwt::SigningKey::hmac(jwt::Algorithm::hs256, public_secret), {}, clock};
    CHECK(issuer.settings().default_permissions.empty());

    auto t = issuer.issue();
    REQUIRE(t);
    CHECK(t->permissions.empty());
    CHECK(nlohmann::json(*t).at("permissions") == nlohmann::json::array());

    // The token carries an empty permission list, and so does the principal made from it.
    TokenAuthorizer auth{std::nullopt, issuer.verifier()};
    ConnectRequest req;
    req.query["token"] = t->token;
    auto d = auth.authorize(req);
    REQUIRE(d.allowed);
    CHECK(d.principal.kind == PrincipalKind::public_device);
    CHECK(d.principal.permissions.empty());

    // With no allowed or default permissions, asking for one is refused.
    CHECK_FALSE(issuer.issue({"", std::vector<std::string>{"read_leaderboard"}, std::nullopt}));
    CHECK(issuer.issue({"", std::vector<std::string>{}, std::nullopt}));
}

TEST_CASE("issuer requests: device id, permissions and lifetime are validated", "[auth][public]") {
    auto clock = std::make_shared<ManualClock>();
    PublicTokenSettings s;
    s.allowed_permissions = {"read_leaderboard", "read_events", "read_polls"};
    s.issuer = "wsgate-public";
    s.audience = "boards";
    PublicTokenIssuer issuer{jwt::SigningKey::hmac(jwt::Algorithm::hs256, public_secret), s, clock};

    auto req = PublicTokenRequest::from_json({{"deviceId", "kiosk-7"}, {"permissions", {"read_polls"}},
                                              {"lifetimeSeconds", 3600}});
    REQUIRE(req);
    auto t = issuer.issue(*req);
    REQUIRE(t);
    CHECK(t->device_id == "kiosk-7");
    CHECK(t->permissions == std::vector<std::string>{"read_polls"});
    CHECK(t->expires_at - t->issued_at == std::chrono::hours{1});
    jwt::Token decoded;
    REQUIRE_FALSE(issuer.verifier().verify(t->token, decoded));
    CHECK(decoded.claims.at("iss") == "wsgate-public");
    CHECK(decoded.claims.at("aud") == "boards");

    CHECK_FALSE(issuer.issue({"bad id with spaces", std::nullopt, std::nullopt}));
    CHECK_FALSE(issuer.issue({std::string(129, 'a'), std::nullopt, std::nullopt}));
    CHECK_FALSE(issuer.issue({"", std::vector<std::string>{"admin"}, std::nullopt}));
    CHECK_FALSE(issuer.issue({"", std::nullopt, std::chrono::seconds{0}}));
    CHECK_FALSE(issuer.issue({"", std::nullopt, std::chrono::hours{24 * 400}}));
    CHECK(PublicTokenRequest::from_json(nlohmann::json{})->device_id.empty());
    CHECK_FALSE(PublicTokenRequest::from_json({{"deviceId", 5}}));
    CHECK_FALSE(PublicTokenRequest::from_json({{"permissions", "read_events"}}));
    CHECK_FALSE(PublicTokenRequest::from_json({{"permissions", {1}}}));
    CHECK_FALSE(PublicTokenRequest::from_json(nlohmann::json::array()));
    PublicTokenSettings zero;
    zero.lifetime = std::chrono::seconds{0};
    CHECK_THROWS_AS(PublicTokenIssuer(jwt::SigningKey::hmac(jwt::Algorithm::hs256, public_secret), zero),
                    std::invalid_argument);
}

TEST_CASE("Lambda authorizer result: Allow and Deny policy documents", "[auth][lambda]") {
    const std::string arn = "arn:aws:execute-api:eu-west-1:123456789012:abcdef/prod/$connect";
    Principal p;
    p.kind = PrincipalKind::public_device;
    p.device_id = "device-1";
    p.permissions = {"read_leaderboard", "read_events"};
    p.issued_at = from_unix_seconds(1'700'000'000);
    auto r = make_lambda_authorizer_result(AuthDecision::allow(p), arn);
    nlohmann::json j = r;
    CHECK(j == nlohmann::json::parse(R"({
        "principalId": "device-1",
        "policyDocument": {"Version": "2012-10-17",
                           "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow",
                                          "Resource": "arn:aws:execute-api:eu-west-1:123456789012:abcdef/prod/$connect"}]},
        "context": {"userId": "device-1", "connectionType": "public", "deviceId": "device-1",
                    "permissions": "read_leaderboard,read_events", "createdAt": "2023-11-14T22:13:20.000Z"}})"));

    Principal u;
    u.kind = PrincipalKind::user;
    u.user_id = "u-1";
    u.session_id = "s-1";
    u.nickname = "Ana";
    auto ru = make_lambda_authorizer_result(AuthDecision::allow(u), arn);
    CHECK(ru.principal_id == "u-1");
    CHECK(ru.context == std::map<std::string, std::string>{
                            {"userId", "u-1"}, {"connectionType", "user"}, {"sessionId", "s-1"}, {"nickname", "Ana"}});

    auto denied = make_lambda_authorizer_result(AuthDecision::deny(401, "expired", jwt_errc::expired), arn);
    nlohmann::json jd = denied;
    CHECK(jd.at("policyDocument").at("Statement").at(0).at("Effect") == "Deny");
    CHECK(jd.at("principalId") == "unauthorized");
    CHECK(jd.at("context") == nlohmann::json{{"reason", "expired"}});
}

TEST_CASE("the token endpoint's response shape comes from the library", "[auth][public]") {
    auto clock = std::make_shared<ManualClock>(from_unix_seconds(1'700'000'000));
    PublicTokenSettings s;
    s.default_permissions = {"read_leaderboard", "read_events"};
    PublicTokenIssuer issuer{jwt::SigningKey::hmac(jwt::Algorithm::hs256, public_secret), s, clock};
    auto t = issuer.issue({"board-1", std::nullopt, std::nullopt});
    REQUIRE(t);

    auto body = public_token_response(*t);
    CHECK(body.at("success") == true);
    CHECK(body.at("deviceId") == "board-1");
    CHECK(body.at("token") == t->token);
    CHECK(body.at("permissions") == nlohmann::json{"read_leaderboard", "read_events"});
    CHECK(body.at("issuedAt") == "2023-11-14T22:13:20.000Z");
    CHECK(body.at("timestamp") == "2023-11-14T22:13:20.000Z");
    CHECK(body.at("expiresAt") == "2023-12-14T22:13:20.000Z");  // the real expiry, not null
    CHECK_FALSE(body.contains("publicToken"));
    CHECK(body.size() == 7);

    // Clients of an existing endpoint read `publicToken` (seed 001).
    PublicTokenResponseOptions compat;
    compat.public_token_field = true;
    auto seed = public_token_response(*t, compat);
    CHECK(seed.at("publicToken") == t->token);
    CHECK(seed.at("token") == t->token);
    for (const char* field : {"success", "deviceId", "publicToken", "permissions", "expiresAt", "timestamp"})
        CHECK(seed.contains(field));

    CHECK(public_token_error("invalid deviceId") == nlohmann::json{{"success", false}, {"error", "invalid deviceId"}});
}

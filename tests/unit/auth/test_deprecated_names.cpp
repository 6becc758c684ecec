// The 0.1 names kept for one release: they still compile and mean what their replacements mean.
// Remove this file with the names in 0.3.

#include "catch.hpp"

#include <wsgate/auth/dual_token_authorizer.hpp>
#include <wsgate/auth/public_tokens.hpp>

#include <type_traits>

// Using a deprecated name is the point of this file.
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif

using namespace wsgate;

static_assert(std::is_same_v<DualTokenAuthorizer, TokenAuthorizer>);
static_assert(std::is_same_v<DualTokenSettings, TokenAuthorizerSettings>);

namespace {
const std::string secret = "deprecated-names-secret-0123456789abcdef";
}

TEST_CASE("DualTokenAuthorizer and DualTokenSettings still build a working authorizer", "[auth][deprecated]") {
    auto clock = std::make_shared<ManualClock>(from_unix_seconds(1'700'000'000));
    auto key = jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret);
    DualTokenSettings settings;
    settings.query_parameter = "access_token";
    auto auth = std::make_shared<DualTokenAuthorizer>(
        jwt::Verifier{}.allow(key.verification_key()).with_clock(clock), std::nullopt, settings);

    ConnectRequest req;
    req.query["access_token"] = jwt::sign({{"sub", "ann"}, {"exp", 1'700'000'060}}, key);
    auto d = auth->authorize(req);
    REQUIRE(d.allowed);
    CHECK(d.principal.user_id == "ann");
}

TEST_CASE("the deprecated key shorthands make the same keys as the factories", "[auth][deprecated]") {
    auto clock = std::make_shared<ManualClock>(from_unix_seconds(1'700'000'000));
    const nlohmann::json claims{{"sub", "ann"}, {"exp", 1'700'000'060}};
    jwt::Token t;

    const auto by_shorthand = jwt::sign(claims, jwt::hs256_signing_key(secret));
    const auto by_factory = jwt::sign(claims, jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret));
    CHECK(by_shorthand == by_factory);  // HMAC is deterministic

    auto v = jwt::Verifier{}.allow(jwt::hs256_key(secret)).with_clock(clock);
    CHECK_FALSE(v.verify(by_factory, t));
    CHECK(jwt::hs384_key(std::string(48, 'k')).algorithm() == jwt::Algorithm::hs384);
    CHECK(jwt::hs512_key(std::string(64, 'k')).algorithm() == jwt::Algorithm::hs512);
    CHECK_THROWS_AS(jwt::hs256_key("short"), std::invalid_argument);
    CHECK_THROWS_AS(jwt::rs256_key("not a pem"), std::invalid_argument);
    CHECK_THROWS_AS(jwt::rs256_signing_key("not a pem"), std::invalid_argument);
    CHECK_THROWS_AS(jwt::es256_signing_key("not a pem"), std::invalid_argument);
}

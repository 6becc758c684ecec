// Claim rules, typed claims, key construction rules, every algorithm's sign → verify round trip.

#include "catch.hpp"
#include "test_keys.hpp"

#include <wsgate/auth/jwt.hpp>

#include <atomic>
#include <thread>

using namespace wsgate;

namespace {
constexpr std::int64_t now_s = 1'700'000'000;
// 64 bytes: long enough for HS512 (RFC 7518 §3.2).
const std::string secret = "claims-suite-secret-0123456789abcdef-0123456789abcdef-0123456789";
}  // namespace

TEST_CASE("leeway applies to exp, nbf and iat", "[auth][jwt][claims]") {
    auto clock = std::make_shared<ManualClock>(from_unix_seconds(now_s));
    auto key = jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret);
    auto v = jwt::Verifier{}.allow(key.verification_key()).with_clock(clock);
    jwt::Token t;
    auto expired = jwt::sign({{"exp", now_s - 20}}, key);
    auto early = jwt::sign({{"nbf", now_s + 20}, {"iat", now_s + 20}}, key);
    CHECK(v.verify(expired, t) == jwt_errc::expired);
    CHECK(v.verify(early, t) == jwt_errc::not_yet_valid);
    v.leeway(std::chrono::seconds{30});
    CHECK_FALSE(v.verify(expired, t));
    CHECK_FALSE(v.verify(early, t));
    clock->advance(std::chrono::seconds{15});  // 35 s past exp
    CHECK(v.verify(expired, t) == jwt_errc::expired);
    // Fractional NumericDate values are honoured.
    CHECK_FALSE(v.verify(jwt::sign({{"exp", now_s + 15 - 30 + 0.5}}, key), t));
    CHECK_THROWS_AS(v.leeway(std::chrono::seconds{-1}), std::invalid_argument);
}

TEST_CASE("issuers, audiences and required claims", "[auth][jwt][claims]") {
    auto clock = std::make_shared<ManualClock>(from_unix_seconds(now_s));
    auto key = jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret);
    auto v = jwt::Verifier{}
                 .allow(key.verification_key())
                 .with_issuer("a")
                 .with_issuer("b")
                 .with_audience("game")
                 .with_audience("board")
                 .require_claim("exp")
                 .require_claim("sid")
                 .with_clock(clock);
    jwt::Token t;
    nlohmann::json c{{"iss", "b"}, {"aud", {"x", "board"}}, {"exp", now_s + 5}, {"sid", "s1"}};
    CHECK_FALSE(v.verify(jwt::sign(c, key), t));
    CHECK(t.audience() == std::vector<std::string>{"x", "board"});
    c["aud"] = "game";
    CHECK_FALSE(v.verify(jwt::sign(c, key), t));
    CHECK(t.audience() == std::vector<std::string>{"game"});
    c["aud"] = nlohmann::json::array();
    CHECK(v.verify(jwt::sign(c, key), t) == jwt_errc::wrong_audience);
    c["aud"] = "game";
    c.erase("sid");
    CHECK(v.verify(jwt::sign(c, key), t) == jwt_errc::missing_claim);
    c["sid"] = "s1";
    c.erase("exp");
    CHECK(v.verify(jwt::sign(c, key), t) == jwt_errc::missing_claim);

    // A verifier without audiences refuses a token that names one (RFC 7519 §4.1.3).
    auto plain = jwt::Verifier{}.allow(key.verification_key()).with_clock(clock);
    CHECK(plain.verify(jwt::sign({{"aud", "game"}}, key), t) == jwt_errc::wrong_audience);
    CHECK_FALSE(plain.verify(jwt::sign({{"iss", "anyone"}}, key), t));
    CHECK(plain.verify(jwt::sign({{"sub", 42}}, key), t) == jwt_errc::invalid_claim);
}

TEST_CASE("typed claim access never throws and treats other types as absent", "[auth][jwt][claims]") {
    jwt::Token t;
    t.claims = {{"s", "x"}, {"i", 42}, {"neg", -3}, {"big", 5'000'000'000LL}, {"f", 1.5}, {"b", true},
                {"arr", {"a", "b"}}, {"mixed", {"a", 1}}, {"obj", {{"k", "v"}}}};
    CHECK(t.claim<std::string>("s") == std::optional<std::string>{"x"});
    CHECK_FALSE(t.claim<std::string>("i"));
    CHECK(t.claim<int>("i") == std::optional<int>{42});
    CHECK(t.claim<unsigned>("neg") == std::nullopt);
    CHECK(t.claim<int>("neg") == std::optional<int>{-3});
    CHECK(t.claim<int>("big") == std::nullopt);
    CHECK(t.claim<std::int64_t>("big") == std::optional<std::int64_t>{5'000'000'000LL});
    CHECK_FALSE(t.claim<int>("f"));
    CHECK(t.claim<double>("f") == std::optional<double>{1.5});
    CHECK(t.claim<double>("i") == std::optional<double>{42.0});
    CHECK(t.claim<bool>("b") == std::optional<bool>{true});
    CHECK_FALSE(t.claim<bool>("i"));
    CHECK(t.claim<std::vector<std::string>>("arr") == std::optional<std::vector<std::string>>{{"a", "b"}});
    CHECK_FALSE(t.claim<std::vector<std::string>>("mixed"));
    CHECK(t.claim<nlohmann::json>("obj")->at("k") == "v");
    CHECK_FALSE(t.claim<std::string>("missing"));
    CHECK_FALSE(t.expires_at());
}

TEST_CASE("every algorithm signs and verifies; keys are pinned to their algorithm", "[auth][jwt][claims]") {
    std::vector<jwt::SigningKey> keys = {
        jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret),
        jwt::SigningKey::hmac(jwt::Algorithm::hs384, secret),
        jwt::SigningKey::hmac(jwt::Algorithm::hs512, secret),
        jwt::SigningKey::private_key_pem(jwt::Algorithm::rs256, test_keys::rsa_pem),
        jwt::SigningKey::private_key_pem(jwt::Algorithm::rs384, test_keys::rsa_pem),
        jwt::SigningKey::private_key_pem(jwt::Algorithm::rs512, test_keys::rsa_pem),
        jwt::SigningKey::private_key_pem(jwt::Algorithm::es256, test_keys::ec_pem),
        jwt::SigningKey::private_key_pem(jwt::Algorithm::es384, test_keys::ec384_pem),
        jwt::SigningKey::private_key_pem(jwt::Algorithm::es512, test_keys::ec521_pem),
        jwt::SigningKey::private_key_pem(jwt::Algorithm::ps256, test_keys::rsa_pem),
        jwt::SigningKey::private_key_pem(jwt::Algorithm::ps384, test_keys::rsa_pem),
        jwt::SigningKey::private_key_pem(jwt::Algorithm::ps512, test_keys::rsa_pem),
        jwt::SigningKey::private_key_pem(jwt::Algorithm::eddsa, test_keys::ed25519_pem),
    };
    nlohmann::json claims{{"sub", "u1"}, {"n", 1}};
    for (const auto& k : keys) {
        INFO(jwt::to_string(k.algorithm()));
        auto token = jwt::sign(claims, k);
        jwt::Token t;
        auto v = jwt::Verifier{}.allow(k.verification_key());
        REQUIRE_FALSE(v.verify(token, t));
        CHECK(t.algorithm() == jwt::to_string(k.algorithm()));
        CHECK(t.claims == claims);
        // Verifying the same token twice reuses pooled contexts correctly.
        CHECK_FALSE(v.verify(token, t));
        // The public half from PEM verifies too.
        if (!k.public_key_pem().empty()) {
            auto pub = jwt::Verifier{}.allow(jwt::Key::public_key_pem(k.algorithm(), k.public_key_pem()));
            CHECK_FALSE(pub.verify(token, t));
        }
        // Every other algorithm's key refuses it.
        for (const auto& other : keys) {
            if (other.algorithm() == k.algorithm()) continue;
            CHECK(jwt::Verifier{}.allow(other.verification_key()).verify(token, t) == jwt_errc::disallowed_algorithm);
        }
    }
    CHECK(jwt::algorithm_from_string("ES384") == jwt::Algorithm::es384);
    CHECK(jwt::algorithm_from_string("EdDSA") == jwt::Algorithm::eddsa);
    CHECK(jwt::algorithm_from_string("PS512") == jwt::Algorithm::ps512);
    CHECK_FALSE(jwt::algorithm_from_string("EDDSA"));
    CHECK_FALSE(jwt::algorithm_from_string("none"));
    CHECK_FALSE(jwt::algorithm_from_string("es256"));
}

TEST_CASE("misconfigured keys throw at construction", "[auth][jwt][claims]") {
    CHECK_THROWS_AS(jwt::Key::hmac(jwt::Algorithm::hs256, ""), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::hmac(jwt::Algorithm::rs256, secret), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::hs256, test_keys::rsa_pub), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::rs256, test_keys::rsa1024_pub), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::rs256, test_keys::ec_pub), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::es256, test_keys::rsa_pub), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::es256, test_keys::k1_pub), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::es256, test_keys::ec384_pub), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::es384, test_keys::ec_pub), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::rs256, "not a pem"), std::invalid_argument);
    CHECK_THROWS_AS(jwt::SigningKey::private_key_pem(jwt::Algorithm::rs256, test_keys::rsa_pub), std::invalid_argument);
    CHECK_THROWS_AS(jwt::sign({1, 2}, jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret)), std::invalid_argument);
    CHECK_THROWS_AS(jwt::sign({{"a", 1}}, jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret), {{"alg", "none"}}), std::invalid_argument);
    // A private PEM may serve as a verification key (its public half is used).
    CHECK_NOTHROW(jwt::Key::public_key_pem(jwt::Algorithm::rs256, test_keys::rsa_pem));
}

TEST_CASE("max_length is configurable and counts bytes", "[auth][jwt][claims]") {
    auto key = jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret);
    auto token = jwt::sign({{"pad", std::string(600, 'x')}}, key);
    jwt::Token t;
    auto v = jwt::Verifier{}.allow(key.verification_key()).max_length(token.size());
    CHECK_FALSE(v.verify(token, t));
    v.max_length(token.size() - 1);
    CHECK(v.verify(token, t) == jwt_errc::too_long);
}

TEST_CASE("one verifier is safe to use from several threads", "[auth][jwt][claims]") {
    auto hs = jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret);
    auto es = jwt::SigningKey::private_key_pem(jwt::Algorithm::es256, test_keys::ec_pem);
    const auto v = jwt::Verifier{}.allow(hs.verification_key()).allow(es.verification_key());
    const auto good_hs = jwt::sign({{"sub", "a"}}, hs);
    const auto good_es = jwt::sign({{"sub", "b"}}, es);
    auto bad = good_hs;
    bad[bad.size() - 3] = bad[bad.size() - 3] == 'A' ? 'B' : 'A';
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
        threads.emplace_back([&] {
            for (int n = 0; n < 300; ++n) {
                jwt::Token t;
                if (v.verify(good_hs, t) || t.claims.at("sub") != "a") ++failures;
                if (v.verify(bad, t) != jwt_errc::bad_signature) ++failures;
                if (n % 20 == 0 && v.verify(good_es, t)) ++failures;
            }
        });
    }
    for (auto& th : threads) th.join();
    CHECK(failures.load() == 0);
}

TEST_CASE("duplicate detection looks only at top-level members and is not fooled by strings", "[auth][jwt][claims]") {
    auto key = jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret);
    auto v = jwt::Verifier{}.allow(key.verification_key());
    jwt::Token t;
    const std::string header = R"({"alg":"HS256"})";
    CHECK_FALSE(v.verify(jwt::sign_compact(header, R"({"a":"x:y\":z","b":{"a":1,"c":{"a":[1,":"]}},"c\\":"}"})", key), t));
    CHECK(t.claims.at("a") == "x:y\":z");
    CHECK(t.claims.size() == 3);
    CHECK(v.verify(jwt::sign_compact(header, R"({"a":"x:y\":z","b":1,"a":2})", key), t) == jwt_errc::invalid_claims_set);
    CHECK(v.verify(jwt::sign_compact(header, R"({"a":1,"\u0061":2})", key), t) == jwt_errc::invalid_claims_set);
    CHECK_FALSE(v.verify(jwt::sign_compact(header, "{}", key), t));
    CHECK(t.claims.empty());
}

#include <openssl/err.h>

TEST_CASE("refused tokens and keys leave the thread's OpenSSL error queue empty", "[auth][jwt][claims]") {
    ERR_clear_error();
    auto rs = jwt::SigningKey::private_key_pem(jwt::Algorithm::rs256, test_keys::rsa_pem);
    auto es = jwt::SigningKey::private_key_pem(jwt::Algorithm::es256, test_keys::ec_pem);
    auto v = jwt::Verifier{}.allow(rs.verification_key()).allow(es.verification_key());
    jwt::Token t;
    for (auto token : {jwt::sign({{"a", 1}}, rs), jwt::sign({{"a", 1}}, es)}) {
        token[token.rfind('.') + 2] = token[token.rfind('.') + 2] == 'A' ? 'B' : 'A';
        CHECK(v.verify(token, t) == jwt_errc::bad_signature);
        CHECK(ERR_peek_error() == 0);
    }
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::rs256, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), std::invalid_argument);
    CHECK(ERR_peek_error() == 0);
}

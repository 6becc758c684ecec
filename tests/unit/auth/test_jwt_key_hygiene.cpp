// Key hygiene (RFC 7518 §3.2 and §6.3, RFC 7517 §4.2–4.5, RFC 8725): what keys wsgate refuses
// to make, how key sets pick a key, and the limits on what a token's JSON may be.

#include "catch.hpp"
#include "test_keys.hpp"

#include <wsgate/auth/jwks.hpp>
#include <wsgate/auth/jwt.hpp>

#include <functional>
#include <string>
#include <vector>

using namespace wsgate;

namespace {

constexpr std::int64_t now_s = 1'700'000'000;

// RFC 7515 A.2's 2048-bit modulus, used with other exponents below.
constexpr const char* rfc_n =
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddx"
    "HmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMs"
    "D1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSH"
    "SXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdV"
    "MTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8"
    "NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";

const std::string secret_a = "key-hygiene-secret-a-0123456789abcdef";
const std::string secret_b = "key-hygiene-secret-b-0123456789abcdef";

nlohmann::json claims() { return {{"sub", "u1"}, {"exp", now_s + 60}}; }

std::shared_ptr<ManualClock> clock_at_now() { return std::make_shared<ManualClock>(from_unix_seconds(now_s)); }

std::string what_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "(no exception)";
}

// Claims `{"a":[[[...1...]]]}` whose deepest container sits at `depth` (the object is depth 1).
std::string nested_claims(std::size_t depth) {
    return R"({"sub":"u1","a":)" + std::string(depth - 1, '[') + "1" + std::string(depth - 1, ']') + "}";
}

}  // namespace

TEST_CASE("HMAC secrets shorter than the hash output are refused when the key is made", "[auth][jwt][keys]") {
    struct Case {
        jwt::Algorithm alg;
        std::size_t min;
    };
    for (auto c : {Case{jwt::Algorithm::hs256, 32}, Case{jwt::Algorithm::hs384, 48}, Case{jwt::Algorithm::hs512, 64}}) {
        INFO(jwt::to_string(c.alg));
        CHECK(jwt::min_hmac_secret_bytes(c.alg) == c.min);
        const std::string short_secret(c.min - 1, 's');
        const std::string ok_secret(c.min, 's');
        CHECK_THROWS_AS(jwt::Key::hmac(c.alg, short_secret), std::invalid_argument);
        CHECK_THROWS_AS(jwt::SigningKey::hmac(c.alg, short_secret), std::invalid_argument);
        CHECK(jwt::Key::hmac(c.alg, ok_secret).algorithm() == c.alg);
        CHECK(jwt::SigningKey::hmac(c.alg, ok_secret).algorithm() == c.alg);
        // The same rule holds for `oct` JWKs.
        nlohmann::json jwk{{"kty", "oct"}, {"alg", jwt::to_string(c.alg)}, {"k", jwt::base64url_encode(short_secret)}};
        CHECK_THROWS_AS(jwt::Key::from_jwk(jwk), std::invalid_argument);
    }
    CHECK(jwt::min_hmac_secret_bytes(jwt::Algorithm::rs256) == 0);
    // The message says what is wrong and what is needed, without the secret itself.
    const std::string msg = what_of([] { (void)jwt::Key::hmac(jwt::Algorithm::hs256, "x"); });
    CHECK(msg.find("HS256") != std::string::npos);
    CHECK(msg.find("at least 32") != std::string::npos);
    CHECK_THROWS_AS(jwt::SigningKey::hmac(jwt::Algorithm::hs256, "only-sixteen-byt"), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::hmac(jwt::Algorithm::hs384, std::string(47, 'k')), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::hmac(jwt::Algorithm::hs512, std::string(63, 'k')), std::invalid_argument);
}

TEST_CASE("RSA keys need a modulus of 2048 bits and an odd exponent of at least 3", "[auth][jwt][keys]") {
    auto rsa_jwk = [](const char* e) { return nlohmann::json{{"kty", "RSA"}, {"n", rfc_n}, {"e", e}}; };
    // e = 1: the RSA "signature" equals the padded digest, so anyone could forge tokens.
    CHECK_THROWS_AS(jwt::Key::from_jwk(rsa_jwk("AQ")), std::invalid_argument);
    CHECK(what_of([&] { (void)jwt::Key::from_jwk(rsa_jwk("AQ")); }).find("exponent") != std::string::npos);
    CHECK_THROWS_AS(jwt::Key::from_jwk(rsa_jwk("Ag")), std::invalid_argument);       // 2: even
    CHECK_THROWS_AS(jwt::Key::from_jwk(rsa_jwk("AQAA")), std::invalid_argument);     // 65536: even
    CHECK_THROWS_AS(jwt::Key::from_jwk(rsa_jwk("AA")), std::invalid_argument);       // 0
    CHECK(jwt::Key::from_jwk(rsa_jwk("Aw")).algorithm() == jwt::Algorithm::rs256);  // 3
    CHECK(jwt::Key::from_jwk(rsa_jwk("AQAB")).algorithm() == jwt::Algorithm::rs256);
    // The same rules for PS* keys and for PEM keys.
    CHECK_THROWS_AS(jwt::Key::from_jwk(rsa_jwk("AQ"), jwt::Algorithm::ps256), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::ps256, test_keys::rsa1024_pub), std::invalid_argument);
    // A 1024-bit modulus as a JWK.
    nlohmann::json small{{"kty", "RSA"}, {"e", "AQAB"}, {"n", jwt::base64url_encode(std::string(128, '\xC5'))}};
    CHECK_THROWS_AS(jwt::Key::from_jwk(small), std::invalid_argument);
}

TEST_CASE("a JWKS with one bad key is refused as a whole, naming the key", "[auth][jwt][keys][jwks]") {
    nlohmann::json good{{"kty", "RSA"}, {"kid", "good"}, {"n", rfc_n}, {"e", "AQAB"}};
    nlohmann::json bad{{"kty", "RSA"}, {"kid", "bad"}, {"n", rfc_n}, {"e", "AQ"}};
    nlohmann::json doc{{"keys", {good, bad}}};
    const std::string msg = what_of([&] { (void)jwt::parse_jwks(doc.dump()); });
    CHECK(msg.find("JWKS key 1") != std::string::npos);
    CHECK(msg.find("exponent") != std::string::npos);
    std::error_code ec;
    CHECK(jwt::parse_jwks(doc.dump(), ec).empty());
    CHECK(ec == jwt_errc::malformed);
    // A short HMAC secret in a JWKS is refused the same way.
    nlohmann::json short_oct{{"kty", "oct"}, {"kid", "hs"}, {"k", jwt::base64url_encode("short")}};
    CHECK_THROWS_AS(jwt::parse_jwks(nlohmann::json{{"keys", {good, short_oct}}}.dump()), std::invalid_argument);
    CHECK(jwt::parse_jwks(nlohmann::json{{"keys", {good}}}.dump()).size() == 1);
}

TEST_CASE("JWK use and key_ops are honoured: a key not meant for verification never verifies",
          "[auth][jwt][keys][jwks]") {
    const nlohmann::json oct{{"kty", "oct"}, {"k", jwt::base64url_encode(secret_a)}};
    auto with = [&](const char* member, nlohmann::json value) {
        nlohmann::json j = oct;
        j[member] = std::move(value);
        return j;
    };
    CHECK_THROWS_AS(jwt::Key::from_jwk(with("use", "enc")), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::from_jwk(with("use", 1)), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::from_jwk(with("key_ops", {"encrypt", "decrypt"})), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::from_jwk(with("key_ops", {"sign"})), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::from_jwk(with("key_ops", "verify")), std::invalid_argument);
    CHECK(jwt::Key::from_jwk(with("use", "sig")).algorithm() == jwt::Algorithm::hs256);
    CHECK(jwt::Key::from_jwk(with("key_ops", {"sign", "verify"})).algorithm() == jwt::Algorithm::hs256);
    // A signing key needs `sign`.
    CHECK_THROWS_AS(jwt::SigningKey::from_jwk(with("key_ops", {"verify"})), std::invalid_argument);
    CHECK(jwt::SigningKey::from_jwk(with("key_ops", {"sign"})).algorithm() == jwt::Algorithm::hs256);

    // In a JWKS such keys are passed over: a token naming one finds no key.
    nlohmann::json enc_key = with("key_ops", {"encrypt"});
    enc_key["kid"] = "enc";
    nlohmann::json wrap_key = with("use", "enc");
    wrap_key["kid"] = "wrap";
    nlohmann::json sig_key{{"kty", "oct"}, {"kid", "sig"}, {"k", jwt::base64url_encode(secret_b)}, {"use", "sig"}};
    auto keys = jwt::parse_jwks(nlohmann::json{{"keys", {enc_key, wrap_key, sig_key}}}.dump());
    REQUIRE(keys.size() == 1);
    CHECK(keys[0].kid() == "sig");
    auto v = jwt::Verifier{}.allow(keys).with_clock(clock_at_now());
    jwt::Token t;
    CHECK(v.verify(jwt::sign(claims(), jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret_a).with_kid("enc")), t) == jwt_errc::unknown_key);
    CHECK(v.verify(jwt::sign(claims(), jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret_a).with_kid("wrap")), t) == jwt_errc::unknown_key);
    CHECK_FALSE(v.verify(jwt::sign(claims(), jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret_b).with_kid("sig")), t));
}

TEST_CASE("a JWK's own alg binds it: asking for another algorithm is refused", "[auth][jwt][keys]") {
    nlohmann::json jwk{{"kty", "RSA"}, {"alg", "RS256"}, {"n", rfc_n}, {"e", "AQAB"}};
    CHECK(jwt::Key::from_jwk(jwk, jwt::Algorithm::rs256).algorithm() == jwt::Algorithm::rs256);
    CHECK_THROWS_AS(jwt::Key::from_jwk(jwk, jwt::Algorithm::ps256), std::invalid_argument);
    jwk.erase("alg");
    CHECK(jwt::Key::from_jwk(jwk, jwt::Algorithm::ps256).algorithm() == jwt::Algorithm::ps256);
}

TEST_CASE("duplicate kids are refused in a JWKS and in a verifier", "[auth][jwt][keys][jwks]") {
    nlohmann::json a{{"kty", "oct"}, {"kid", "same"}, {"k", jwt::base64url_encode(secret_a)}};
    nlohmann::json b{{"kty", "oct"}, {"kid", "same"}, {"k", jwt::base64url_encode(secret_b)}};
    const std::string msg = what_of([&] { (void)jwt::parse_jwks(nlohmann::json{{"keys", {a, b}}}.dump()); });
    CHECK(msg.find("duplicate kid") != std::string::npos);
    // A skipped (encryption) key may share a kid with a signature key (RFC 7517 §4.5).
    b["use"] = "enc";
    CHECK(jwt::parse_jwks(nlohmann::json{{"keys", {a, b}}}.dump()).size() == 1);

    jwt::Verifier v;
    v.allow(jwt::Key::hmac(jwt::Algorithm::hs256, secret_a).with_kid("k1"));
    CHECK_THROWS_AS(v.allow(jwt::Key::hmac(jwt::Algorithm::hs256, secret_b).with_kid("k1")), std::invalid_argument);
    std::vector<jwt::Key> batch{jwt::Key::hmac(jwt::Algorithm::hs256, secret_b).with_kid("k2"), jwt::Key::hmac(jwt::Algorithm::hs256, secret_b).with_kid("k1")};
    CHECK_THROWS_AS(v.allow(batch), std::invalid_argument);
    CHECK(v.keys().size() == 1);  // a refused batch adds nothing
    // Keys without a kid may be many (rotation without ids).
    v.allow(jwt::Key::hmac(jwt::Algorithm::hs256, secret_a)).allow(jwt::Key::hmac(jwt::Algorithm::hs256, secret_b));
    CHECK(v.keys().size() == 3);
}

TEST_CASE("a token with a kid is checked only with the key of that kid", "[auth][jwt][keys]") {
    auto v = jwt::Verifier{}
                 .allow(jwt::Key::hmac(jwt::Algorithm::hs256, secret_a))                  // no kid
                 .allow(jwt::Key::hmac(jwt::Algorithm::hs256, secret_b).with_kid("k1"))
                 .with_clock(clock_at_now());
    auto signed_by_a = [&](const char* kid) {
        auto key = jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret_a);
        return jwt::sign(claims(), *kid ? key.with_kid(kid) : key);
    };
    jwt::Token t;
    // The kid-less key does not stand in for k1, nor for a kid no key has.
    CHECK(v.verify(signed_by_a("k1"), t) == jwt_errc::bad_signature);
    CHECK(v.verify(signed_by_a("other"), t) == jwt_errc::unknown_key);
    // A token without kid selects nothing: every key of its algorithm is tried.
    CHECK_FALSE(v.verify(signed_by_a(""), t));
    CHECK_FALSE(v.verify(jwt::sign(claims(), jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret_b)), t));
    CHECK_FALSE(v.verify(jwt::sign(claims(), jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret_b).with_kid("k1")), t));

    SECTION("with the opt-in, kid-less keys serve unknown kids, never a kid that has its key") {
        v.kidless_keys_match_any_kid();
        CHECK_FALSE(v.verify(signed_by_a("other"), t));
        CHECK(v.verify(signed_by_a("k1"), t) == jwt_errc::bad_signature);
        v.kidless_keys_match_any_kid(false);
        CHECK(v.verify(signed_by_a("other"), t) == jwt_errc::unknown_key);
    }
    SECTION("the opt-in never lets a kid-less key serve a token when the verifier has no kid-less key") {
        auto only_ids = jwt::Verifier{}
                            .allow(jwt::Key::hmac(jwt::Algorithm::hs256, secret_b).with_kid("k1"))
                            .kidless_keys_match_any_kid()
                            .with_clock(clock_at_now());
        auto other_kid = jwt::sign(claims(), jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret_b).with_kid("k2"));
        CHECK(only_ids.verify(other_kid, t) == jwt_errc::unknown_key);
    }
}

TEST_CASE("header and claims nesting deeper than the limit are refused, whatever the length",
          "[auth][jwt][limits]") {
    auto key = jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret_a);
    auto v = jwt::Verifier{}.allow(key.verification_key()).with_clock(clock_at_now());
    jwt::Token t;
    CHECK(jwt::default_max_json_depth == 32);
    const auto at_limit = jwt::sign_compact(R"({"alg":"HS256"})", nested_claims(32), key);
    const auto over_limit = jwt::sign_compact(R"({"alg":"HS256"})", nested_claims(33), key);
    REQUIRE(over_limit.size() < 200);  // far inside the length limit
    CHECK_FALSE(v.verify(at_limit, t));
    CHECK(v.verify(over_limit, t) == jwt_errc::too_deep);
    CHECK(jwt::decode(over_limit, t) == jwt_errc::too_deep);
    CHECK_FALSE(jwt::decode(at_limit, t));
    // Brackets inside strings do not count.
    const auto in_string = jwt::sign_compact(R"({"alg":"HS256"})", R"({"s":")" + std::string(100, '[') + R"("})", key);
    CHECK_FALSE(v.verify(in_string, t));

    // The header has the same limit, checked before any key is looked at.
    const std::string deep_header = R"({"alg":"HS256","x":)" + std::string(32, '[') + std::string(32, ']') + "}";
    CHECK(v.verify(jwt::sign_compact(deep_header, claims().dump(), key), t) == jwt_errc::too_deep);

    // The limit is configurable.
    v.max_depth(4);
    CHECK(v.verify(jwt::sign_compact(R"({"alg":"HS256"})", nested_claims(5), key), t) == jwt_errc::too_deep);
    CHECK_FALSE(v.verify(jwt::sign_compact(R"({"alg":"HS256"})", nested_claims(4), key), t));
    CHECK_THROWS_AS(v.max_depth(0), std::invalid_argument);
    CHECK(reason_code(jwt_errc::too_deep) == "token_too_deep");
}

TEST_CASE("a good signature over a payload that is not a JSON object is not broken framing",
          "[auth][jwt][errors]") {
    auto key = jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret_a);
    auto v = jwt::Verifier{}.allow(key.verification_key()).with_clock(clock_at_now());
    jwt::Token t;
    for (const char* payload : {"[1,2]", "\"text\"", "42", "not json", R"({"sub":"a","sub":"b"})", ""}) {
        INFO(payload);
        if (*payload == '\0') continue;  // an empty payload segment is broken framing, below
        CHECK(v.verify(jwt::sign_compact(R"({"alg":"HS256"})", payload, key), t) == jwt_errc::invalid_claims_set);
    }
    // Broken framing stays `malformed`: a bad segment, an empty payload, a header that is no object.
    auto good = jwt::sign(claims(), key);
    CHECK(v.verify(good.substr(0, good.find('.')) + "..sig", t) == jwt_errc::malformed);
    CHECK(v.verify("e30." + good.substr(good.find('.') + 1), t) == jwt_errc::malformed);
    CHECK(v.verify(jwt::sign_compact("[]", claims().dump(), key), t) == jwt_errc::malformed);
    CHECK(v.verify("a b.c.d", t) == jwt_errc::malformed);
    // The new code is not reached without a valid signature.
    auto forged = jwt::sign_compact(R"({"alg":"HS256"})", "[1,2]", jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret_b));
    CHECK(v.verify(forged, t) == jwt_errc::bad_signature);
    CHECK(reason_code(jwt_errc::invalid_claims_set) == "invalid_claims_set");
    CHECK(std::error_code(jwt_errc::invalid_claims_set) != std::error_code(jwt_errc::malformed));
}

TEST_CASE("ES512 and EdDSA keys must be on their own curve", "[auth][jwt][keys]") {
    CHECK(jwt::Key::public_key_pem(jwt::Algorithm::es512, test_keys::ec521_pub).algorithm() == jwt::Algorithm::es512);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::es512, test_keys::ec_pub), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::es256, test_keys::ec521_pub), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::es512, test_keys::rsa_pub), std::invalid_argument);
    CHECK(jwt::Key::public_key_pem(jwt::Algorithm::eddsa, test_keys::ed25519_pub).algorithm() == jwt::Algorithm::eddsa);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::eddsa, test_keys::ed448_pub), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::eddsa, test_keys::ec_pub), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::public_key_pem(jwt::Algorithm::es256, test_keys::ed25519_pub), std::invalid_argument);
    CHECK_THROWS_AS(jwt::Key::hmac(jwt::Algorithm::eddsa, std::string(64, 'k')), std::invalid_argument);
    // OKP JWKs: Ed25519 only, 32-byte keys, and x must belong to d.
    nlohmann::json okp{{"kty", "OKP"}, {"crv", "Ed448"}, {"x", jwt::base64url_encode(std::string(57, 'x'))}};
    CHECK_THROWS_AS(jwt::Key::from_jwk(okp), std::invalid_argument);
    okp = {{"kty", "OKP"}, {"crv", "Ed25519"}, {"x", jwt::base64url_encode(std::string(31, 'x'))}};
    CHECK_THROWS_AS(jwt::Key::from_jwk(okp), std::invalid_argument);
    nlohmann::json mismatched{{"kty", "OKP"},
                              {"crv", "Ed25519"},
                              {"d", "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"},
                              {"x", jwt::base64url_encode(std::string(32, 'x'))}};
    CHECK_THROWS_AS(jwt::SigningKey::from_jwk(mismatched), std::invalid_argument);
    // A PS256 token meets an RS256 key of the same kid: the key decides.
    auto rs = jwt::Verifier{}.allow(jwt::Key::public_key_pem(jwt::Algorithm::rs256, test_keys::rsa_pub).with_kid("r")).with_clock(clock_at_now());
    jwt::Token t;
    auto ps_token = jwt::sign(claims(), jwt::SigningKey::private_key_pem(jwt::Algorithm::ps256, test_keys::rsa_pem)
                                            .with_kid("r"));
    CHECK(rs.verify(ps_token, t) == jwt_errc::disallowed_algorithm);
    // And the PKCS#1 v1.5 signature of the same key does not pass as PSS.
    auto ps = jwt::Verifier{}.allow(jwt::Key::public_key_pem(jwt::Algorithm::ps256, test_keys::rsa_pub)).with_clock(clock_at_now());
    auto pkcs1_under_ps_header =
        jwt::sign_compact(R"({"alg":"PS256"})", claims().dump(), jwt::SigningKey::private_key_pem(jwt::Algorithm::rs256, test_keys::rsa_pem));
    CHECK(ps.verify(pkcs1_under_ps_header, t) == jwt_errc::bad_signature);
    CHECK_FALSE(ps.verify(jwt::sign(claims(), jwt::SigningKey::private_key_pem(jwt::Algorithm::ps256,
                                                                                  test_keys::rsa_pem)),
                          t));
}

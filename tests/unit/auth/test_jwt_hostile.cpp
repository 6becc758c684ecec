// Hostile tokens: each must be refused with its specific jwt_errc, never crash or throw.

#include "catch.hpp"
#include "test_keys.hpp"

#include <wsgate/auth/jwks.hpp>
#include <wsgate/auth/jwt.hpp>

#include <string>
#include <vector>

using namespace wsgate;
using jwt::base64url_encode;

namespace {

constexpr std::int64_t now_s = 1'700'000'000;
const std::string secret = "hostile-suite-secret-0123456789abcdef";

nlohmann::json good_claims() {
    return {{"iss", "wsgate-tests"}, {"aud", "game"}, {"sub", "u1"}, {"iat", now_s - 10}, {"exp", now_s + 3600}};
}

jwt::Verifier make_verifier() {
    return jwt::Verifier{}
        .allow(jwt::Key::hmac(jwt::Algorithm::hs256, secret))
        .allow(jwt::Key::public_key_pem(jwt::Algorithm::rs256, test_keys::rsa_pub).with_kid("rsa1"))
        .allow(jwt::Key::public_key_pem(jwt::Algorithm::es256, test_keys::ec_pub).with_kid("ec1"))
        .with_issuer("wsgate-tests")
        .with_audience("game")
        .with_clock(std::make_shared<ManualClock>(from_unix_seconds(now_s)));
}

std::string hs(const nlohmann::json& claims, const nlohmann::json& header = nlohmann::json::object()) {
    return jwt::sign(claims, jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret), header);
}

// A token whose header bytes are exactly `header`, signed with HS256 over whatever it says.
std::string raw_hs(const std::string& header, const std::string& payload) {
    return jwt::sign_compact(header, payload, jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret));
}

std::string unsigned_token(const std::string& header, const nlohmann::json& claims) {
    return base64url_encode(header) + "." + base64url_encode(claims.dump()) + ".";
}

std::string with_claims(std::initializer_list<std::pair<const char*, nlohmann::json>> changes,
                        std::initializer_list<const char*> removals = {}) {
    auto c = good_claims();
    for (const auto& [k, v] : changes) c[k] = v;
    for (const char* k : removals) c.erase(k);
    return hs(c);
}

// Makes the last character of a base64url segment non-canonical (sets unused low bits).
std::string noncanonical_last(std::string seg) {
    static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    REQUIRE(seg.size() % 4 != 0);
    auto v = alphabet.find(seg.back());
    seg.back() = alphabet[v | 1];
    return seg;
}

std::vector<std::string> split3(const std::string& t) {
    auto a = t.find('.');
    auto b = t.find('.', a + 1);
    return {t.substr(0, a), t.substr(a + 1, b - a - 1), t.substr(b + 1)};
}

struct Hostile {
    std::string name;
    std::string token;
    jwt_errc expected;
};

}  // namespace

TEST_CASE("a well-formed token passes the hostile-suite verifier", "[auth][jwt][hostile]") {
    auto v = make_verifier();
    jwt::Token t;
    CHECK_FALSE(v.verify(hs(good_claims()), t));
    CHECK_FALSE(v.verify(jwt::sign(good_claims(), jwt::SigningKey::private_key_pem(jwt::Algorithm::rs256, test_keys::rsa_pem).with_kid("rsa1")), t));
    CHECK_FALSE(v.verify(jwt::sign(good_claims(), jwt::SigningKey::private_key_pem(jwt::Algorithm::es256, test_keys::ec_pem).with_kid("ec1")), t));
}

TEST_CASE("hostile tokens are refused with the expected error code", "[auth][jwt][hostile]") {
    const std::string good = hs(good_claims());
    const auto parts = split3(good);
    const std::string rsa_public_pem{test_keys::rsa_pub};
    const std::string rs_token =
        jwt::sign(good_claims(), jwt::SigningKey::private_key_pem(jwt::Algorithm::rs256, test_keys::rsa_pem).with_kid("rsa1"));
    const auto rs_parts = split3(rs_token);
    std::string sig_bytes;
    REQUIRE(jwt::base64url_decode(parts[2], sig_bytes));

    std::vector<Hostile> cases = {
        {"alg none", unsigned_token(R"({"alg":"none","typ":"JWT"})", good_claims()), jwt_errc::disallowed_algorithm},
        {"alg None", unsigned_token(R"({"alg":"None"})", good_claims()), jwt_errc::disallowed_algorithm},
        {"alg NONE", unsigned_token(R"({"alg":"NONE"})", good_claims()), jwt_errc::disallowed_algorithm},
        {"alg nOnE with a real HMAC", raw_hs(R"({"alg":"nOnE"})", good_claims().dump()),
         jwt_errc::disallowed_algorithm},
        {"alg none with the good signature", unsigned_token(R"({"alg":"none"})", good_claims()) + parts[2],
         jwt_errc::disallowed_algorithm},
        {"unknown alg HS1024", raw_hs(R"({"alg":"HS1024"})", good_claims().dump()), jwt_errc::disallowed_algorithm},
        {"lower-case hs256", raw_hs(R"({"alg":"hs256"})", good_claims().dump()), jwt_errc::disallowed_algorithm},
        {"PS256 under the kid of an RS256 key", raw_hs(R"({"alg":"PS256","kid":"rsa1"})", good_claims().dump()),
         jwt_errc::disallowed_algorithm},
        {"HS256 signed with the RSA public key as secret, kid rsa1",
         jwt::sign(good_claims(), jwt::SigningKey::hmac(jwt::Algorithm::hs256, rsa_public_pem), {{"kid", "rsa1"}}),
         jwt_errc::disallowed_algorithm},
        {"HS256 under a kid no key has", raw_hs(R"({"alg":"HS256","kid":"nobody"})", good_claims().dump()),
         jwt_errc::unknown_key},
        {"RS256 header over an HMAC signature", raw_hs(R"({"alg":"RS256","kid":"rsa1"})", good_claims().dump()),
         jwt_errc::bad_signature},
        {"ES256 header over an RSA signature",
         base64url_encode(R"({"alg":"ES256","kid":"ec1"})") + "." + rs_parts[1] + "." + rs_parts[2],
         jwt_errc::bad_signature},
        {"RS256 with a forged signature of the right length",
         rs_parts[0] + "." + rs_parts[1] + "." + base64url_encode(std::string(256, '\x5a')), jwt_errc::bad_signature},
        {"expired", with_claims({{"exp", now_s - 1}}), jwt_errc::expired},
        {"exp exactly now", with_claims({{"exp", now_s}}), jwt_errc::expired},
        {"nbf in the future", with_claims({{"nbf", now_s + 60}}), jwt_errc::not_yet_valid},
        {"iat in the future", with_claims({{"iat", now_s + 600}}), jwt_errc::not_yet_valid},
        {"wrong iss", with_claims({{"iss", "evil"}}), jwt_errc::wrong_issuer},
        {"iss differs only in case", with_claims({{"iss", "WSGATE-TESTS"}}), jwt_errc::wrong_issuer},
        {"wrong aud", with_claims({{"aud", "other"}}), jwt_errc::wrong_audience},
        {"aud array without ours", with_claims({{"aud", {"a", "b"}}}), jwt_errc::wrong_audience},
        {"missing iss", with_claims({}, {"iss"}), jwt_errc::missing_claim},
        {"missing aud", with_claims({}, {"aud"}), jwt_errc::missing_claim},
        {"exp as a string", with_claims({{"exp", "9999999999"}}), jwt_errc::invalid_claim},
        {"nbf as a bool", with_claims({{"nbf", true}}), jwt_errc::invalid_claim},
        {"aud as a number", with_claims({{"aud", 7}}), jwt_errc::invalid_claim},
        {"aud array with a number", with_claims({{"aud", {"game", 1}}}), jwt_errc::invalid_claim},
        {"iss as an object", with_claims({{"iss", {{"x", 1}}}}), jwt_errc::invalid_claim},
        {"truncated signature (16 of 32 bytes)", parts[0] + "." + parts[1] + "." + base64url_encode(sig_bytes.substr(0, 16)),
         jwt_errc::bad_signature},
        {"signature one byte short", parts[0] + "." + parts[1] + "." + base64url_encode(sig_bytes.substr(0, 31)),
         jwt_errc::bad_signature},
        {"signature one byte long", parts[0] + "." + parts[1] + "." + base64url_encode(sig_bytes + "x"),
         jwt_errc::bad_signature},
        {"empty signature", parts[0] + "." + parts[1] + ".", jwt_errc::bad_signature},
        {"signature of another payload", parts[0] + "." + split3(with_claims({{"sub", "admin"}}))[1] + "." + parts[2],
         jwt_errc::bad_signature},
        {"two segments", parts[0] + "." + parts[1], jwt_errc::malformed},
        {"four segments", good + ".AAAA", jwt_errc::malformed},
        {"five segments (JWE shape)", parts[0] + ".." + parts[1] + ".." + parts[2], jwt_errc::malformed},
        {"empty header segment", "." + parts[1] + "." + parts[2], jwt_errc::malformed},
        {"empty payload segment", parts[0] + ".." + parts[2], jwt_errc::malformed},
        {"empty token", "", jwt_errc::malformed},
        {"only dots", "..", jwt_errc::malformed},
        {"standard base64 '+' in payload", parts[0] + "." + parts[1].substr(0, 4) + "+" + parts[1].substr(5) + "." + parts[2],
         jwt_errc::malformed},
        {"standard base64 '/' in signature", parts[0] + "." + parts[1] + "." + "/" + parts[2].substr(1),
         jwt_errc::malformed},
        {"padding on the signature", good + "=", jwt_errc::malformed},
        {"padding on the header", base64url_encode(R"({"alg":"HS256"})") + "=." + parts[1] + "." + parts[2],
         jwt_errc::malformed},
        {"whitespace inside", parts[0] + ". " + parts[1] + "." + parts[2], jwt_errc::malformed},
        {"non-canonical base64url tail", parts[0] + "." + parts[1] + "." + noncanonical_last(parts[2]),
         jwt_errc::malformed},
        {"segment length 1 mod 4", parts[0] + "A." + parts[1] + "." + parts[2], jwt_errc::malformed},
        {"non-JSON header", base64url_encode("alg=HS256") + "." + parts[1] + "." + parts[2], jwt_errc::malformed},
        {"non-JSON payload (validly signed)", raw_hs(R"({"alg":"HS256"})", "not json"), jwt_errc::invalid_claims_set},
        {"payload is a JSON array (validly signed)", raw_hs(R"({"alg":"HS256"})", "[1,2]"),
         jwt_errc::invalid_claims_set},
        {"payload with duplicate exp (validly signed)",
         raw_hs(R"({"alg":"HS256"})", R"({"iss":"wsgate-tests","aud":"game","exp":1,"exp":9999999999})"),
         jwt_errc::invalid_claims_set},
        {"payload nested 40 deep (validly signed)",
         raw_hs(R"({"alg":"HS256"})", R"({"x":)" + std::string(39, '[') + std::string(39, ']') + "}"),
         jwt_errc::too_deep},
        {"header nested 40 deep", raw_hs(std::string(40, '[') + std::string(40, ']'), good_claims().dump()),
         jwt_errc::too_deep},
        {"header is an array", raw_hs(R"(["alg","HS256"])", good_claims().dump()), jwt_errc::malformed},
        {"header is a string", raw_hs(R"("HS256")", good_claims().dump()), jwt_errc::malformed},
        {"header without alg", raw_hs(R"({"typ":"JWT"})", good_claims().dump()), jwt_errc::malformed},
        {"duplicate alg", raw_hs(R"({"alg":"HS256","alg":"none"})", good_claims().dump()), jwt_errc::malformed},
        {"duplicate alg, same value", raw_hs(R"({"alg":"HS256","alg":"HS256"})", good_claims().dump()),
         jwt_errc::malformed},
        {"alg is a number", raw_hs(R"({"alg":256})", good_claims().dump()), jwt_errc::malformed},
        {"alg is an array", raw_hs(R"({"alg":["HS256"]})", good_claims().dump()), jwt_errc::malformed},
        {"alg is null", raw_hs(R"({"alg":null})", good_claims().dump()), jwt_errc::malformed},
        {"kid is a number", raw_hs(R"({"alg":"HS256","kid":1})", good_claims().dump()), jwt_errc::malformed},
        {"crit header", raw_hs(R"({"alg":"HS256","crit":["exp"],"exp":1})", good_claims().dump()),
         jwt_errc::malformed},
        {"b64=false extension", raw_hs(R"({"alg":"HS256","b64":false,"crit":["b64"]})", good_claims().dump()),
         jwt_errc::malformed},
        {"invalid UTF-8 in header", raw_hs("{\"alg\":\"HS256\",\"x\":\"\xff\xfe\"}", good_claims().dump()),
         jwt_errc::malformed},
        {"trailing garbage after header JSON", raw_hs(R"({"alg":"HS256"}x)", good_claims().dump()),
         jwt_errc::malformed},
        {"deeply nested header", raw_hs(std::string(20000, '[') + std::string(20000, ']'), good_claims().dump()),
         jwt_errc::too_long},
        {"1 MB token", std::string(1 << 20, 'A'), jwt_errc::too_long},
        {"1 MB valid-looking token", parts[0] + "." + std::string(1 << 20, 'A') + "." + parts[2], jwt_errc::too_long},
        {"NUL byte in token", parts[0] + std::string(1, '\0') + "." + parts[1] + "." + parts[2], jwt_errc::malformed},
    };
    REQUIRE(cases.size() >= 25);
    auto v = make_verifier();
    for (const auto& c : cases) {
        INFO("case: " << c.name);
        jwt::Token t;
        std::error_code ec;
        REQUIRE_NOTHROW(ec = v.verify(c.token, t));
        CHECK(ec == c.expected);
        // A refused token leaves the output untouched.
        CHECK(t.claims.empty());
    }
}

TEST_CASE("unknown kid and RS/HS confusion against key sets with ids", "[auth][jwt][hostile]") {
    const std::string rsa_public_pem{test_keys::rsa_pub};
    auto clock = std::make_shared<ManualClock>(from_unix_seconds(now_s));
    auto v = jwt::Verifier{}
                 .allow(jwt::Key::public_key_pem(jwt::Algorithm::rs256, test_keys::rsa_pub).with_kid("rsa1"))
                 .allow(jwt::Key::hmac(jwt::Algorithm::hs256, secret).with_kid("hs1"))
                 .with_clock(clock);
    jwt::Token t;
    nlohmann::json claims{{"sub", "u"}, {"exp", now_s + 60}};
    CHECK(v.verify(jwt::sign(claims, jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret).with_kid("nope")), t) == jwt_errc::unknown_key);
    CHECK_FALSE(v.verify(jwt::sign(claims, jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret).with_kid("hs1")), t));
    // The classic confusion: HS256 keyed with the RSA public key, presented under the RSA kid.
    auto confused = jwt::sign(claims, jwt::SigningKey::hmac(jwt::Algorithm::hs256, rsa_public_pem).with_kid("rsa1"));
    CHECK(v.verify(confused, t) == jwt_errc::disallowed_algorithm);
    // A verifier holding only the RSA key refuses every HS token as a disallowed algorithm.
    auto rsa_only = jwt::Verifier{}.allow(jwt::Key::public_key_pem(jwt::Algorithm::rs256, test_keys::rsa_pub)).with_clock(clock);
    CHECK(rsa_only.verify(jwt::sign(claims, jwt::SigningKey::hmac(jwt::Algorithm::hs256, rsa_public_pem)), t) ==
          jwt_errc::disallowed_algorithm);
    // A verifier without keys knows no key at all.
    CHECK(jwt::Verifier{}.verify(jwt::sign(claims, jwt::SigningKey::hmac(jwt::Algorithm::hs256, secret)), t) == jwt_errc::unknown_key);
}

TEST_CASE("decode() applies the same framing and never throws", "[auth][jwt][hostile]") {
    jwt::Token t;
    CHECK(jwt::decode("", t) == jwt_errc::malformed);
    CHECK(jwt::decode(std::string(9000, 'a'), t) == jwt_errc::too_long);
    CHECK(jwt::decode(raw_hs(R"({"alg":"HS256","alg":"x"})", "{}"), t) == jwt_errc::malformed);
    // Framing is fine; the payload is not a claims set.
    CHECK(jwt::decode(raw_hs(R"({"alg":"HS256"})", "[]"), t) == jwt_errc::invalid_claims_set);
    // 100 000 levels of nesting are refused before parsing, by the depth limit.
    CHECK(jwt::decode(raw_hs(std::string(100000, '[') + std::string(100000, ']'), "{}"), t, 1 << 20) ==
          jwt_errc::too_deep);
    const std::string deep_claims = R"({"a":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
    CHECK(jwt::decode(raw_hs(R"({"alg":"HS256"})", deep_claims), t, 1 << 20) == jwt_errc::too_deep);
    // With the limit raised past it, the parser itself copes with the same depth.
    CHECK(jwt::decode(raw_hs(R"({"alg":"HS256"})", deep_claims), t, 1 << 20, 200000) == std::error_code{});
    REQUIRE_FALSE(jwt::decode(raw_hs(R"({"alg":"whatever"})", R"({"a":1})"), t));
    CHECK(t.claim<int>("a") == std::optional<int>{1});
}

TEST_CASE("error messages and reason codes never echo key material or the token", "[auth][jwt][hostile]") {
    for (int e = 1; e <= static_cast<int>(jwt_errc::too_deep); ++e) {
        std::error_code ec = static_cast<jwt_errc>(e);
        CHECK(ec.message().find(secret) == std::string::npos);
        CHECK(ec.message().size() < 40);
        CHECK(reason_code(ec) != "invalid_token");
    }
    CHECK(std::string(jwt_category().name()) == "wsgate.jwt");
    try {
        (void)jwt::Key::public_key_pem(jwt::Algorithm::rs256, "-----BEGIN PUBLIC KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PUBLIC KEY-----\n");
        FAIL("garbage PEM accepted");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("c2VjcmV0") == std::string::npos);
    }
}

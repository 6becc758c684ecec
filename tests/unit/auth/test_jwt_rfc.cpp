// RFC 7515 Appendix A.1–A.3 and RFC 7519 §3.1, with the RFCs' exact tokens and keys.

#include "catch.hpp"

#include <wsgate/auth/jwks.hpp>
#include <wsgate/auth/jwt.hpp>

using namespace wsgate;

namespace {

// RFC 7515 A.1 / RFC 7519 §3.1.
constexpr const char* a1_jwk_k = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
constexpr const char* a1_token =
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
constexpr const char* a1_header = "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
constexpr const char* a1_payload = "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";

// RFC 7515 A.2 (RSASSA-PKCS1-v1_5 SHA-256), public part of the JWK.
constexpr const char* a2_n =
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddx"
    "HmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMs"
    "D1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSH"
    "SXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdV"
    "MTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8"
    "NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
constexpr const char* a2_token =
    "eyJhbGciOiJSUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7"
    "AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4"
    "BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K"
    "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv"
    "hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB"
    "p0igcN_IoypGlUPQGe77Rw";

// RFC 7515 A.3 (ECDSA P-256 SHA-256), public part of the JWK.
constexpr const char* a3_x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
constexpr const char* a3_y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
constexpr const char* a3_token =
    "eyJhbGciOiJFUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSA"
    "pmWQxfKTUJqPP3-Kg6NU1Q";

// The examples' exp is 1300819380 (2011-03-22); verify just before it.
std::shared_ptr<ManualClock> rfc_clock(std::int64_t unix_seconds = 1300819300) {
    return std::make_shared<ManualClock>(from_unix_seconds(unix_seconds));
}

nlohmann::json a2_jwk() { return {{"kty", "RSA"}, {"n", a2_n}, {"e", "AQAB"}, {"kid", "2010-12-29"}}; }
nlohmann::json a3_jwk() {
    return {{"kty", "EC"}, {"crv", "P-256"}, {"x", a3_x}, {"y", a3_y}, {"kid", "e9bc097a-ce51-4036-9562-d2ade882db0d"}};
}

std::string flip_last_signature_char(std::string t) {
    // Changing a middle character keeps the segment canonical base64url.
    auto pos = t.rfind('.') + 5;
    t[pos] = t[pos] == 'A' ? 'B' : 'A';
    return t;
}

void check_rfc_claims(const jwt::Token& t) {
    CHECK(t.claim<std::string>("iss") == std::optional<std::string>{"joe"});
    CHECK(t.claim<std::int64_t>("exp") == std::optional<std::int64_t>{1300819380});
    CHECK(t.claim<bool>("http://example.com/is_root") == std::optional<bool>{true});
    CHECK(t.expires_at() == from_unix_seconds(1300819380));
}

}  // namespace

TEST_CASE("RFC 7515 A.1 HS256: the RFC token verifies with the RFC key", "[auth][jwt][rfc]") {
    auto clock = rfc_clock();
    auto v = jwt::Verifier{}.allow(jwt::Key::from_jwk({{"kty", "oct"}, {"k", a1_jwk_k}})).with_clock(clock);
    jwt::Token t;
    REQUIRE_FALSE(v.verify(a1_token, t));
    check_rfc_claims(t);
    CHECK(t.algorithm() == "HS256");
    CHECK(t.header.at("typ") == "JWT");

    SECTION("a changed signature byte is a bad signature") {
        CHECK(v.verify(flip_last_signature_char(a1_token), t) == jwt_errc::bad_signature);
    }
    SECTION("at exp the token is expired; leeway extends it") {
        clock->set(from_unix_seconds(1300819380));
        CHECK(v.verify(a1_token, t) == jwt_errc::expired);
        v.leeway(std::chrono::seconds{60});
        CHECK_FALSE(v.verify(a1_token, t));
    }
    SECTION("the same key pinned to HS512 refuses the HS256 token") {
        auto v512 = jwt::Verifier{}
                        .allow(jwt::Key::from_jwk({{"kty", "oct"}, {"k", a1_jwk_k}}, jwt::Algorithm::hs512))
                        .with_clock(clock);
        CHECK(v512.verify(a1_token, t) == jwt_errc::disallowed_algorithm);
    }
}

TEST_CASE("RFC 7515 A.1 HS256: signing the RFC header and payload reproduces the RFC token", "[auth][jwt][rfc]") {
    std::string key;
    REQUIRE(jwt::base64url_decode(a1_jwk_k, key));
    REQUIRE(key.size() == 64);
    CHECK(static_cast<unsigned char>(key[0]) == 3);
    CHECK(static_cast<unsigned char>(key[63]) == 163);
    CHECK(jwt::sign_compact(a1_header, a1_payload, jwt::SigningKey::hmac(jwt::Algorithm::hs256, key)) == a1_token);
}

TEST_CASE("RFC 7519 §3.1: the example JWT decodes to the RFC's header and claims", "[auth][jwt][rfc]") {
    jwt::Token t;
    REQUIRE_FALSE(jwt::decode(a1_token, t));
    CHECK(t.header == nlohmann::json{{"typ", "JWT"}, {"alg", "HS256"}});
    CHECK(t.claims == nlohmann::json{{"iss", "joe"}, {"exp", 1300819380}, {"http://example.com/is_root", true}});
    // The encoded header is exactly the RFC's octets, CRLF and space included.
    std::string header;
    REQUIRE(jwt::base64url_decode("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9", header));
    CHECK(header == a1_header);
    std::string payload;
    REQUIRE(jwt::base64url_decode(
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ", payload));
    CHECK(payload == a1_payload);
}

TEST_CASE("RFC 7515 A.2 RS256: the RFC token verifies with the RFC public key", "[auth][jwt][rfc]") {
    auto clock = rfc_clock();
    auto v = jwt::Verifier{}.allow(jwt::Key::from_jwk(a2_jwk())).with_clock(clock);
    jwt::Token t;
    REQUIRE_FALSE(v.verify(a2_token, t));
    check_rfc_claims(t);
    CHECK(v.keys().at(0).kid() == "2010-12-29");
    CHECK(v.keys().at(0).algorithm() == jwt::Algorithm::rs256);
    CHECK(v.verify(flip_last_signature_char(a2_token), t) == jwt_errc::bad_signature);
    // Pinned to RS384, the same key refuses the RS256 token.
    auto v384 = jwt::Verifier{}.allow(jwt::Key::from_jwk(a2_jwk(), jwt::Algorithm::rs384)).with_clock(clock);
    CHECK(v384.verify(a2_token, t) == jwt_errc::disallowed_algorithm);
}

TEST_CASE("RFC 7515 A.3 ES256: the RFC token verifies with the RFC public key", "[auth][jwt][rfc]") {
    auto clock = rfc_clock();
    auto v = jwt::Verifier{}.allow(jwt::Key::from_jwk(a3_jwk())).with_clock(clock);
    jwt::Token t;
    REQUIRE_FALSE(v.verify(a3_token, t));
    check_rfc_claims(t);
    CHECK(v.verify(flip_last_signature_char(a3_token), t) == jwt_errc::bad_signature);
    // The same bytes presented as a DER signature are refused (JOSE signatures are r||s).
    std::string raw;
    std::string tok = a3_token;
    REQUIRE(jwt::base64url_decode(tok.substr(tok.rfind('.') + 1), raw));
    CHECK(raw.size() == 64);
    CHECK(v.verify(tok.substr(0, tok.rfind('.') + 1) + jwt::base64url_encode(raw.substr(0, 63)), t) ==
          jwt_errc::bad_signature);
}

TEST_CASE("RFC 7515 A.2/A.3 keys from a JWKS document", "[auth][jwt][rfc][jwks]") {
    nlohmann::json doc{{"keys",
                        {a2_jwk(), a3_jwk(),
                         {{"kty", "RSA"}, {"use", "enc"}, {"n", a2_n}, {"e", "AQAB"}, {"kid", "enc-key"}},
                         {{"kty", "OKP"}, {"crv", "Ed25519"}, {"x", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}}}};
    auto keys = jwt::parse_jwks(doc.dump());
    REQUIRE(keys.size() == 3);  // the encryption key is skipped; the Ed25519 key is kept
    CHECK(keys.at(2).algorithm() == jwt::Algorithm::eddsa);
    auto v = jwt::Verifier{}.allow(keys).with_clock(rfc_clock());
    jwt::Token t;
    CHECK_FALSE(v.verify(a2_token, t));
    CHECK_FALSE(v.verify(a3_token, t));
    CHECK(v.verify(a1_token, t) == jwt_errc::disallowed_algorithm);  // no HMAC key in the set

    std::error_code ec;
    CHECK(jwt::parse_jwks("{\"keys\":", ec).empty());
    CHECK(ec == jwt_errc::malformed);
    CHECK_THROWS_AS(jwt::parse_jwks(R"({"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]})"),
                    std::invalid_argument);
}

TEST_CASE("RFC 7515 A.2/A.3 private JWKs: wsgate's signatures match or verify against the RFC", "[auth][jwt][rfc]") {
    nlohmann::json rsa = a2_jwk();
    rsa["d"] =
        "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97I"
        "jlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0"
        "BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn"
        "439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYT"
        "CBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLh"
        "BOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ";
    rsa["p"] =
        "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdi"
        "YrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPG"
        "BY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc";
    rsa["q"] =
        "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxa"
        "ewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA"
        "-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc";
    rsa["dp"] =
        "BwKfV3Akq5_MFZDFZCnW-wzl-CCo83WoZvnLQwCTeDv8uzluRSnm71I3Q"
        "CLdhrqE2e9YkxvuxdBfpT_PI7Yz-FOKnu1R6HsJeDCjn12Sk3vmAktV2zb"
        "34MCdy7cpdTh_YVr7tss2u6vneTwrA86rZtu5Mbr1C1XsmvkxHQAdYo0";
    rsa["dq"] =
        "h_96-mK1R_7glhsum81dZxjTnYynPbZpHziZjeeHcXYsXaaMwkOlODsWa"
        "7I9xXDoRwbKgB719rrmI2oKr6N3Do9U0ajaHF-NKJnwgjMd2w9cjz3_-ky"
        "NlxAr2v4IKhGNpmM5iIgOS1VZnOZ68m6_pbLBSp3nssTdlqvd0tIiTHU";
    rsa["qi"] =
        "IYd7DHOhrWvxkwPQsRM2tOgrjbcrfvtQJipd-DlcxyVuuM9sQLdgjVk2o"
        "y26F0EmpScGLq2MowX7fhd_QJQ3ydy5cY7YIBi87w93IKLEdfnbJtoOPLU"
        "W0ITrJReOgo1cq9SbsxYawBgfp_gh6A5603k2-ZQwVK0JKSHuLFkuQ3U";
    // RSASSA-PKCS1-v1_5 is deterministic: the RFC's exact signature comes out.
    CHECK(jwt::sign_compact("{\"alg\":\"RS256\"}", a1_payload, jwt::SigningKey::from_jwk(rsa)) == a2_token);

    nlohmann::json ec = a3_jwk();
    ec["d"] = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";
    // ECDSA is randomised: the signature differs each time but verifies with the RFC public key.
    auto es = jwt::sign_compact("{\"alg\":\"ES256\"}", a1_payload, jwt::SigningKey::from_jwk(ec));
    auto es2 = jwt::sign_compact("{\"alg\":\"ES256\"}", a1_payload, jwt::SigningKey::from_jwk(ec));
    CHECK(es != es2);
    CHECK(es.substr(0, es.rfind('.')) == std::string(a3_token).substr(0, std::string(a3_token).rfind('.')));
    auto v = jwt::Verifier{}.allow(jwt::Key::from_jwk(a3_jwk())).with_clock(rfc_clock());
    jwt::Token t;
    CHECK_FALSE(v.verify(es, t));
    CHECK_FALSE(v.verify(es2, t));

    // A public JWK cannot sign.
    CHECK_THROWS_AS(jwt::SigningKey::from_jwk(a3_jwk()), std::invalid_argument);
}

namespace {

// RFC 8037 A.1/A.2 (Ed25519 key) and A.4 (the JWS over "Example of Ed25519 signing").
constexpr const char* rfc8037_d = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
constexpr const char* rfc8037_x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
constexpr const char* rfc8037_token =
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
    ".hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

// RFC 7520 §3.3/§3.4 (Figure 3: RSA public key), §3.1/§3.2 (Figures 1–2: P-521 key),
// §4.2 (Figure 20: PS384 JWS) and §4.3 (Figure 27: ES512 JWS). The payload is Figure 7's text.
constexpr const char* rfc7520_kid = "bilbo.baggins@hobbiton.example";
constexpr const char* rfc7520_n =
    "n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMa"
    "JMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tpe-OfVfHd1E6c"
    "S6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuCLqKnS2BYwd"
    "q_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw";
constexpr const char* rfc7520_p521_x =
    "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt";
constexpr const char* rfc7520_p521_y =
    "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1";
constexpr const char* rfc7520_p521_d =
    "AAhRON2r9cqXX1hg-RoI6R1tX5p2rUAYdmpHZoC1XNM56KtscrX6zbKipQrCW9CGZH3T4ubpnoTKLDYJ_fF3_rJt";
constexpr const char* rfc7520_payload_b64 =
    "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0"
    "aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91"
    "IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4";
constexpr const char* rfc7520_ps384_header = "eyJhbGciOiJQUzM4NCIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9";
constexpr const char* rfc7520_ps384_signature =
    "cu22eBqkYDKgIlTpzDXGvaFfz6WGoz7fUDcfT0kkOy42miAh2qyBzk1xEsnk2IpN6-tPid6VrklHkqsGqDqHCdP6O8TTB5dDDI"
    "tllVo6_1OLPpcbUrhiUSMxbbXUvdvWXzg-UD8biiReQFlfz28zGWVsdiNAUf8ZnyPEgVFn442ZdNqiVJRmBqrYRXe8P_ijQ7p8"
    "Vdz0TTrxUeT3lm8d9shnr2lfJT8ImUjvAA2Xez2Mlp8cBE5awDzT0qI0n6uiP1aCN_2_jLAeQTlqRHtfa64QQSUmFAAjVKPbBy"
    "i7xho0uTOcbH510a6GYmJUAfmWjwZ6oD4ifKo8DYM-X72Eaw";
constexpr const char* rfc7520_es512_header = "eyJhbGciOiJFUzUxMiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9";
constexpr const char* rfc7520_es512_signature =
    "AE_R_YZCChjn4791jSQCrdPZCNYqHXCTZH0-JZGYNlaAjP2kqaluUIIUnC9qvbu9Plon7KRTzoNEuT4Va2cmL1eJAQy3mtPBu_u"
    "_sDDyYjnAMDxXPn7XrT0lw-kvAD890jl8e2puQens_IEKBpHABlsbEPX6sFY8OcGDqoRuBomu9xQ2";

std::string compact(const char* header, const char* payload, const char* signature) {
    return std::string(header) + "." + payload + "." + signature;
}

nlohmann::json ed25519_jwk(bool with_private) {
    nlohmann::json j{{"kty", "OKP"}, {"crv", "Ed25519"}, {"x", rfc8037_x}};
    if (with_private) j["d"] = rfc8037_d;
    return j;
}

nlohmann::json p521_jwk(bool with_private) {
    nlohmann::json j{{"kty", "EC"},  {"kid", rfc7520_kid},    {"use", "sig"},
                     {"crv", "P-521"}, {"x", rfc7520_p521_x}, {"y", rfc7520_p521_y}};
    if (with_private) j["d"] = rfc7520_p521_d;
    return j;
}

}  // namespace

TEST_CASE("RFC 8037 A.4 EdDSA: signing the RFC input with the RFC key reproduces the RFC JWS", "[auth][jwt][rfc]") {
    auto key = jwt::SigningKey::from_jwk(ed25519_jwk(true));
    CHECK(key.algorithm() == jwt::Algorithm::eddsa);
    // Ed25519 is deterministic: byte-for-byte the RFC's signature.
    CHECK(jwt::sign_compact(R"({"alg":"EdDSA"})", "Example of Ed25519 signing", key) == rfc8037_token);
}

TEST_CASE("RFC 8037 A.5 EdDSA: the RFC JWS verifies with the RFC public key", "[auth][jwt][rfc]") {
    auto v = jwt::Verifier{}.allow(jwt::Key::from_jwk(ed25519_jwk(false))).with_clock(rfc_clock());
    jwt::Token t;
    // The signature verifies; the payload is text, not a claims set, and says so.
    CHECK(v.verify(rfc8037_token, t) == jwt_errc::invalid_claims_set);
    CHECK(v.verify(flip_last_signature_char(rfc8037_token), t) == jwt_errc::bad_signature);
    // A JWT signed with the same key verifies fully.
    auto token = jwt::sign({{"iss", "joe"}, {"exp", 1300819380}}, jwt::SigningKey::from_jwk(ed25519_jwk(true)));
    REQUIRE_FALSE(v.verify(token, t));
    CHECK(t.algorithm() == "EdDSA");
    CHECK(t.claim<std::string>("iss") == std::optional<std::string>{"joe"});
}

TEST_CASE("RFC 7520 4.2 PS384: the RFC JWS verifies with the RFC public key", "[auth][jwt][rfc]") {
    nlohmann::json jwk{{"kty", "RSA"}, {"kid", rfc7520_kid}, {"use", "sig"}, {"n", rfc7520_n}, {"e", "AQAB"}};
    auto v = jwt::Verifier{}.allow(jwt::Key::from_jwk(jwk, jwt::Algorithm::ps384)).with_clock(rfc_clock());
    jwt::Token t;
    const std::string token = compact(rfc7520_ps384_header, rfc7520_payload_b64, rfc7520_ps384_signature);
    // RSASSA-PSS is randomised, so the RFC's signature is checked, not reproduced. It verifies;
    // the payload is prose, not claims.
    CHECK(v.verify(token, t) == jwt_errc::invalid_claims_set);
    CHECK(v.verify(flip_last_signature_char(token), t) == jwt_errc::bad_signature);
    // The same key bound to RS384 refuses it.
    auto rs = jwt::Verifier{}.allow(jwt::Key::from_jwk(jwk, jwt::Algorithm::rs384)).with_clock(rfc_clock());
    CHECK(rs.verify(token, t) == jwt_errc::disallowed_algorithm);
}

TEST_CASE("RFC 7520 4.3 ES512: the RFC JWS verifies, and the RFC key's own signatures verify", "[auth][jwt][rfc]") {
    auto key = jwt::Key::from_jwk(p521_jwk(false));
    CHECK(key.algorithm() == jwt::Algorithm::es512);
    auto v = jwt::Verifier{}.allow(key).with_clock(rfc_clock());
    jwt::Token t;
    const std::string token = compact(rfc7520_es512_header, rfc7520_payload_b64, rfc7520_es512_signature);
    std::string sig;
    REQUIRE(jwt::base64url_decode(rfc7520_es512_signature, sig));
    CHECK(sig.size() == 132);  // r||s, 66 bytes each
    CHECK(v.verify(token, t) == jwt_errc::invalid_claims_set);
    CHECK(v.verify(flip_last_signature_char(token), t) == jwt_errc::bad_signature);
    // ECDSA is randomised: sign the RFC's header and payload anew and verify the result.
    std::string payload;
    REQUIRE(jwt::base64url_decode(rfc7520_payload_b64, payload));
    std::string header;
    REQUIRE(jwt::base64url_decode(rfc7520_es512_header, header));
    auto signer = jwt::SigningKey::from_jwk(p521_jwk(true));
    auto mine = jwt::sign_compact(header, payload, signer);
    CHECK(mine.substr(0, mine.rfind('.')) == token.substr(0, token.rfind('.')));
    CHECK(mine != token);
    CHECK(v.verify(mine, t) == jwt_errc::invalid_claims_set);
    auto jwt_token = jwt::sign({{"iss", "joe"}, {"exp", 1300819380}}, signer);
    CHECK_FALSE(v.verify(jwt_token, t));
}

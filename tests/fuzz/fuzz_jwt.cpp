// libFuzzer target: token framing, header/claims parsing and verification with HS/RS/ES keys,
// plus JWKS parsing. Any crash, sanitizer report or exception escaping is a bug.

#include <wsgate/auth/jwks.hpp>
#include <wsgate/auth/jwt.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

// Fixed test keys (the RFC 7515 A.2 and A.3 public keys, an HMAC secret).
const wsgate::jwt::Verifier& verifier() {
    static const wsgate::jwt::Verifier v = [] {
        auto keys = wsgate::jwt::parse_jwks(R"({"keys":[
          {"kty":"RSA","kid":"2010-12-29","e":"AQAB","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"},
          {"kty":"EC","kid":"e9bc","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})");
        wsgate::jwt::Verifier out;
        out.allow(keys)
            .allow(wsgate::jwt::Key::hmac(wsgate::jwt::Algorithm::hs256, "fuzz-secret-0123456789abcdef-0123"))
            .with_issuer("joe")
            .with_audience("game")
            .leeway(std::chrono::seconds{30});
        return out;
    }();
    return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    try {
        wsgate::jwt::Token token;
        (void)verifier().verify(input, token);
        wsgate::jwt::Token decoded;
        if (!wsgate::jwt::decode(input, decoded, 1 << 16)) {
            (void)decoded.claim<std::string>("sub");
            (void)decoded.claim<std::int64_t>("exp");
            (void)decoded.claim<std::vector<std::string>>("permissions");
            (void)decoded.expires_at();
            (void)decoded.audience();
        }
        std::string raw;
        if (wsgate::jwt::base64url_decode(input, raw) && wsgate::jwt::base64url_encode(raw) != input) std::abort();
        std::error_code ec;
        (void)wsgate::jwt::parse_jwks(input, ec);
    } catch (...) {
        std::abort();  // nothing on this path may throw
    }
    return 0;
}

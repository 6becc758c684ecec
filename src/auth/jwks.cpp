// wsgate::jwt JWKS parsing.

#include <wsgate/auth/jwks.hpp>

#include <stdexcept>

namespace wsgate::jwt {

std::vector<Key> parse_jwks(std::string_view document) {
    auto doc = nlohmann::json::parse(document.begin(), document.end(), nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) throw std::invalid_argument("wsgate::jwt: JWKS is not a JSON object");
    auto keys = doc.find("keys");
    if (keys == doc.end() || !keys->is_array()) throw std::invalid_argument("wsgate::jwt: JWKS without a keys array");
    std::vector<Key> out;
    for (const auto& jwk : *keys) {
        if (!jwk.is_object()) throw std::invalid_argument("wsgate::jwt: JWKS entry is not an object");
        if (auto use = jwk.find("use"); use != jwk.end() && use->is_string() && *use != "sig") continue;
        auto kty = jwk.find("kty");
        if (kty == jwk.end() || !kty->is_string()) continue;
        if (*kty != "oct" && *kty != "RSA" && *kty != "EC") continue;
        if (*kty == "EC") {
            auto crv = jwk.find("crv");
            if (crv == jwk.end() || !crv->is_string() || (*crv != "P-256" && *crv != "P-384")) continue;
        }
        if (auto alg = jwk.find("alg"); alg != jwk.end() && alg->is_string() &&
                                        !algorithm_from_string(alg->get_ref<const std::string&>()))
            continue;  // e.g. PS256, EdDSA: not ours to verify
        out.push_back(Key::from_jwk(jwk));
    }
    return out;
}

std::vector<Key> parse_jwks(std::string_view document, std::error_code& ec) noexcept {
    try {
        ec.clear();
        return parse_jwks(document);
    } catch (...) {
        ec = jwt_errc::malformed;
        return {};
    }
}

}  // namespace wsgate::jwt

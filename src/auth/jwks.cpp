// wsgate::jwt JWKS parsing.

#include <wsgate/auth/jwks.hpp>

#include <stdexcept>
#include <string>

namespace wsgate::jwt {

namespace {

bool is_string_member(const nlohmann::json& jwk, const char* name, const char* value) {
    auto it = jwk.find(name);
    return it != jwk.end() && it->is_string() && *it == value;
}

// Whether a JWKS entry is a signature-verification key of a type and curve wsgate implements.
// Everything else in a JWKS (encryption keys, key-agreement curves, algorithms wsgate does not
// know) is someone else's key and is passed over rather than refused.
bool is_ours(const nlohmann::json& jwk) {
    if (auto use = jwk.find("use"); use != jwk.end() && *use != "sig") return false;
    if (auto ops = jwk.find("key_ops"); ops != jwk.end()) {
        if (!ops->is_array()) return false;
        bool verify = false;
        for (const auto& o : *ops) verify = verify || o == "verify";
        if (!verify) return false;
    }
    auto kty = jwk.find("kty");
    if (kty == jwk.end() || !kty->is_string()) return false;
    if (*kty == "EC") {
        if (!is_string_member(jwk, "crv", "P-256") && !is_string_member(jwk, "crv", "P-384") &&
            !is_string_member(jwk, "crv", "P-521"))
            return false;
    } else if (*kty == "OKP") {
        if (!is_string_member(jwk, "crv", "Ed25519")) return false;
    } else if (*kty != "oct" && *kty != "RSA") {
        return false;
    }
    if (auto alg = jwk.find("alg");
        alg != jwk.end() && alg->is_string() && !algorithm_from_string(alg->get_ref<const std::string&>()))
        return false;  // e.g. RSA-OAEP, ES256K: not a signature algorithm wsgate verifies
    return true;
}

}  // namespace

std::vector<Key> parse_jwks(std::string_view document) {
    auto doc = nlohmann::json::parse(document.begin(), document.end(), nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded() || !doc.is_object()) throw std::invalid_argument("wsgate::jwt: JWKS is not a JSON object");
    auto keys = doc.find("keys");
    if (keys == doc.end() || !keys->is_array()) throw std::invalid_argument("wsgate::jwt: JWKS without a keys array");
    std::vector<Key> out;
    std::size_t index = 0;
    for (const auto& jwk : *keys) {
        const std::string where = "wsgate::jwt: JWKS key " + std::to_string(index++);
        if (!jwk.is_object()) throw std::invalid_argument(where + " is not an object");
        if (!is_ours(jwk)) continue;
        // One bad verification key refuses the whole document: silently dropping it would turn an
        // issuer's mistake (or a tampered document) into tokens that fail for no visible reason.
        try {
            out.push_back(Key::from_jwk(jwk));
        } catch (const std::invalid_argument& e) {
            std::string what = e.what();
            if (what.rfind("wsgate::jwt: ", 0) == 0) what.erase(0, 13);
            throw std::invalid_argument(where + ": " + what);
        }
        const std::string& kid = out.back().kid();
        if (kid.empty()) continue;
        for (std::size_t i = 0; i + 1 < out.size(); ++i)
            if (out[i].kid() == kid) throw std::invalid_argument(where + ": duplicate kid \"" + kid + "\"");
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

// wsgate public device tokens.

#include <wsgate/auth/public_tokens.hpp>
#include <wsgate/random.hpp>

#include <algorithm>
#include <stdexcept>

namespace wsgate {

bool is_valid_device_id(std::string_view id) noexcept {
    if (id.empty() || id.size() > 128) return false;
    return std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == ':' || c == '-';
    });
}

std::optional<PublicTokenRequest> PublicTokenRequest::from_json(const nlohmann::json& body) noexcept {
    try {
        PublicTokenRequest r;
        if (body.is_null()) return r;
        if (!body.is_object()) return std::nullopt;
        if (auto it = body.find("deviceId"); it != body.end() && !it->is_null()) {
            if (!it->is_string()) return std::nullopt;
            r.device_id = it->get<std::string>();
        }
        if (auto it = body.find("permissions"); it != body.end() && !it->is_null()) {
            if (!it->is_array()) return std::nullopt;
            std::vector<std::string> perms;
            for (const auto& p : *it) {
                if (!p.is_string()) return std::nullopt;
                perms.push_back(p.get<std::string>());
            }
            r.permissions = std::move(perms);
        }
        if (auto it = body.find("lifetimeSeconds"); it != body.end() && !it->is_null()) {
            if (!it->is_number_integer()) return std::nullopt;
            r.lifetime = std::chrono::seconds{it->get<std::int64_t>()};
        }
        return r;
    } catch (...) {
        return std::nullopt;
    }
}

void to_json(nlohmann::json& j, const PublicToken& t) {
    j = nlohmann::json{{"deviceId", t.device_id},
                       {"token", t.token},
                       {"permissions", t.permissions},
                       {"issuedAt", format_iso8601(t.issued_at)},
                       {"expiresAt", format_iso8601(t.expires_at)}};
}

nlohmann::json public_token_response(const PublicToken& t, const PublicTokenResponseOptions& options) {
    nlohmann::json j = t;
    j["success"] = true;
    j["timestamp"] = j["issuedAt"];
    if (options.public_token_field) j["publicToken"] = t.token;
    return j;
}

nlohmann::json public_token_error(std::string_view message) {
    return nlohmann::json{{"success", false}, {"error", std::string{message}}};
}

PublicTokenIssuer::PublicTokenIssuer(jwt::SigningKey key, PublicTokenSettings settings,
                                     std::shared_ptr<const Clock> clock)
    : key_(std::move(key)), settings_(std::move(settings)), clock_(std::move(clock)) {
    if (settings_.lifetime.count() <= 0 || settings_.max_lifetime < settings_.lifetime)
        throw std::invalid_argument("wsgate::PublicTokenIssuer: lifetime must be in (0, max_lifetime]");
    if (!clock_) clock_ = std::make_shared<SystemClock>();
}

std::optional<PublicToken> PublicTokenIssuer::issue(const PublicTokenRequest& request) const {
    PublicToken t;
    if (request.device_id.empty()) {
        t.device_id = settings_.device_id_prefix + random_token(16);
    } else {
        if (!is_valid_device_id(request.device_id)) return std::nullopt;
        t.device_id = request.device_id;
    }
    if (request.permissions) {
        const auto& allowed =
            settings_.allowed_permissions.empty() ? settings_.default_permissions : settings_.allowed_permissions;
        for (const auto& p : *request.permissions)
            if (std::find(allowed.begin(), allowed.end(), p) == allowed.end()) return std::nullopt;
        t.permissions = *request.permissions;
    } else {
        t.permissions = settings_.default_permissions;
    }
    auto lifetime = request.lifetime.value_or(settings_.lifetime);
    if (lifetime.count() <= 0 || lifetime > settings_.max_lifetime) return std::nullopt;

    // Whole seconds, as NumericDate claims carry them.
    const std::int64_t iat = to_unix_seconds(clock_->now());
    const std::int64_t exp = iat + lifetime.count();
    t.issued_at = from_unix_seconds(iat);
    t.expires_at = from_unix_seconds(exp);

    nlohmann::json claims{{"kind", public_token_kind},
                          {"deviceId", t.device_id},
                          {"permissions", t.permissions},
                          {"iat", iat},
                          {"exp", exp}};
    if (!settings_.issuer.empty()) claims["iss"] = settings_.issuer;
    if (!settings_.audience.empty()) claims["aud"] = settings_.audience;
    t.token = jwt::sign(claims, key_);
    return t;
}

jwt::Verifier PublicTokenIssuer::verifier() const {
    jwt::Verifier v;
    v.allow(key_.verification_key()).with_clock(clock_).require_claim("exp").require_claim("deviceId");
    if (!settings_.issuer.empty()) v.with_issuer(settings_.issuer);
    if (!settings_.audience.empty()) v.with_audience(settings_.audience);
    return v;
}

}  // namespace wsgate

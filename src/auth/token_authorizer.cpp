// wsgate TokenAuthorizer: session token first, public device token second.

#include <wsgate/auth/token_authorizer.hpp>
#include <wsgate/auth/public_tokens.hpp>
#include <wsgate/detail/text.hpp>

#include <stdexcept>

namespace wsgate {

namespace {

using detail::iequals;
using detail::trim;

// The first string among `names` in `claims`, moved out of `rest`.
std::string take_string(const nlohmann::json& claims, nlohmann::json& rest, std::initializer_list<const char*> names) {
    std::string value;
    for (const char* n : names) {
        auto it = claims.find(n);
        if (it == claims.end()) continue;
        if (value.empty() && it->is_string()) value = it->get<std::string>();
        if (it->is_string()) rest.erase(n);
    }
    return value;
}

std::vector<std::string> permissions_of(const nlohmann::json& claims, nlohmann::json& rest) {
    std::vector<std::string> out;
    if (auto it = claims.find("permissions"); it != claims.end() && it->is_array()) {
        for (const auto& p : *it)
            if (p.is_string()) out.push_back(p.get<std::string>());
        rest.erase("permissions");
        return out;
    }
    if (auto it = claims.find("scope"); it != claims.end() && it->is_string()) {
        std::string_view s = it->get_ref<const std::string&>();
        while (!s.empty()) {
            auto sp = s.find(' ');
            auto word = s.substr(0, sp);
            if (!word.empty()) out.emplace_back(word);
            if (sp == std::string_view::npos) break;
            s.remove_prefix(sp + 1);
        }
        rest.erase("scope");
    }
    return out;
}

// Errors raised after the signature verified: the token was meant for this verifier.
bool is_post_signature(std::error_code ec) noexcept {
    return ec == jwt_errc::expired || ec == jwt_errc::not_yet_valid || ec == jwt_errc::wrong_issuer ||
           ec == jwt_errc::wrong_audience || ec == jwt_errc::missing_claim || ec == jwt_errc::invalid_claim;
}

}  // namespace

TokenAuthorizer::TokenAuthorizer(jwt::Verifier session, TokenAuthorizerSettings settings)
    : session_(std::move(session)), settings_(std::move(settings)) {}

TokenAuthorizer::TokenAuthorizer(std::optional<jwt::Verifier> session, std::optional<jwt::Verifier> public_device,
                                 TokenAuthorizerSettings settings)
    : session_(std::move(session)), public_(std::move(public_device)), settings_(std::move(settings)) {
    if (!session_ && !public_) throw std::invalid_argument("wsgate::TokenAuthorizer: no verifier");
}

std::optional<std::string> TokenAuthorizer::extract_token(const ConnectRequest& request,
                                                          const TokenAuthorizerSettings& settings) {
    if (!settings.query_parameter.empty()) {
        if (const std::string* q = request.query_param(settings.query_parameter); q != nullptr && !q->empty())
            return *q;
    }
    if (settings.accept_bearer_header) {
        if (const std::string* h = request.header("authorization"); h != nullptr) {
            std::string_view v = trim(*h);
            if (v.size() > 7 && iequals(v.substr(0, 7), "bearer ")) {
                auto t = trim(v.substr(7));
                if (!t.empty()) return std::string(t);
            }
        }
    }
    if (settings.accept_subprotocol) {
        if (const std::string* h = request.header("sec-websocket-protocol"); h != nullptr) {
            // The entry after the first marker is the token; a bare token is not taken, because
            // the server could echo no protocol for it and browsers fail such a handshake.
            std::string_view rest = *h;
            bool after_marker = false;
            while (!rest.empty()) {
                auto comma = rest.find(',');
                auto entry = trim(rest.substr(0, comma));
                if (after_marker) return entry.empty() ? std::nullopt : std::optional<std::string>(entry);
                for (const auto& m : settings.marker_subprotocols) after_marker = after_marker || iequals(entry, m);
                if (comma == std::string_view::npos) break;
                rest.remove_prefix(comma + 1);
            }
        }
    }
    return std::nullopt;
}

bool TokenAuthorizer::is_public_token(const jwt::Token& token, const TokenAuthorizerSettings& settings) {
    auto marked = [&](const char* claim) {
        auto it = token.claims.find(claim);
        return it != token.claims.end() && it->is_string() && it->get_ref<const std::string&>() == public_token_kind;
    };
    return marked("kind") || (settings.accept_type_public && marked("type"));
}

Principal TokenAuthorizer::session_principal(const jwt::Token& token) {
    Principal p;
    p.kind = PrincipalKind::user;
    const auto& c = token.claims;
    nlohmann::json rest = c;
    p.user_id = take_string(c, rest, {"sub", "userId", "user_id"});
    p.session_id = take_string(c, rest, {"sid", "sessionId", "session_id"});
    p.device_id = take_string(c, rest, {"deviceId", "device_id"});
    p.nickname = take_string(c, rest, {"nickname", "name"});
    p.permissions = permissions_of(c, rest);
    if (auto iat = token.issued_at()) {
        p.issued_at = *iat;
        rest.erase("iat");
    }
    p.expires_at = token.expires_at();
    p.claims = std::move(rest);
    return p;
}

Principal TokenAuthorizer::public_principal(const jwt::Token& token) {
    Principal p;
    p.kind = PrincipalKind::public_device;
    const auto& c = token.claims;
    nlohmann::json rest = c;
    p.device_id = take_string(c, rest, {"deviceId", "device_id"});
    p.permissions = permissions_of(c, rest);
    if (auto iat = token.issued_at()) {
        p.issued_at = *iat;
        rest.erase("iat");
    }
    p.expires_at = token.expires_at();
    rest.erase("kind");
    if (auto it = rest.find("type"); it != rest.end() && it->is_string() &&
                                      it->get_ref<const std::string&>() == public_token_kind)
        rest.erase(it);
    p.claims = std::move(rest);
    return p;
}

AuthDecision TokenAuthorizer::authorize(const ConnectRequest& request) {
    auto token = extract_token(request, settings_);
    if (!token) return AuthDecision::deny(401, "missing_token");

    std::error_code session_ec, public_ec;
    if (session_) {
        jwt::Token t;
        session_ec = session_->verify(*token, t);
        if (!session_ec) {
            if (!is_public_token(t, settings_)) return AuthDecision::allow(session_principal(t));
            // Signed with the session key but marked public: not a session. Fall through.
            session_ec = jwt_errc::invalid_claim;
        }
    }
    if (public_) {
        jwt::Token t;
        public_ec = public_->verify(*token, t);
        if (!public_ec) {
            if (is_public_token(t, settings_)) {
                Principal p = public_principal(t);
                if (!p.device_id.empty()) return AuthDecision::allow(std::move(p));
                public_ec = jwt_errc::missing_claim;
            } else {
                public_ec = jwt_errc::invalid_claim;
            }
        }
    }
    std::error_code ec;
    if (!session_)
        ec = public_ec;
    else if (!public_)
        ec = session_ec;
    else
        ec = (!is_post_signature(session_ec) && is_post_signature(public_ec)) ? public_ec : session_ec;
    return AuthDecision::deny(401, std::string(reason_code(ec)), ec);
}

}  // namespace wsgate

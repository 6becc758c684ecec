// The demo's tokens (seed 001): user session JWTs (HS256, session secret) and public device JWTs
// (HS256, public secret) minted by POST /public/token, both checked by TokenAuthorizer.
#include "demo_auth.hpp"

#include <wsgate/auth/token_authorizer.hpp>
#include <wsgate/auth/public_tokens.hpp>
#include <wsgate/clock.hpp>

#include <stdexcept>
#include <string>

namespace demo {
namespace {

// The HS256 key for a secret given by `flag`; a secret too short for HS256 is reported with the
// flag's name so the operator knows which one to fix.
wsgate::jwt::SigningKey hs256_for(const std::string& secret, const char* flag) {
    try {
        return wsgate::jwt::SigningKey::hmac(wsgate::jwt::Algorithm::hs256, secret);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("--") + flag + ": " + e.what());
    }
}

// Lets token-less clients in as anonymous readers; everything else goes to `inner`.
class AnonymousFallback final : public wsgate::Authorizer {
public:
    explicit AnonymousFallback(std::shared_ptr<wsgate::Authorizer> inner) : inner_(std::move(inner)) {}
    wsgate::AuthDecision authorize(const wsgate::ConnectRequest& req) override {
        wsgate::TokenAuthorizerSettings s;
        if (!wsgate::TokenAuthorizer::extract_token(req, s)) {
            // An anonymous reader: the status board's read permissions, nothing else (the
            // topic rules name the topics anonymous principals may read).
            wsgate::Principal p;
            p.kind = wsgate::PrincipalKind::anonymous;
            p.permissions = public_permissions();
            return wsgate::AuthDecision::allow(std::move(p));
        }
        return inner_->authorize(req);
    }

private:
    std::shared_ptr<wsgate::Authorizer> inner_;
};

}  // namespace

DemoAuth make_demo_auth(const AuthConfig& cfg) {
    wsgate::PublicTokenSettings pts;
    pts.default_permissions = public_permissions();
    auto issuer = std::make_shared<wsgate::PublicTokenIssuer>(hs256_for(cfg.public_secret, "public-secret"), pts);
    auto session = wsgate::jwt::Verifier{}
                       .allow(hs256_for(cfg.session_secret, "session-secret").verification_key())
                       .require_claim("exp");
    std::shared_ptr<wsgate::Authorizer> authz =
        std::make_shared<wsgate::TokenAuthorizer>(std::move(session), issuer->verifier());
    if (cfg.allow_anonymous) authz = std::make_shared<AnonymousFallback>(std::move(authz));

    DemoAuth out;
    out.authorizer = std::move(authz);
    out.kind = "jwt";
    out.description = "HS256 user session tokens (session secret) and public device tokens (public secret)";
    out.issue_public_token = [issuer](const std::string& device_id) -> nlohmann::json {
        wsgate::PublicTokenRequest req;
        req.device_id = device_id;
        auto t = issuer->issue(req);
        if (!t) return wsgate::public_token_error("invalid deviceId");
        return wsgate::public_token_response(*t);  // {success, deviceId, token, permissions, issuedAt, expiresAt, timestamp}
    };
    return out;
}

}  // namespace demo

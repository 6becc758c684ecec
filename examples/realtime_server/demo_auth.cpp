// Public device tokens for the demo, kept in memory: an opaque random token per device. This is
// the part to replace with `wsgate::DualTokenAuthorizer` (user session JWTs + public device JWTs)
// and a `wsgate::PublicTokenIssuer` when those are available; make_demo_auth() is the only
// function that changes.
#include "demo_auth.hpp"

#include <wsgate/clock.hpp>
#include <wsgate/random.hpp>

#include <mutex>
#include <unordered_map>

namespace demo {
namespace {

class IssuedTokenAuthorizer final : public wsgate::Authorizer {
public:
    explicit IssuedTokenAuthorizer(bool allow_anonymous) : allow_anonymous_(allow_anonymous) {}

    wsgate::AuthDecision authorize(const wsgate::ConnectRequest& req) override {
        const std::string* token = req.query_param("token");
        if (token == nullptr || token->empty()) {
            if (allow_anonymous_) {
                wsgate::Principal p;
                p.kind = wsgate::PrincipalKind::anonymous;
                return wsgate::AuthDecision::allow(std::move(p));
            }
            return wsgate::AuthDecision::deny(401, "missing_token");
        }
        std::lock_guard lk(mu_);
        auto it = devices_.find(*token);
        if (it == devices_.end()) return wsgate::AuthDecision::deny(401, "invalid_token");
        wsgate::Principal p;
        p.kind = wsgate::PrincipalKind::public_device;
        p.device_id = it->second;
        p.permissions = public_permissions();
        return wsgate::AuthDecision::allow(std::move(p));
    }

    std::string issue(const std::string& device_id) {
        auto token = wsgate::random_token(24);
        std::lock_guard lk(mu_);
        devices_[token] = device_id;
        return token;
    }

private:
    bool allow_anonymous_;
    std::mutex mu_;
    std::unordered_map<std::string, std::string> devices_;  // token → device id
};

}  // namespace

DemoAuth make_demo_auth(const AuthConfig& cfg) {
    auto authz = std::make_shared<IssuedTokenAuthorizer>(cfg.allow_anonymous);
    DemoAuth out;
    out.authorizer = authz;
    out.description = "public device tokens issued by this process (opaque, in memory)";
    out.issue_public_token = [authz](const std::string& requested) {
        std::string device_id = requested.empty() ? "device-" + wsgate::random_token(9) : requested;
        return nlohmann::json{{"success", true},
                              {"deviceId", device_id},
                              {"publicToken", authz->issue(device_id)},
                              {"permissions", public_permissions()},
                              {"expiresAt", nullptr},
                              {"timestamp", wsgate::format_iso8601(wsgate::SystemClock{}.now())}};
    };
    return out;
}

}  // namespace demo

#pragma once
// The demo's one authentication seam: who may connect, and how POST /public/token issues a
// status-board token (seed 001). Swap the implementation in demo_auth.cpp; main.cpp only sees
// this interface.

#include <wsgate/authorizer.hpp>

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>

namespace demo {

struct AuthConfig {
    std::string session_secret;  // signs user session tokens (HS256)
    std::string public_secret;   // signs public device tokens (HS256)
    bool allow_anonymous = false;
};

struct DemoAuth {
    std::shared_ptr<wsgate::Authorizer> authorizer;
    /// Issues a public device token for `device_id` (empty = generate one); returns the
    /// response body, wsgate::public_token_response(): {success, deviceId, token, permissions,
    /// issuedAt, expiresAt, timestamp}, or {success: false, error} for an unacceptable device id.
    std::function<nlohmann::json(const std::string& device_id)> issue_public_token;
    /// One line for the start-up banner.
    std::string description;
    /// `issued` (opaque tokens from this process) or `jwt` (HS256 session and public tokens);
    /// reported by GET /healthz so tests know which token cases apply.
    std::string kind = "jwt";
};

/// Read permissions a public device token carries (seed 001).
inline const std::vector<std::string>& public_permissions() {
    static const std::vector<std::string> p{"read_leaderboard", "read_events"};
    return p;
}

/// Throws std::invalid_argument (naming the flag) if a secret is too short for HS256 (32 bytes).
DemoAuth make_demo_auth(const AuthConfig& cfg);

}  // namespace demo

#pragma once
/**
 * @file public_tokens.hpp Public device tokens: long-lived tokens that let a status board or
 * kiosk read named topics without a user session.
 *
 * A public token is a JWT whose claims are
 * `{"kind":"public","deviceId":...,"permissions":[...],"iat":...,"exp":...[,"iss"][,"aud"]}`.
 * Tokens that mark themselves with `"type":"public"` instead of `kind` (seed 001's) are public
 * tokens only where TokenAuthorizerSettings::accept_type_public is on.
 */

#include <wsgate/auth/jwt.hpp>
#include <wsgate/clock.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate {

/// The value of the `kind` claim that marks a public device token.
inline constexpr std::string_view public_token_kind = "public";

/** How a PublicTokenIssuer mints tokens. */
struct PublicTokenSettings {
    /// Permissions granted when a request names none. Empty by default: a token from an issuer
    /// with default settings grants nothing, so set the permissions your topic rules name
    /// (e.g. `{"read_leaderboard"}`).
    std::vector<std::string> default_permissions{};
    /// Permissions a request may ask for; empty = only the defaults may be granted.
    std::vector<std::string> allowed_permissions{};
    /// Token lifetime when a request names none (30 days).
    std::chrono::seconds lifetime{std::chrono::hours{24 * 30}};
    /// Longest lifetime a request may ask for.
    std::chrono::seconds max_lifetime{std::chrono::hours{24 * 365}};
    /// Written as `iss` / `aud` when not empty.
    std::string issuer;
    std::string audience;
    /// Prefix of generated device ids (followed by 128 CSPRNG bits in base64url).
    std::string device_id_prefix = "device-";
};

/** What a client asks for, e.g. as the JSON body of a `POST /public/token`. All fields optional. */
struct PublicTokenRequest {
    std::string device_id;  ///< empty → a fresh random id
    std::optional<std::vector<std::string>> permissions;
    std::optional<std::chrono::seconds> lifetime;

    /// Reads `{"deviceId"?: string, "permissions"?: [string], "lifetimeSeconds"?: int}`;
    /// nullopt if a field has the wrong type. Never throws.
    [[nodiscard]] static std::optional<PublicTokenRequest> from_json(const nlohmann::json& body) noexcept;
};

/** An issued public token. */
struct PublicToken {
    std::string device_id;
    std::string token;
    std::vector<std::string> permissions;
    TimePoint issued_at{};
    TimePoint expires_at{};
};

/// `{"deviceId","token","permissions","expiresAt"(ISO-8601),"issuedAt"(ISO-8601)}`.
void to_json(nlohmann::json& j, const PublicToken& t);

/** How public_token_response() writes an issued token. */
struct PublicTokenResponseOptions {
    /// Also write the token as `publicToken`, the field clients of an existing
    /// `POST /public/token` endpoint (seed 001) read. Off by default: the token appears once.
    bool public_token_field = false;
};

/**
 * The body a `POST /public/token` endpoint answers for an issued token:
 * `{"success":true,"deviceId","token","permissions","issuedAt","expiresAt","timestamp"}`, with
 * `publicToken` too when `options` ask for it. This is the response shape of seed 001's endpoint
 * (`success`, `deviceId`, `permissions`, `timestamp`, and the token), with two differences:
 * `expiresAt` is the token's real expiry (ISO-8601; seed 001 sent `null` for a 30-day token), so a
 * client can renew in time, and `issuedAt` is added. `timestamp` is the issue time.
 *
 * @code
 * auto t = issuer.issue(*request);
 * return t ? reply(200, wsgate::public_token_response(*t)) : reply(400, wsgate::public_token_error("invalid deviceId"));
 * @endcode
 */
[[nodiscard]] nlohmann::json public_token_response(const PublicToken& t, const PublicTokenResponseOptions& options = {});

/// `{"success":false,"error":message}`: the body of a refused token request.
[[nodiscard]] nlohmann::json public_token_error(std::string_view message);

/**
 * Issues public device tokens.
 *
 * @code
 * wsgate::PublicTokenSettings settings;
 * settings.default_permissions = {"read_leaderboard"};
 * wsgate::PublicTokenIssuer issuer{wsgate::jwt::SigningKey::hmac(wsgate::jwt::Algorithm::hs256, public_secret),
 *                                  settings};
 * auto t = issuer.issue({});            // random deviceId, default permissions, 30 days
 * reply(nlohmann::json(*t).dump());
 * @endcode
 * @par Thread Safety Immutable after construction; issue() is safe to call concurrently.
 */
class PublicTokenIssuer {
public:
    /// @throws std::invalid_argument if `settings` has a non-positive lifetime.
    explicit PublicTokenIssuer(jwt::SigningKey key, PublicTokenSettings settings = {},
                               std::shared_ptr<const Clock> clock = nullptr);

    /**
     * Mints a token. Returns nullopt (and issues nothing) if the device id is not 1–128
     * characters of `[A-Za-z0-9._:-]`, a requested permission is not allowed, or the requested
     * lifetime is not in (0, max_lifetime].
     */
    [[nodiscard]] std::optional<PublicToken> issue(const PublicTokenRequest& request = {}) const;

    /// A verifier for the tokens this issuer mints (same key, issuer, audience, clock),
    /// requiring `exp`. Extend it (leeway, more keys) as needed.
    [[nodiscard]] jwt::Verifier verifier() const;

    [[nodiscard]] const PublicTokenSettings& settings() const noexcept { return settings_; }

private:
    jwt::SigningKey key_;
    PublicTokenSettings settings_;
    std::shared_ptr<const Clock> clock_;
};

/// True if `id` is 1–128 characters of `[A-Za-z0-9._:-]`.
[[nodiscard]] bool is_valid_device_id(std::string_view id) noexcept;

}  // namespace wsgate

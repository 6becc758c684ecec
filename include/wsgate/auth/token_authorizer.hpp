#pragma once
/**
 * @file token_authorizer.hpp The JWT authorizer: a user-session token and, when given a second
 * verifier, a public device token, taken from the query string, an `Authorization: Bearer`
 * header or the `Sec-WebSocket-Protocol` header.
 */

#include <wsgate/auth/jwt.hpp>
#include <wsgate/authorizer.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate {

/** Where TokenAuthorizer looks for a token, in this order. */
struct TokenAuthorizerSettings {
    /// Query parameter carrying the token (`?token=` by default); empty disables it.
    std::string query_parameter = "token";
    /// Accept `Authorization: Bearer <token>`.
    bool accept_bearer_header = true;
    /**
     * Accept the token from `Sec-WebSocket-Protocol` (browsers cannot set headers) as the entry
     * right after the first of `marker_subprotocols`: `wsgate, <token>` or `bearer, <token>`.
     * A bare token is not taken. The server echoes the marker, never the token, as the selected
     * subprotocol (beast::Server and aws::WebSocketEventHandler do).
     */
    bool accept_subprotocol = true;
    std::vector<std::string> marker_subprotocols{"wsgate", "bearer", "access_token", "jwt"};
    /**
     * Also take the claim `"type":"public"` as the public-token marker, an alias of wsgate's
     * `"kind":"public"`, so public tokens an existing system already minted this way (seed 001's
     * `POST /public/token`) keep working. Off by default (least privilege); then a token marked
     * only by `type` is no public token: the public-device verifier denies it (401
     * `invalid_claim`), and under the session verifier it is an ordinary session token (`type`
     * stays in Principal::claims), as it would be without this setting.
     *
     * On, a token with `"type":"public"` is treated exactly like one with `"kind":"public"`: never
     * a user session (whatever `sub` it carries), and under the public-device verifier a
     * PrincipalKind::public_device with `deviceId` and `permissions` only.
     */
    bool accept_type_public = false;
};

/**
 * Authenticates a connect request with a session verifier (tried first) and, optionally, a
 * public-device verifier (tried second). With only a session verifier it is a plain JWT
 * authorizer; with only a public-device verifier it admits public device tokens only.
 *
 * @code
 * auto sessions = wsgate::jwt::Verifier{}.allow(wsgate::jwt::Key::hmac(wsgate::jwt::Algorithm::hs256, secret));
 * auto plain = std::make_shared<wsgate::TokenAuthorizer>(sessions);                     // user tokens
 * auto both = std::make_shared<wsgate::TokenAuthorizer>(sessions, issuer.verifier());   // + device tokens
 * @endcode
 *
 * Session tokens become PrincipalKind::user: user id from `sub` (else `userId`, `user_id`),
 * session id from `sid` (else `sessionId`, `session_id`), device id from `deviceId`
 * (else `device_id`), nickname from `nickname` (else `name`), permissions from `permissions`
 * (array of strings) or `scope` (space-separated), issued_at from `iat`, expires_at from `exp`
 * (which also stays in Principal::claims, as do the other claims). A session token marked public (`kind`, or
 * with accept_type_public `type`, = `"public"`) is not a session.
 *
 * Public tokens (claim `kind` = `"public"`, see PublicTokenIssuer; also `type` = `"public"` with
 * TokenAuthorizerSettings::accept_type_public) become PrincipalKind::public_device with `deviceId`
 * and `permissions`, no user id: a `sub` in a public token is ignored.
 *
 * A missing token is denied with 401 `missing_token`; an invalid one with 401 and the
 * reason_code() of the most telling error (a claim error of a verifier whose signature check
 * passed wins over the session verifier's error). The token never appears in a decision.
 *
 * @par Thread Safety Safe for concurrent authorize() calls after construction.
 */
class TokenAuthorizer final : public Authorizer {
public:
    /// A plain JWT authorizer: session tokens only.
    explicit TokenAuthorizer(jwt::Verifier session, TokenAuthorizerSettings settings = {});
    /// Either verifier may be absent; not both.
    /// @throws std::invalid_argument if both are absent.
    TokenAuthorizer(std::optional<jwt::Verifier> session, std::optional<jwt::Verifier> public_device,
                    TokenAuthorizerSettings settings = {});

    [[nodiscard]] AuthDecision authorize(const ConnectRequest& request) override;

    /// The token a request carries, per `settings`, or nullopt.
    [[nodiscard]] static std::optional<std::string> extract_token(const ConnectRequest& request,
                                                              const TokenAuthorizerSettings& settings);
    /// The principal for a verified session token (mapping above).
    [[nodiscard]] static Principal session_principal(const jwt::Token& token);
    /// The principal for a verified public device token (its `kind` marker, and a `type`
    /// marker of `"public"`, are left out of Principal::claims).
    [[nodiscard]] static Principal public_principal(const jwt::Token& token);
    /// Does `token` carry the public-token marker: `kind` = `"public"`, or `type` = `"public"`
    /// when `settings.accept_type_public` is on?
    [[nodiscard]] static bool is_public_token(const jwt::Token& token, const TokenAuthorizerSettings& settings);

private:
    std::optional<jwt::Verifier> session_;
    std::optional<jwt::Verifier> public_;
    TokenAuthorizerSettings settings_;
};

}  // namespace wsgate

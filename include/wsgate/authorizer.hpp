#pragma once
/** @file authorizer.hpp Plug point: who a connecting client is. */

#include <wsgate/detail/config.hpp>
#include <wsgate/connection.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace wsgate {

/**
 * What a client presented when it connected: the upgrade request (socket server) or the
 * $connect event (API Gateway).
 */
struct ConnectRequest {
    std::string path;                              ///< e.g. `/ws`
    std::map<std::string, std::string> query;      ///< decoded query parameters
    std::map<std::string, std::string> headers;    ///< names lower-case
    std::string source_ip;
    std::string user_agent;
    /// Connection id chosen by the host (API Gateway's connectionId); empty → wsgate makes one.
    ConnectionId connection_id;

    /// A header by lower-case name, or nullptr.
    [[nodiscard]] const std::string* header(std::string_view lower_name) const {
        auto it = headers.find(std::string{lower_name});
        return it == headers.end() ? nullptr : &it->second;
    }
    /// A query parameter, or nullptr.
    [[nodiscard]] const std::string* query_param(std::string_view name) const {
        auto it = query.find(std::string{name});
        return it == query.end() ? nullptr : &it->second;
    }
};

/// Parses `a=1&b=x%20y` (percent- and `+`-decoding; the last of repeated keys wins).
[[nodiscard]] std::map<std::string, std::string> parse_query_string(std::string_view qs);
/// Decodes `%XX` and (if `plus_is_space`) `+`. Malformed escapes are kept verbatim.
[[nodiscard]] std::string percent_decode(std::string_view s, bool plus_is_space = true);

/**
 * An Authorizer's verdict. A denial carries an HTTP status (401 unauthenticated, 403 forbidden)
 * and a short reason code safe to show the client; it never contains the token.
 */
struct AuthDecision {
    bool allowed = false;
    Principal principal;
    int status = 401;
    std::string reason;     ///< e.g. `missing_token`, `expired`, `bad_signature`
    std::error_code error;  ///< the typed cause, when there is one

    static AuthDecision allow(Principal p) {
        AuthDecision d;
        d.allowed = true;
        d.status = 200;
        d.principal = std::move(p);
        return d;
    }
    static AuthDecision deny(int status, std::string reason, std::error_code ec = {}) {
        AuthDecision d;
        d.status = status;
        d.reason = std::move(reason);
        d.error = ec;
        return d;
    }
};

/**
 * Decides who a connecting client is.
 *
 * Implementations: AnonymousAuthorizer (here), TokenAuthorizer (`auth/`; with one verifier it is a plain JWT authorizer).
 * A throwing authorizer is treated by the Gateway as a denial (500 → reported as 401 `auth_error`).
 *
 * @par Thread Safety
 * Implementations must be safe for concurrent use.
 */
class Authorizer {
public:
    Authorizer() = default;
    Authorizer(const Authorizer&) = delete;
    Authorizer& operator=(const Authorizer&) = delete;
    virtual ~Authorizer() = default;

    [[nodiscard]] virtual AuthDecision authorize(const ConnectRequest& request) = 0;
};

/**
 * Lets everyone in as an anonymous principal with the given permissions.
 * @par Thread Safety Safe.
 */
class AnonymousAuthorizer final : public Authorizer {
public:
    explicit AnonymousAuthorizer(std::vector<std::string> permissions = {})
        : permissions_(std::move(permissions)) {}
    [[nodiscard]] AuthDecision authorize(const ConnectRequest&) override {
        Principal p;
        p.kind = PrincipalKind::anonymous;
        p.permissions = permissions_;
        return AuthDecision::allow(std::move(p));
    }

private:
    std::vector<std::string> permissions_;
};

}  // namespace wsgate

#ifdef WSGATE_HEADER_ONLY
#include <wsgate/impl/authorizer-inl.hpp>
#endif

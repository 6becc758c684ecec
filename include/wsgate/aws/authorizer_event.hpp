#pragma once
/** @file authorizer_event.hpp The WebSocket REQUEST authorizer: event in, IAM policy response out. */

#include <wsgate/authorizer.hpp>
#include <wsgate/aws/apigw_event.hpp>

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace wsgate::aws {

/**
 * A REQUEST authorizer event (`"type": "REQUEST"`) for a WebSocket API's $connect route.
 * @par Thread Safety Value type.
 */
struct AuthorizerEvent {
    std::string type;         ///< `REQUEST`
    std::string method_arn;   ///< `arn:aws:execute-api:{region}:{account}:{api}/{stage}/$connect`
    std::map<std::string, std::string> headers;  ///< names lower-cased
    std::map<std::string, std::string> query;
    std::map<std::string, std::vector<std::string>> multi_value_query;
    std::map<std::string, std::string> stage_variables;
    RequestContext context;

    [[nodiscard]] ConnectRequest to_connect_request() const;
};

/// Parses a REQUEST authorizer event; never throws. Errors: event_errc.
[[nodiscard]] Parsed<AuthorizerEvent> parse_authorizer_event(std::string_view json) noexcept;

/// `{"principalId", "policyDocument": {Version, Statement: [{Action: execute-api:Invoke, Effect: Allow, Resource}]}, "context"}`.
[[nodiscard]] nlohmann::json generate_allow(const std::string& principal_id, const std::string& resource,
                                            const std::map<std::string, std::string>& context = {});
/// The same with `Effect: Deny` (API Gateway answers 403).
[[nodiscard]] nlohmann::json generate_deny(const std::string& principal_id, const std::string& resource);

/// What the authorizer handler decided, with the response to return to API Gateway.
struct AuthorizerResult {
    bool allowed = false;
    int status = 401;        ///< 200, or the Authorizer's denial status; 400 for a malformed event
    std::string reason;      ///< the denial reason code
    nlohmann::json response; ///< the policy document to return from the Lambda
};

/**
 * Runs an Authorizer on REQUEST authorizer events and answers with an IAM policy whose context map
 * carries the principal (see to_authorizer_context()). Denials, malformed events and a throwing
 * Authorizer all produce a Deny policy.
 * @par Thread Safety Safe if the Authorizer is.
 */
class AuthorizerHandler {
public:
    explicit AuthorizerHandler(std::shared_ptr<Authorizer> authorizer) : authorizer_(std::move(authorizer)) {}
    AuthorizerResult handle(std::string_view event_json) noexcept;
    AuthorizerResult handle(const AuthorizerEvent& event) noexcept;

private:
    std::shared_ptr<Authorizer> authorizer_;
};

}  // namespace wsgate::aws

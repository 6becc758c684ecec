#pragma once
/**
 * @file lambda_authorizer.hpp The response an API Gateway Lambda (REQUEST) authorizer returns,
 * as plain data: principal id, an Allow/Deny IAM policy for the method ARN, and a context map.
 */

#include <wsgate/authorizer.hpp>

#include <nlohmann/json.hpp>

#include <map>
#include <string>

namespace wsgate {

/** An authorizer response. @par Thread Safety Value type. */
struct LambdaAuthorizerResult {
    std::string principal_id;
    bool allow = false;
    std::string method_arn;  ///< the `methodArn` of the request, used as the policy's Resource
    std::map<std::string, std::string> context;  ///< API Gateway only passes string/number/bool values
};

/**
 * `{"principalId":..., "policyDocument":{"Version":"2012-10-17","Statement":[{"Action":
 * "execute-api:Invoke","Effect":"Allow"|"Deny","Resource":methodArn}]}, "context":{...}}`.
 */
void to_json(nlohmann::json& j, const LambdaAuthorizerResult& r);

/**
 * Maps an AuthDecision to an authorizer response with these context keys: `userId`,
 * `connectionType` (`user`/`public`/`anonymous`), `sessionId`, `nickname`, `deviceId`,
 * `permissions` (comma-joined), `createdAt` (ISO-8601 of issued_at), `expiresAt` (Unix seconds of
 * the token's `exp`, so the connection ends with its token) — empty values omitted.
 * The principal id is the user id, else the device id, else `anonymous`. A denial yields a Deny
 * policy with principal `unauthorized` and context `{"reason": decision.reason}`.
 */
[[nodiscard]] LambdaAuthorizerResult make_lambda_authorizer_result(const AuthDecision& decision,
                                                                   std::string method_arn);

}  // namespace wsgate

// wsgate API Gateway Lambda-authorizer response.

#include <wsgate/auth/lambda_authorizer.hpp>

namespace wsgate {

void to_json(nlohmann::json& j, const LambdaAuthorizerResult& r) {
    j = nlohmann::json{
        {"principalId", r.principal_id},
        {"policyDocument",
         {{"Version", "2012-10-17"},
          {"Statement", nlohmann::json::array({{{"Action", "execute-api:Invoke"},
                                                {"Effect", r.allow ? "Allow" : "Deny"},
                                                {"Resource", r.method_arn}}})}}},
        {"context", r.context}};
}

LambdaAuthorizerResult make_lambda_authorizer_result(const AuthDecision& decision, std::string method_arn) {
    LambdaAuthorizerResult r;
    r.method_arn = std::move(method_arn);
    if (!decision.allowed) {
        r.principal_id = "unauthorized";
        r.allow = false;
        r.context["reason"] = decision.reason.empty() ? std::string("unauthorized") : decision.reason;
        return r;
    }
    const Principal& p = decision.principal;
    r.allow = true;
    r.principal_id = !p.user_id.empty() ? p.user_id : !p.device_id.empty() ? p.device_id : std::string("anonymous");
    auto put = [&](const char* k, const std::string& v) {
        if (!v.empty()) r.context[k] = v;
    };
    put("userId", !p.user_id.empty() ? p.user_id : p.device_id);
    r.context["connectionType"] = std::string(to_string(p.kind));
    put("sessionId", p.session_id);
    put("nickname", p.nickname);
    put("deviceId", p.device_id);
    std::string perms;
    for (const auto& s : p.permissions) {
        if (!perms.empty()) perms += ',';
        perms += s;
    }
    put("permissions", perms);
    if (p.issued_at) put("createdAt", format_iso8601(*p.issued_at));
    if (p.expires_at) put("expiresAt", std::to_string(to_unix_seconds(*p.expires_at)));
    return r;
}

}  // namespace wsgate

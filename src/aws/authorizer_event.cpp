// The WebSocket REQUEST authorizer: event → Authorizer → IAM policy with a context map.
#include <wsgate/aws/authorizer_event.hpp>

#include "json_fields.hpp"

namespace wsgate::aws {

using nlohmann::json;
using detail::FieldError;

ConnectRequest AuthorizerEvent::to_connect_request() const {
    return detail::connect_request(context, query, multi_value_query, headers);
}

Parsed<AuthorizerEvent> parse_authorizer_event(std::string_view text) noexcept {
    Parsed<AuthorizerEvent> out;
    try {
        auto ev = json::parse(text, nullptr, false);
        if (ev.is_discarded()) throw FieldError{event_errc::not_json, "event"};
        if (!ev.is_object()) throw FieldError{event_errc::not_an_object, "event"};
        AuthorizerEvent a;
        a.type = detail::opt_string(ev, "type");
        if (!a.type.empty() && a.type != "REQUEST") throw FieldError{event_errc::unknown_event_type, a.type};
        a.method_arn = detail::req_string(ev, "methodArn");
        a.headers = detail::string_map(ev, "headers", true);
        a.query = detail::string_map(ev, "queryStringParameters", false);
        a.multi_value_query = detail::multi_map(ev, "multiValueQueryStringParameters", false);
        a.stage_variables = detail::string_map(ev, "stageVariables", false);
        if (const json* rc = detail::field(ev, "requestContext")) a.context = detail::parse_context(*rc, false);
        out.value = std::move(a);
    } catch (const FieldError& fe) {
        out.error = fe.code;
        out.detail = fe.field;
    } catch (const std::exception& e) {
        out.error = event_errc::bad_field_type;
        out.detail = e.what();
    }
    return out;
}

namespace {
json policy(const std::string& principal_id, const char* effect, const std::string& resource) {
    return json{{"principalId", principal_id},
                {"policyDocument",
                 {{"Version", "2012-10-17"},
                  {"Statement", json::array({{{"Action", "execute-api:Invoke"}, {"Effect", effect}, {"Resource", resource}}})}}}};
}

std::string principal_id_of(const Principal& p) {
    if (!p.user_id.empty()) return p.user_id;
    if (!p.device_id.empty()) return p.device_id;
    if (!p.session_id.empty()) return p.session_id;
    return "anonymous";
}
}  // namespace

json generate_allow(const std::string& principal_id, const std::string& resource,
                    const std::map<std::string, std::string>& context) {
    json j = policy(principal_id, "Allow", resource);
    j["context"] = json(context);
    return j;
}

json generate_deny(const std::string& principal_id, const std::string& resource) {
    return policy(principal_id, "Deny", resource);
}

AuthorizerResult AuthorizerHandler::handle(std::string_view event_json) noexcept {
    auto parsed = parse_authorizer_event(event_json);
    if (!parsed) {
        AuthorizerResult r;
        r.status = 400;
        try {
            r.reason = "malformed_event";
            r.response = generate_deny("unknown", "*");
        } catch (...) {
        }
        return r;
    }
    return handle(*parsed.value);
}

AuthorizerResult AuthorizerHandler::handle(const AuthorizerEvent& event) noexcept {
    AuthorizerResult r;
    try {
        AuthDecision d;
        try {
            d = authorizer_ ? authorizer_->authorize(event.to_connect_request()) : AuthDecision::deny(401, "no_authorizer");
        } catch (...) {
            d = AuthDecision::deny(401, "auth_error");
        }
        if (d.allowed) {
            r.allowed = true;
            r.status = 200;
            r.response = generate_allow(principal_id_of(d.principal), event.method_arn, to_authorizer_context(d.principal));
        } else {
            r.status = d.status == 200 ? 401 : d.status;
            r.reason = d.reason;
            r.response = generate_deny("unauthorized", event.method_arn);
        }
    } catch (...) {
        r = AuthorizerResult{};
        r.reason = "internal_error";
    }
    return r;
}

}  // namespace wsgate::aws

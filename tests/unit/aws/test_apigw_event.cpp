// API Gateway WebSocket events, the authorizer context ↔ Principal mapping, the REQUEST authorizer.
#include "catch.hpp"

#include <wsgate/aws/apigw_event.hpp>
#include <wsgate/aws/authorizer_event.hpp>
#include <wsgate/auth/lambda_authorizer.hpp>

#include <fstream>
#include <sstream>

using namespace wsgate;
using namespace wsgate::aws;
using nlohmann::json;

namespace {

std::string event_file(const std::string& name) {
    std::ifstream in{std::string{WSGATE_SOURCE_DIR} + "/tests/unit/aws/data/events/" + name, std::ios::binary};
    REQUIRE(in.good());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Lets in `?token=good-token` as a user; anything else is denied; `?token=boom` throws.
class TokenAuthorizer final : public Authorizer {
public:
    AuthDecision authorize(const ConnectRequest& r) override {
        const auto* token = r.query_param("token");
        if (!token) return AuthDecision::deny(401, "missing_token");
        if (*token == "boom") throw std::runtime_error("backend down");
        if (*token != "good-token") return AuthDecision::deny(403, "bad_signature");
        Principal p;
        p.kind = PrincipalKind::user;
        p.user_id = "user-7";
        p.session_id = "sess-1";
        p.nickname = "Ada";
        p.permissions = {"read_leaderboard", "publish:chat"};
        p.issued_at = from_unix_seconds(1700000000);
        p.claims = json{{"team", "blue"}};
        last_ip = r.source_ip;
        return AuthDecision::allow(std::move(p));
    }
    std::string last_ip;
};

}  // namespace

TEST_CASE("CONNECT with an authorizer context", "[aws][event]") {
    auto parsed = parse_websocket_event(event_file("connect_authorized.json"));
    REQUIRE(parsed);
    const auto& e = *parsed.value;
    CHECK(e.context.event_type == EventType::connect);
    CHECK(e.context.route_key == "$connect");
    CHECK(e.context.connection_id == "RyhQHdzxIAMCKjA=");
    CHECK(e.context.domain_name == "abc123xyz0.execute-api.us-east-1.amazonaws.com");
    CHECK(e.context.stage == "prod");
    CHECK(e.context.api_id == "abc123xyz0");
    CHECK(e.context.connected_at == 1700000000123);
    CHECK(e.context.request_time_epoch == 1700000000125);
    CHECK(e.context.source_ip == "203.0.113.10");
    CHECK(e.context.user_agent == "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0");
    CHECK(e.context.callback_url() == "https://abc123xyz0.execute-api.us-east-1.amazonaws.com/prod");
    CHECK(e.context.authorizer.at("integrationLatency") == "48");
    CHECK(e.headers.at("sec-websocket-version") == "13");
    CHECK(e.multi_value_headers.at("x-forwarded-for") == std::vector<std::string>{"203.0.113.10"});
    CHECK(e.query.at("token") == "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl");

    const auto req = e.to_connect_request();
    CHECK(req.connection_id == "RyhQHdzxIAMCKjA=");
    CHECK(*req.query_param("token") == "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl");
    CHECK(*req.header("host") == "abc123xyz0.execute-api.us-east-1.amazonaws.com");
    CHECK(req.source_ip == "203.0.113.10");

    const auto p = principal_from_authorizer_context(e.context.authorizer);
    CHECK(p.kind == PrincipalKind::public_device);
    CHECK(p.device_id == "device-1700000000000-k3j9x2m1q");
    CHECK(p.user_id.empty());
    CHECK(p.permissions == std::vector<std::string>{"read_leaderboard", "read_events"});
    CHECK(p.has_permission("read_events"));
    CHECK_FALSE(p.has_permission("publish:chat"));
    REQUIRE(p.issued_at);
    CHECK(to_unix_seconds(*p.issued_at) == 1700000000);
    CHECK_FALSE(p.claims.contains("principalId"));
}

TEST_CASE("CONNECT without an authorizer, with null query maps", "[aws][event]") {
    auto parsed = parse_websocket_event(event_file("connect_plain.json"));
    REQUIRE(parsed);
    const auto& e = *parsed.value;
    CHECK(e.context.event_type == EventType::connect);
    CHECK(e.context.authorizer.empty());
    CHECK(e.query.empty());
    CHECK(e.to_connect_request().user_agent == "python-websockets/11.0");
}

TEST_CASE("MESSAGE, plain and base64", "[aws][event]") {
    auto plain = parse_websocket_event(event_file("message.json"));
    REQUIRE(plain);
    CHECK(plain.value->context.event_type == EventType::message);
    CHECK(plain.value->context.route_key == "$default");
    CHECK(plain.value->context.message_id == "RyhSJfTroAMCJMw=");
    CHECK(plain.value->body == R"({"type":"subscribe","topic":"leaderboard:42"})");
    CHECK_FALSE(plain.value->is_base64_encoded);

    auto b64 = parse_websocket_event(event_file("message_base64.json"));
    REQUIRE(b64);
    CHECK(b64.value->is_base64_encoded);
    CHECK(b64.value->body == R"({"type":"ping"})");
}

TEST_CASE("DISCONNECT carries the close code and reason", "[aws][event]") {
    auto parsed = parse_websocket_event(event_file("disconnect.json"));
    REQUIRE(parsed);
    CHECK(parsed.value->context.event_type == EventType::disconnect);
    REQUIRE(parsed.value->context.disconnect_status_code);
    CHECK(*parsed.value->context.disconnect_status_code == 1001);
    CHECK(parsed.value->context.disconnect_reason == "Going away");
}

TEST_CASE("malformed events are errors, never crashes", "[aws][event]") {
    auto rc = [](const std::string& extra) {
        return R"({"requestContext":{"routeKey":"$default","eventType":"MESSAGE","connectionId":"c1")" + extra + "}";
    };
    struct Case {
        std::string text;
        event_errc expected;
    };
    const std::vector<Case> cases{
        {"", event_errc::not_json},
        {"{", event_errc::not_json},
        {"{\"requestContext\":", event_errc::not_json},
        {"[]", event_errc::not_an_object},
        {"42", event_errc::not_an_object},
        {"{}", event_errc::missing_field},
        {R"({"requestContext":null})", event_errc::missing_field},
        {R"({"requestContext":"x"})", event_errc::not_an_object},
        {R"({"requestContext":{"eventType":"MESSAGE"}})", event_errc::missing_field},
        {R"({"requestContext":{"eventType":"MESSAGE","connectionId":""}})", event_errc::missing_field},
        {R"({"requestContext":{"eventType":"MESSAGE","connectionId":7}})", event_errc::bad_field_type},
        {R"({"requestContext":{"eventType":"UPGRADE","connectionId":"c"}})", event_errc::unknown_event_type},
        {R"({"requestContext":{"connectionId":"c"}})", event_errc::unknown_event_type},
        {rc("") + R"(,"body":{"type":"ping"}})", event_errc::bad_field_type},
        {rc("") + R"(,"body":"!!!","isBase64Encoded":true})", event_errc::bad_base64},
        {rc("") + R"(,"isBase64Encoded":"yes"})", event_errc::bad_field_type},
        {rc("") + R"(,"headers":["a"]})", event_errc::bad_field_type},
        {rc("") + R"(,"queryStringParameters":{"a":1}})", event_errc::bad_field_type},
        {rc("") + R"(,"multiValueQueryStringParameters":{"a":"b"}})", event_errc::bad_field_type},
        {rc(R"(,"identity":"x")") + "}", event_errc::bad_field_type},
        {rc(R"(,"authorizer":[1])") + "}", event_errc::bad_field_type},
        {rc(R"(,"disconnectStatusCode":"1000")") + "}", event_errc::bad_field_type},
        {rc(R"(,"connectedAt":"soon")") + "}", event_errc::bad_field_type},
        // Numbers beyond the int64 range are refused, never converted out of range.
        {rc(R"(,"connectedAt":1.70001e67)") + "}", event_errc::bad_field_type},
        {rc(R"(,"requestTimeEpoch":-9.3e18)") + "}", event_errc::bad_field_type},
        {rc(R"(,"connectedAt":18446744073709551615)") + "}", event_errc::bad_field_type},
        {rc(R"(,"disconnectStatusCode":4294967296)") + "}", event_errc::bad_field_type},
    };
    for (const auto& c : cases) {
        INFO(c.text);
        auto parsed = parse_websocket_event(c.text);
        CHECK_FALSE(parsed);
        CHECK(parsed.error == c.expected);
        CHECK_FALSE(parsed.error.message().empty());
    }
    // Hostile depth and binary junk.
    std::string deep(100000, '[');
    CHECK_FALSE(parse_websocket_event(deep));
    CHECK_FALSE(parse_websocket_event(std::string("\xff\xfe\x00\x01", 4)));
    // A route key alone is enough to know the type.
    auto by_route = parse_websocket_event(R"({"requestContext":{"routeKey":"$disconnect","connectionId":"c"}})");
    REQUIRE(by_route);
    CHECK(by_route.value->context.event_type == EventType::disconnect);
}

TEST_CASE("base64 decoding", "[aws][event]") {
    CHECK(base64_decode("aGVsbG8=") == std::optional<std::string>{"hello"});
    CHECK(base64_decode("aGVsbG8") == std::optional<std::string>{"hello"});
    CHECK(base64_decode("") == std::optional<std::string>{""});
    CHECK_FALSE(base64_decode("a"));
    CHECK_FALSE(base64_decode("aGV sbG8="));
    for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)})
        CHECK(base64_decode(base64_encode(s)) == std::optional<std::string>{s});
}

TEST_CASE("a Principal round-trips through the authorizer context", "[aws][event]") {
    Principal p;
    p.kind = PrincipalKind::user;
    p.user_id = "user-7";
    p.session_id = "sess-1";
    p.device_id = "dev-9";
    p.nickname = "Ada, the first";
    p.permissions = {"read_leaderboard", "publish:chat"};
    p.issued_at = from_unix_seconds(1700000000);
    p.claims = json{{"team", "blue"}, {"level", 3}};
    const auto ctx = to_authorizer_context(p);
    for (const auto& [k, v] : ctx) CHECK_FALSE(k.empty());
    CHECK(ctx.at("permissions") == "read_leaderboard,publish:chat");
    CHECK(ctx.at("connectionType") == "user");
    const auto back = principal_from_authorizer_context(ctx);
    CHECK(json(back) == json(p));

    // Seed 001's map (no `kind`, `connectionType` only, comma-separated permissions).
    const auto seed = principal_from_authorizer_context(
        {{"userId", "sess-9"}, {"connectionType", "user"}, {"sessionId", "sess-9"}, {"nickname", "Bo"},
         {"createdAt", "2024-01-01T00:00:00Z"}});
    CHECK(seed.kind == PrincipalKind::user);
    CHECK(seed.user_id == "sess-9");
    REQUIRE(seed.issued_at);
    CHECK(to_unix_seconds(*seed.issued_at) == 1704067200);  // createdAt 2024-01-01T00:00:00Z
    CHECK_FALSE(seed.claims.contains("createdAt"));
    const auto odd = principal_from_authorizer_context({{"createdAt", "yesterday"}});
    CHECK_FALSE(odd.issued_at);
    CHECK(odd.claims.at("createdAt") == "yesterday");
    // JSON-array permissions and junk values are tolerated.
    const auto junk = principal_from_authorizer_context(
        {{"kind", "martian"}, {"permissions", R"(["a","b",3])"}, {"issuedAt", "12abc"}, {"claims", "{not json"}});
    CHECK(junk.kind == PrincipalKind::anonymous);
    CHECK(junk.permissions == std::vector<std::string>{"a", "b"});
    CHECK_FALSE(junk.issued_at);
}

TEST_CASE("REQUEST authorizer: allow with a context map", "[aws][authorizer]") {
    auto parsed = parse_authorizer_event(event_file("authorizer_request.json"));
    REQUIRE(parsed);
    CHECK(parsed.value->type == "REQUEST");
    CHECK(parsed.value->method_arn == "arn:aws:execute-api:us-east-1:123456789012:abc123xyz0/prod/$connect");
    CHECK(parsed.value->context.connection_id == "RyhQHdzxIAMCKjA=");

    auto auth = std::make_shared<TokenAuthorizer>();
    AuthorizerHandler handler{auth};
    const auto r = handler.handle(event_file("authorizer_request.json"));
    CHECK(r.allowed);
    CHECK(r.status == 200);
    CHECK(auth->last_ip == "203.0.113.10");
    const auto& resp = r.response;
    CHECK(resp.at("principalId") == "user-7");
    const auto& stmt = resp.at("policyDocument").at("Statement").at(0);
    CHECK(resp.at("policyDocument").at("Version") == "2012-10-17");
    CHECK(stmt.at("Effect") == "Allow");
    CHECK(stmt.at("Action") == "execute-api:Invoke");
    CHECK(stmt.at("Resource") == "arn:aws:execute-api:us-east-1:123456789012:abc123xyz0/prod/$connect");
    // Every context value is a string (API Gateway rejects objects there), and it round-trips.
    std::map<std::string, std::string> ctx;
    for (const auto& [k, v] : resp.at("context").items()) {
        REQUIRE(v.is_string());
        ctx[k] = v.get<std::string>();
    }
    const auto p = principal_from_authorizer_context(ctx);
    CHECK(p.user_id == "user-7");
    CHECK(p.nickname == "Ada");
    CHECK(p.has_permission("publish:chat"));
    CHECK(p.claims.at("team") == "blue");
}

TEST_CASE("REQUEST authorizer: deny, throw, malformed", "[aws][authorizer]") {
    AuthorizerHandler handler{std::make_shared<TokenAuthorizer>()};
    auto with_token = [&](const char* token) {
        auto j = json::parse(event_file("authorizer_request.json"));
        if (token) j["queryStringParameters"]["token"] = token;
        else j.erase("queryStringParameters"), j.erase("multiValueQueryStringParameters");
        return handler.handle(j.dump());
    };
    const auto bad = with_token("forged");
    CHECK_FALSE(bad.allowed);
    CHECK(bad.status == 403);
    CHECK(bad.reason == "bad_signature");
    CHECK(bad.response.at("policyDocument").at("Statement").at(0).at("Effect") == "Deny");
    CHECK_FALSE(bad.response.contains("context"));

    const auto missing = with_token(nullptr);
    CHECK_FALSE(missing.allowed);
    CHECK(missing.reason == "missing_token");

    const auto boom = with_token("boom");
    CHECK_FALSE(boom.allowed);
    CHECK(boom.reason == "auth_error");

    for (const char* text : {"", "[]", R"({"type":"TOKEN","methodArn":"x"})", R"({"type":"REQUEST"})",
                             R"({"type":"REQUEST","methodArn":5})"}) {
        INFO(text);
        const auto r = handler.handle(std::string_view{text});
        CHECK_FALSE(r.allowed);
        CHECK(r.status == 400);
        CHECK(r.response.at("policyDocument").at("Statement").at(0).at("Effect") == "Deny");
    }

    AuthorizerHandler anon{std::make_shared<AnonymousAuthorizer>(std::vector<std::string>{"read_events"})};
    const auto a = anon.handle(event_file("authorizer_request.json"));
    CHECK(a.allowed);
    CHECK(a.response.at("principalId") == "anonymous");
    CHECK(a.response.at("context").at("kind") == "anonymous");
    CHECK(a.response.at("context").at("permissions") == "read_events");
}

TEST_CASE("contexts written by make_lambda_authorizer_result read back as the principal", "[aws][authorizer]") {
    Principal p;
    p.kind = PrincipalKind::public_device;
    p.device_id = "device-42";
    p.permissions = {"read_leaderboard", "read_events"};
    p.issued_at = from_unix_seconds(1700000000);
    p.expires_at = from_unix_seconds(1700003600);
    const auto r = make_lambda_authorizer_result(AuthDecision::allow(p), "arn:aws:execute-api:x");
    REQUIRE(r.allow);
    const auto back = principal_from_authorizer_context(r.context);
    CHECK(back.kind == PrincipalKind::public_device);
    CHECK(back.device_id == "device-42");
    CHECK(back.user_id.empty());
    CHECK(back.permissions == p.permissions);
    REQUIRE(back.issued_at);
    CHECK(to_unix_seconds(*back.issued_at) == 1700000000);
    REQUIRE(back.expires_at);
    CHECK(to_unix_seconds(*back.expires_at) == 1700003600);
    const auto via_context = principal_from_authorizer_context(to_authorizer_context(p));
    REQUIRE(via_context.expires_at);
    CHECK(*via_context.expires_at == *p.expires_at);
}

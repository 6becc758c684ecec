// The Lambda custom-runtime loop against a local fake Runtime API (Python, 127.0.0.1).
#include "catch.hpp"
#include "fake_server.hpp"

#include <wsgate/aws/apigw_event.hpp>
#include <wsgate/aws/lambda_runtime.hpp>

#include <cstdlib>

using namespace wsgate;
using namespace wsgate::aws;
using nlohmann::json;

namespace {
std::string event_path(const char* name) {
    return std::string{WSGATE_SOURCE_DIR} + "/tests/unit/aws/data/events/" + name;
}

json results(int port) {
    CurlHttpClient client{CurlSettings{.max_concurrency = 1}};
    HttpRequest r;
    r.scheme = "http";
    r.host = "127.0.0.1:" + std::to_string(port);
    r.path = "/_control/results";
    const auto resp = client.perform(r);
    REQUIRE(resp.status == 200);
    return json::parse(resp.body);
}
}  // namespace

TEST_CASE("the runtime loop answers each invocation and reports handler errors", "[aws][lambda]") {
    test::PythonServer runtime{"fake_lambda_runtime.py",
                               {event_path("connect_plain.json"), event_path("message.json"), event_path("disconnect.json")}};
    LambdaRuntimeSettings settings;
    settings.api = "127.0.0.1:" + std::to_string(runtime.port());
    std::vector<Invocation> seen;
    const auto handled = run_lambda_runtime(
        [&](const Invocation& inv) -> std::string {
            seen.push_back(inv);
            const auto* trace = std::getenv("_X_AMZN_TRACE_ID");
            CHECK((trace && inv.trace_id == trace));
            auto ev = parse_websocket_event(inv.event);
            if (!ev) throw std::runtime_error("bad event");
            if (ev.value->context.event_type == EventType::message) throw std::runtime_error("cannot handle messages");
            return LambdaResponse{200, std::string{to_string(ev.value->context.event_type)}, {}}.dump();
        },
        settings);
    CHECK(handled == 3);  // then the fake answers 410 to `next` and the loop returns
    REQUIRE(seen.size() == 3);
    CHECK(seen[0].request_id == "req-0");
    CHECK(seen[0].function_arn == "arn:aws:lambda:us-east-1:123456789012:function:ws");
    CHECK(seen[0].deadline_ms > 0);

    const auto r = results(runtime.port());
    CHECK(json::parse(r.at("responses").at("req-0").get<std::string>()) == json{{"statusCode", 200}, {"body", "CONNECT"}});
    CHECK(json::parse(r.at("responses").at("req-2").get<std::string>()).at("body") == "DISCONNECT");
    CHECK_FALSE(r.at("responses").contains("req-1"));
    const auto& err = r.at("errors").at("req-1");
    CHECK(err.at("type") == "Runtime.HandlerError");
    CHECK(json::parse(err.at("body").get<std::string>()).at("errorMessage") == "cannot handle messages");
}

TEST_CASE("the runtime loop stops at max_invocations, and needs an address", "[aws][lambda]") {
    test::PythonServer runtime{"fake_lambda_runtime.py", {event_path("message.json"), event_path("message.json")}};
    LambdaRuntimeSettings settings;
    settings.api = "127.0.0.1:" + std::to_string(runtime.port());
    settings.max_invocations = 1;
    CHECK(run_lambda_runtime([](const Invocation&) { return std::string{"{}"}; }, settings) == 1);
    CHECK(results(runtime.port()).at("responses").size() == 1);

    unsetenv("AWS_LAMBDA_RUNTIME_API");
    CHECK_THROWS_AS(run_lambda_runtime([](const Invocation&) { return std::string{}; }), std::invalid_argument);
    LambdaRuntimeSettings gone;
    gone.api = "127.0.0.1:1";
    CHECK(run_lambda_runtime([](const Invocation&) { return std::string{}; }, gone) == 0);
}

// The Lambda Runtime API loop (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html).
#include <wsgate/aws/lambda_runtime.hpp>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <stdexcept>

namespace wsgate::aws {
namespace {

constexpr const char* prefix = "/2018-06-01/runtime/invocation/";

HttpRequest runtime_request(const std::string& api, std::string method, std::string path, std::string body = {}) {
    HttpRequest r;
    r.method = std::move(method);
    r.scheme = "http";
    r.host = api;
    r.path = std::move(path);
    r.body = std::move(body);
    return r;
}

}  // namespace

std::size_t run_lambda_runtime(const LambdaHandler& handler, LambdaRuntimeSettings settings) {
    if (settings.api.empty())
        if (const char* api = std::getenv("AWS_LAMBDA_RUNTIME_API")) settings.api = api;
    if (settings.api.empty()) throw std::invalid_argument("wsgate: AWS_LAMBDA_RUNTIME_API is not set");
    if (!settings.http) {
        CurlSettings cs;
        cs.max_concurrency = 1;
        cs.request_timeout = std::chrono::milliseconds{0};
        settings.http = std::make_shared<CurlHttpClient>(cs);
    }
    std::size_t handled = 0;
    while (settings.max_invocations == 0 || handled < settings.max_invocations) {
        const auto next = settings.http->perform(runtime_request(settings.api, "GET", std::string{prefix} + "next"));
        if (next.status != 200) break;
        Invocation inv;
        inv.event = next.body;
        if (const auto* v = next.header("Lambda-Runtime-Aws-Request-Id")) inv.request_id = *v;
        if (const auto* v = next.header("Lambda-Runtime-Invoked-Function-Arn")) inv.function_arn = *v;
        if (const auto* v = next.header("Lambda-Runtime-Trace-Id")) inv.trace_id = *v;
        if (const auto* v = next.header("Lambda-Runtime-Deadline-Ms")) inv.deadline_ms = std::strtoll(v->c_str(), nullptr, 10);
        if (inv.request_id.empty()) break;  // not a Runtime API answer
        if (!inv.trace_id.empty()) setenv("_X_AMZN_TRACE_ID", inv.trace_id.c_str(), 1);
        else unsetenv("_X_AMZN_TRACE_ID");

        HttpRequest reply;
        try {
            reply = runtime_request(settings.api, "POST", prefix + inv.request_id + "/response", handler(inv));
        } catch (const std::exception& e) {
            const nlohmann::json err{{"errorMessage", e.what()}, {"errorType", "Runtime.HandlerError"}};
            reply = runtime_request(settings.api, "POST", prefix + inv.request_id + "/error", err.dump());
            reply.headers.emplace_back("Lambda-Runtime-Function-Error-Type", "Runtime.HandlerError");
        }
        reply.headers.emplace_back("Content-Type", "application/json");
        const auto posted = settings.http->perform(reply);
        ++handled;
        if (posted.status == 0) break;
    }
    return handled;
}

}  // namespace wsgate::aws

#pragma once
/** @file lambda_runtime.hpp A Lambda custom runtime loop (the Runtime API), for C++ handlers. */

#include <wsgate/aws/http_client.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace wsgate::aws {

/// One invocation as the Runtime API hands it over.
struct Invocation {
    std::string request_id;         ///< `Lambda-Runtime-Aws-Request-Id`
    std::string event;              ///< the event JSON
    std::int64_t deadline_ms = 0;   ///< `Lambda-Runtime-Deadline-Ms` (Unix ms)
    std::string function_arn;       ///< `Lambda-Runtime-Invoked-Function-Arn`
    std::string trace_id;           ///< `Lambda-Runtime-Trace-Id`
};

/// Returns the response JSON; an exception is reported to Lambda as the invocation's error.
using LambdaHandler = std::function<std::string(const Invocation&)>;

/// Settings of run_lambda_runtime().
struct LambdaRuntimeSettings {
    /// `host:port` of the Runtime API; empty → AWS_LAMBDA_RUNTIME_API.
    std::string api;
    /// Stop after this many invocations (0 = run until the Runtime API goes away).
    std::size_t max_invocations = 0;
    /// The HTTP client; null → a CurlHttpClient without a request timeout (`next` long-polls).
    std::shared_ptr<HttpClient> http;
};

/**
 * Runs the custom-runtime loop: GET `/2018-06-01/runtime/invocation/next`, call `handler`, POST
 * its result to `…/invocation/{id}/response` (or `…/error` if it threw). Sets `_X_AMZN_TRACE_ID`
 * for each invocation. Returns the number of invocations handled; returns early when the Runtime
 * API cannot be reached. Throws std::invalid_argument when no Runtime API address is known.
 *
 * @code
 * wsgate::aws::run_lambda_runtime([&](const wsgate::aws::Invocation& inv) {
 *     return handler.handle(inv.event).dump();
 * });
 * @endcode
 * @par Thread Safety Run it from one thread (Lambda sends one event at a time).
 */
std::size_t run_lambda_runtime(const LambdaHandler& handler, LambdaRuntimeSettings settings = {});

}  // namespace wsgate::aws

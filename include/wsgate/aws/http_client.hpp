#pragma once
/** @file http_client.hpp A small HTTP client interface and its libcurl implementation. */

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsgate::aws {

/**
 * One HTTP request. `path` and `query` are as sent on the wire (already percent-encoded);
 * header names keep the caller's case and order.
 * @par Thread Safety Value type.
 */
struct HttpRequest {
    std::string method = "GET";
    std::string scheme = "https";
    std::string host;   ///< `host` or `host:port`
    std::string path = "/";
    std::string query;  ///< without the leading `?`
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    /// `scheme://host/path?query`.
    [[nodiscard]] std::string url() const;
    /// The first header named `name` (case-insensitive), or nullptr.
    [[nodiscard]] const std::string* header(std::string_view name) const noexcept;
    /// Replaces every header named `name` (case-insensitive) by one with `value`.
    void set_header(std::string_view name, std::string value);
};

/// One HTTP response. `status == 0` means no response arrived (see `error`).
struct HttpResponse {
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers;  ///< as received, values trimmed
    std::string body;
    std::string error;  ///< transport failure text when `status == 0`

    /// The first header named `name` (case-insensitive), or nullptr.
    [[nodiscard]] const std::string* header(std::string_view name) const noexcept;
};

/// A response that never arrived: status 0 and `error` set.
[[nodiscard]] inline HttpResponse failed_response(std::string error) {
    HttpResponse r;
    r.error = std::move(error);
    return r;
}

/**
 * Performs HTTP requests. Implementations: CurlHttpClient; tests may plug their own.
 * @par Thread Safety Implementations must be safe for concurrent use.
 */
class HttpClient {
public:
    HttpClient() = default;
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;
    virtual ~HttpClient() = default;

    /// Performs one request; never throws for network failures (status 0 instead).
    virtual HttpResponse perform(const HttpRequest& request) = 0;
    /**
     * Performs many requests, `out[i]` answering `requests[i]`. The default runs them one after
     * another; CurlHttpClient runs them in parallel.
     */
    virtual void perform_many(std::span<const HttpRequest> requests, std::span<HttpResponse> out);
};

/// Settings of CurlHttpClient; every field has a working default.
struct CurlSettings {
    std::size_t max_concurrency = 64;             ///< requests in flight at once in perform_many()
    std::size_t max_host_connections = 64;        ///< connections kept per host (reused)
    std::chrono::milliseconds connect_timeout{3000};
    std::chrono::milliseconds request_timeout{10000};  ///< 0 = none (long polls)
    bool verify_tls = true;
    std::string user_agent = "wsgate";
};

/**
 * HttpClient over libcurl: perform_many() keeps up to `max_concurrency` transfers in flight on one
 * multi handle, whose connections stay open for the next call. Concurrent callers each take their
 * own multi handle from a small pool (no curl state is shared between threads), so they do not wait
 * for each other.
 *
 * @par Thread Safety Safe.
 */
class CurlHttpClient final : public HttpClient {
public:
    explicit CurlHttpClient(CurlSettings settings = {});
    ~CurlHttpClient() override;

    HttpResponse perform(const HttpRequest& request) override;
    void perform_many(std::span<const HttpRequest> requests, std::span<HttpResponse> out) override;

    [[nodiscard]] const CurlSettings& settings() const noexcept { return settings_; }

private:
    struct Impl;
    CurlSettings settings_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace wsgate::aws

#pragma once
/** @file connections_transport.hpp Transport over API Gateway's @connections management API. */

#include <wsgate/aws/http_client.hpp>
#include <wsgate/aws/sigv4.hpp>
#include <wsgate/clock.hpp>
#include <wsgate/transport.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace wsgate::aws {

/// Where the management API lives, parsed from a URL.
struct Endpoint {
    std::string scheme = "https";  ///< `https` (or `http` for a local test endpoint)
    std::string host;              ///< `abc123.execute-api.us-east-1.amazonaws.com` or `host:port`
    std::string stage;             ///< `prod`; empty for a custom domain mapped at the root
};

/**
 * Parses the @connections endpoint from `wss://`, `https://` or `http://` URLs
 * (`wss://abc.execute-api.eu-west-1.amazonaws.com/prod` → https, host, stage `prod`): the
 * management API is always HTTP(S), never the WebSocket URL itself. Errors: config_errc::bad_endpoint.
 */
[[nodiscard]] std::optional<Endpoint> parse_endpoint(std::string_view url, std::error_code& ec);
/// The region in an `*.execute-api.{region}.amazonaws.com` host name, or empty.
[[nodiscard]] std::string region_from_host(std::string_view host);

/// Settings of ConnectionsTransport; unset fields come from the environment.
struct ConnectionsSettings {
    /// `wss://…/stage`, `https://…/stage` (WEBSOCKET_API_ENDPOINT style) or a local `http://` URL.
    std::string endpoint;
    /// Empty → AWS_REGION, then AWS_DEFAULT_REGION, then the `execute-api` host name.
    std::string region;
    /// Unset → AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN.
    std::optional<Credentials> credentials;
    std::string service = "execute-api";
    /// Retries of a 429 or 5xx answer (or no answer at all) before giving up.
    int max_retries = 3;
    std::chrono::milliseconds retry_base{50};   ///< first backoff; doubled per attempt
    std::chrono::milliseconds retry_max{1000};  ///< backoff ceiling
    /// The HTTP client; null → a CurlHttpClient with `curl`.
    std::shared_ptr<HttpClient> http;
    CurlSettings curl;
};

/// What one POST to @connections came to.
struct PostResult {
    SendStatus status = SendStatus::error;
    int http_status = 0;      ///< the last answer's status (0: none)
    std::error_code error;    ///< transport_errc::{gone, forbidden, too_large, throttled, failed}
    int attempts = 0;
};

/// GET @connections/{id}: the connection's metadata.
struct ConnectionInfo {
    int http_status = 0;
    std::error_code error;     ///< gone (410), forbidden, failed
    std::string connected_at;  ///< ISO-8601 as API Gateway reports it
    std::string last_active_at;
    std::string source_ip;
    std::string user_agent;
};

/// Counters of a ConnectionsTransport.
struct ConnectionsStats {
    std::atomic<std::uint64_t> posts{0}, delivered{0}, gone{0}, forbidden{0}, too_large{0}, throttled{0},
        failed{0}, retries{0}, deletes{0};
};

/**
 * The API Gateway @connections Transport: POST `{endpoint}/@connections/{id}` to send, DELETE to
 * close, GET for connection info; every request signed with SigV4 (service `execute-api`).
 *
 * 410 → SendStatus::gone (the Gateway removes the record); 403 → error `forbidden`; 413 → error
 * `too_large`; 429 and 5xx are retried with bounded exponential backoff, then `throttled` /
 * `failed`. send_many() sends the whole fan-out in parallel through the HttpClient (libcurl multi,
 * bounded concurrency, connections reused).
 *
 * Unlike socket transports, a send here waits for API Gateway's answer: that is how the 410 is
 * learned, and it is what a Lambda handling one event at a time wants.
 *
 * @code
 * auto t = std::make_shared<wsgate::aws::ConnectionsTransport>(
 *     wsgate::aws::ConnectionsSettings{.endpoint = "wss://abc.execute-api.eu-west-1.amazonaws.com/prod"});
 * @endcode
 * @par Thread Safety Safe.
 */
class ConnectionsTransport final : public Transport {
public:
    /// Throws std::invalid_argument when the endpoint, region or credentials cannot be determined.
    explicit ConnectionsTransport(ConnectionsSettings settings,
                                  std::shared_ptr<const Clock> clock = std::make_shared<SystemClock>());

    SendStatus send(const ConnectionId& id, const Payload& payload) override;
    void send_many(std::span<const ConnectionId> ids, const Payload& payload, std::span<SendStatus> out) override;
    /// DELETE @connections/{id}. API Gateway has no close code: the client sees 1000/1005.
    void close(const ConnectionId& id, CloseCode code, std::string_view reason) override;

    /// One POST with the detailed outcome.
    PostResult post(const ConnectionId& id, std::string_view data);
    /// Many POSTs in parallel, `out[i]` for `ids[i]`.
    void post_many(std::span<const ConnectionId> ids, std::string_view data, std::span<PostResult> out);
    /// GET @connections/{id}.
    ConnectionInfo get_connection(const ConnectionId& id);

    /// The signed request for `method` on `id` (what post/close/get send).
    [[nodiscard]] HttpRequest make_request(std::string_view method, const ConnectionId& id, std::string body) const;
    [[nodiscard]] const Endpoint& endpoint() const noexcept { return endpoint_; }
    [[nodiscard]] const std::string& region() const noexcept { return region_; }
    [[nodiscard]] const ConnectionsStats& stats() const noexcept { return stats_; }

private:
    ConnectionsSettings settings_;
    std::shared_ptr<const Clock> clock_;
    Endpoint endpoint_;
    std::string region_;
    Credentials credentials_;
    std::shared_ptr<HttpClient> http_;
    mutable ConnectionsStats stats_;
};

}  // namespace wsgate::aws

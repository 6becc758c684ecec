#pragma once
/** @file sigv4.hpp AWS Signature Version 4 request signing (HMAC-SHA256, on OpenSSL). */

#include <wsgate/aws/http_client.hpp>
#include <wsgate/clock.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace wsgate::aws {

/**
 * AWS credentials. An empty `session_token` means long-term keys.
 * @par Thread Safety Value type.
 */
struct Credentials {
    std::string access_key_id;
    std::string secret_access_key;
    std::string session_token;

    /// From AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN; nullopt if a key is missing.
    [[nodiscard]] static std::optional<Credentials> from_environment();
};

/// What a request is signed for.
struct SigningScope {
    std::string region;                  ///< e.g. `us-east-1`
    std::string service = "execute-api";  ///< the @connections management API's service name
};

/// Every intermediate of one signature, for tests and diagnostics.
struct Signature {
    std::string canonical_request;
    std::string string_to_sign;
    std::string signed_headers;  ///< `host;x-amz-date`
    std::string signature;       ///< lower-case hex
    std::string authorization;   ///< the `Authorization` header value
};

/// `20150830T123600Z`.
[[nodiscard]] std::string format_amz_date(TimePoint t);
/// Lower-case hex SHA-256 of `data`.
[[nodiscard]] std::string sha256_hex(std::string_view data);
/// Percent-encodes everything but the RFC 3986 unreserved set (and `/` unless `encode_slash`).
[[nodiscard]] std::string uri_encode(std::string_view s, bool encode_slash = true);

/**
 * The SigV4 canonical request of `request` as it stands (headers signed: all of them).
 * The path is normalized and each segment encoded once more (every service but S3).
 */
[[nodiscard]] Signature canonical_request(const HttpRequest& request);

/**
 * Signs `request` in place: adds `Host` (if absent), `X-Amz-Date` (if absent, from `now`),
 * `X-Amz-Security-Token` (if the credentials carry one and the request has none), then
 * `Authorization`. Returns every intermediate.
 *
 * @code
 * wsgate::aws::HttpRequest r{.method = "POST", .host = "abc.execute-api.eu-west-1.amazonaws.com",
 *                            .path = "/prod/@connections/Xyz%3D", .body = "{}"};
 * sign_request(r, creds, {.region = "eu-west-1"}, clock.now());
 * @endcode
 * @par Thread Safety Pure function.
 */
Signature sign_request(HttpRequest& request, const Credentials& credentials, const SigningScope& scope,
                       TimePoint now);

}  // namespace wsgate::aws

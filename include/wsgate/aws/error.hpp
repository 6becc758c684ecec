#pragma once
/** @file error.hpp Error codes of the AWS adapter (event parsing, signing, configuration). */

#include <string>
#include <system_error>

namespace wsgate::aws {

/// Why an API Gateway event, an authorizer event or a DynamoDB stream event was refused.
enum class event_errc {
    not_json = 1,        ///< the event text is not JSON
    not_an_object,       ///< the event (or a nested part that must be one) is not an object
    missing_field,       ///< a required field is absent (e.g. `requestContext.connectionId`)
    bad_field_type,      ///< a field has the wrong JSON type
    unknown_event_type,  ///< `eventType` / `routeKey` name no CONNECT, MESSAGE or DISCONNECT
    bad_base64,          ///< `isBase64Encoded` is true but the body is not base64
    bad_attribute_value, ///< a DynamoDB attribute value is not one of S, N, BOOL, NULL, M, L, SS, NS, BS, B
};

/// Misconfiguration of the @connections transport, reported by `make_*` helpers.
enum class config_errc {
    no_credentials = 1,  ///< no access key / secret given nor found in the environment
    no_region,           ///< no region given, none in the environment, none in the host name
    bad_endpoint,        ///< the endpoint URL is not `https://`, `http://` or `wss://` host[/stage]
};

const std::error_category& event_category() noexcept;
const std::error_category& config_category() noexcept;

inline std::error_code make_error_code(event_errc e) noexcept { return {static_cast<int>(e), event_category()}; }
inline std::error_code make_error_code(config_errc e) noexcept { return {static_cast<int>(e), config_category()}; }

}  // namespace wsgate::aws

template <> struct std::is_error_code_enum<wsgate::aws::event_errc> : std::true_type {};
template <> struct std::is_error_code_enum<wsgate::aws::config_errc> : std::true_type {};

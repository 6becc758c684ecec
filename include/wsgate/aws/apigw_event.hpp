#pragma once
/** @file apigw_event.hpp API Gateway WebSocket Lambda events in, Gateway calls, Lambda responses out. */

#include <wsgate/authorizer.hpp>
#include <wsgate/aws/error.hpp>
#include <wsgate/connection.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace wsgate {
class Gateway;
}

namespace wsgate::aws {

/// The three WebSocket event types (`requestContext.eventType`).
enum class EventType { connect, message, disconnect };
[[nodiscard]] std::string_view to_string(EventType t) noexcept;

/// `requestContext` of a WebSocket event (and of a REQUEST authorizer event).
struct RequestContext {
    std::string route_key;     ///< `$connect`, `$disconnect`, `$default` or a custom route
    EventType event_type = EventType::message;
    std::string connection_id;
    std::string domain_name;   ///< `abc123.execute-api.us-east-1.amazonaws.com`
    std::string stage;         ///< `prod`
    std::string api_id;
    std::string request_id;
    std::string message_id;    ///< MESSAGE events only
    std::string message_direction;
    std::int64_t connected_at = 0;        ///< Unix ms
    std::int64_t request_time_epoch = 0;  ///< Unix ms
    std::string source_ip;     ///< `identity.sourceIp`
    std::string user_agent;    ///< `identity.userAgent`
    /// The authorizer's context map (values as strings; numbers and booleans are stringified).
    /// API Gateway adds `principalId` and `integrationLatency`.
    std::map<std::string, std::string> authorizer;
    std::optional<int> disconnect_status_code;  ///< DISCONNECT only (1000, 1001, 1006, ...)
    std::string disconnect_reason;

    /// `https://{domain_name}/{stage}`, the @connections endpoint for this API.
    [[nodiscard]] std::string callback_url() const;
};

/**
 * One API Gateway WebSocket Lambda event.
 * @par Thread Safety Value type.
 */
struct WebSocketEvent {
    RequestContext context;
    std::map<std::string, std::string> headers;  ///< names lower-cased ($connect only)
    std::map<std::string, std::vector<std::string>> multi_value_headers;  ///< names lower-cased
    std::map<std::string, std::string> query;    ///< `queryStringParameters`
    std::map<std::string, std::vector<std::string>> multi_value_query;
    std::string body;                ///< decoded when `is_base64_encoded`
    bool is_base64_encoded = false;  ///< as the event said (the body above is already decoded)

    /// The ConnectRequest for Gateway::on_connect (connection id = API Gateway's connectionId).
    [[nodiscard]] ConnectRequest to_connect_request() const;
};

/// A parse outcome: the value, or an error code with a short detail naming the field.
template <class T>
struct Parsed {
    std::optional<T> value;
    std::error_code error;
    std::string detail;
    explicit operator bool() const noexcept { return value.has_value(); }
};

/// Parses an event; never throws. Errors: event_errc.
[[nodiscard]] Parsed<WebSocketEvent> parse_websocket_event(std::string_view json) noexcept;
/// The same from an already parsed JSON value.
[[nodiscard]] Parsed<WebSocketEvent> websocket_event_from_json(const nlohmann::json& event) noexcept;

/// Decodes standard base64 (padding optional, no whitespace); nullopt when invalid.
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view in);
[[nodiscard]] std::string base64_encode(std::string_view in);

/**
 * The authorizer context map for `p`: string values only, as API Gateway requires. Keys:
 * `kind` and `connectionType` (`user`/`public`/`anonymous`), `userId`, `sessionId`, `deviceId`,
 * `nickname`, `permissions` (comma-separated), `issuedAt` and `expiresAt` (the token's `exp`, which
 * the connection's deadline follows; Unix seconds) and `claims` (a JSON
 * string, omitted when empty). Maps with only some of these keys are read back too, such as those
 * of other authorizers and make_lambda_authorizer_result()'s (`connectionType`, `createdAt` as
 * ISO-8601 UTC).
 */
[[nodiscard]] std::map<std::string, std::string> to_authorizer_context(const Principal& p);
/// Inverse of to_authorizer_context(); unknown keys are kept in `claims`. Never throws.
[[nodiscard]] Principal principal_from_authorizer_context(const std::map<std::string, std::string>& context);

/**
 * A Lambda proxy response `{"statusCode": …, "body": …, "headers"?: {…}}`. On `$connect`, API
 * Gateway passes `headers` into the handshake response (the selected `Sec-WebSocket-Protocol`).
 */
struct LambdaResponse {
    int status_code = 200;
    std::string body;
    std::map<std::string, std::string> headers;  ///< omitted from the JSON when empty
    [[nodiscard]] nlohmann::json to_json() const {
        nlohmann::json j{{"statusCode", status_code}, {"body", body}};
        if (!headers.empty()) j["headers"] = headers;
        return j;
    }
    [[nodiscard]] std::string dump() const { return to_json().dump(); }
};

/// Settings of WebSocketEventHandler.
struct EventHandlerSettings {
    /// On $connect, trust a non-empty authorizer context (the REQUEST authorizer ran upstream) and
    /// register its principal; otherwise (or with no context) run the Gateway's Authorizer.
    bool trust_authorizer_context = true;
    /**
     * Subprotocol names accepted on $connect, in preference order; the first one the client
     * offered is echoed in the response's `Sec-WebSocket-Protocol` header (browsers fail a
     * handshake that offered protocols and got none back). The token convention is
     * `Sec-WebSocket-Protocol: wsgate, <token>`: the name is echoed, never the token. A $connect
     * that offers none of these is refused with 400 `unsupported_subprotocol`.
     */
    std::vector<std::string> subprotocols{"wsgate", "bearer"};
};

/**
 * Turns WebSocket Lambda events into Gateway calls: CONNECT → on_connect (with the upstream
 * authorizer's principal), MESSAGE → on_message (base64 bodies decoded), DISCONNECT →
 * on_disconnect. Malformed events give a 400 response, never an exception.
 *
 * @code
 * wsgate::aws::WebSocketEventHandler handler{gateway};
 * std::string response = handler.handle(event_json).dump();
 * @endcode
 * The Gateway must be built with `local_delivery_only = false` (any process reaches every connection).
 * @par Thread Safety Safe if the Gateway is (it is).
 */
class WebSocketEventHandler {
public:
    explicit WebSocketEventHandler(Gateway& gateway, EventHandlerSettings settings = {})
        : gateway_(gateway), settings_(settings) {}

    LambdaResponse handle(std::string_view event_json) noexcept;
    LambdaResponse handle(const WebSocketEvent& event) noexcept;

private:
    Gateway& gateway_;
    EventHandlerSettings settings_;
};

}  // namespace wsgate::aws

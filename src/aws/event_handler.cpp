// WebSocketEventHandler: API Gateway WebSocket events → Gateway calls → Lambda responses.
#include <wsgate/aws/apigw_event.hpp>
#include <wsgate/gateway.hpp>

namespace wsgate::aws {

using nlohmann::json;

// ---- the handler -------------------------------------------------------------------------

namespace {
LambdaResponse error_response(int status, std::string_view code, std::string_view detail) {
    json body{{"error", code}};
    if (!detail.empty()) body["detail"] = detail;
    return {status, body.dump()};
}
}  // namespace

LambdaResponse WebSocketEventHandler::handle(std::string_view event_json) noexcept {
    auto parsed = parse_websocket_event(event_json);
    if (!parsed) {
        try {
            return error_response(400, parsed.error.message(), parsed.detail);
        } catch (...) {
            return {400, {}};
        }
    }
    return handle(*parsed.value);
}

LambdaResponse WebSocketEventHandler::handle(const WebSocketEvent& ev) noexcept {
    try {
        const auto& ctx = ev.context;
        switch (ctx.event_type) {
            case EventType::connect: {
                const auto request = ev.to_connect_request();
                bool has_context = false;
                for (const auto& [k, v] : ctx.authorizer)
                    if (k != "principalId" && k != "integrationLatency") has_context = true;
                ConnectResult r = settings_.trust_authorizer_context && has_context
                                      ? gateway_.on_connect(request, principal_from_authorizer_context(ctx.authorizer))
                                      : gateway_.on_connect(request);
                if (r.accepted) return {200, "Connected"};
                return error_response(r.status == 200 ? 401 : r.status, r.reason, {});
            }
            case EventType::message: {
                const auto ec = gateway_.on_message(ctx.connection_id, ev.body);
                if (!ec) return {200, {}};
                int status = 400;
                if (ec.category() == protocol_category()) status = status_of(static_cast<protocol_errc>(ec.value()));
                return error_response(status, ec.message(), {});
            }
            case EventType::disconnect:
                gateway_.on_disconnect(ctx.connection_id);
                return {200, "Disconnected"};
        }
        return error_response(400, "unknown event type", {});
    } catch (const std::exception& e) {
        try {
            return error_response(500, "internal error", e.what());
        } catch (...) {
        }
    } catch (...) {
    }
    return {500, {}};
}

}  // namespace wsgate::aws

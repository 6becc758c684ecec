// WebSocketEventHandler: API Gateway WebSocket events → Gateway calls → Lambda responses.
#include <wsgate/aws/apigw_event.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/detail/text.hpp>

#include <algorithm>
#include <optional>

namespace wsgate::aws {

using nlohmann::json;

// ---- the handler -------------------------------------------------------------------------

namespace {
LambdaResponse error_response(int status, std::string_view code, std::string_view detail) {
    json body{{"error", code}};
    if (!detail.empty()) body["detail"] = detail;
    return {status, body.dump(), {}};
}

using wsgate::detail::trim;

// The accepted name to echo for an offered `Sec-WebSocket-Protocol` list: empty when nothing
// was offered, nullopt when something was offered but no accepted name.
std::optional<std::string> chosen_subprotocol(const ConnectRequest& req, const std::vector<std::string>& accepted) {
    const std::string* offered = req.header("sec-websocket-protocol");
    if (offered == nullptr) return std::string{};
    std::vector<std::string_view> list;
    for (std::string_view rest = *offered; !rest.empty();) {
        auto comma = rest.find(',');
        if (auto e = trim(rest.substr(0, comma)); !e.empty()) list.push_back(e);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
    }
    if (list.empty()) return std::string{};
    for (const auto& name : accepted)
        if (std::find(list.begin(), list.end(), name) != list.end()) return name;
    return std::nullopt;
}
}  // namespace

LambdaResponse WebSocketEventHandler::handle(std::string_view event_json) noexcept {
    auto parsed = parse_websocket_event(event_json);
    if (!parsed) {
        try {
            return error_response(400, parsed.error.message(), parsed.detail);
        } catch (...) {
            return {400, {}, {}};
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
                const auto protocol = chosen_subprotocol(request, settings_.subprotocols);
                if (!protocol) return error_response(400, "unsupported_subprotocol", {});
                bool has_context = false;
                for (const auto& [k, v] : ctx.authorizer)
                    if (k != "principalId" && k != "integrationLatency") has_context = true;
                ConnectResult r = settings_.trust_authorizer_context && has_context
                                      ? gateway_.on_connect(request, principal_from_authorizer_context(ctx.authorizer))
                                      : gateway_.on_connect(request);
                if (r.accepted) {
                    LambdaResponse ok{200, "Connected", {}};
                    if (!protocol->empty()) ok.headers["Sec-WebSocket-Protocol"] = *protocol;
                    return ok;
                }
                return error_response(r.status == 200 ? 401 : r.status, r.reason, {});
            }
            case EventType::message: {
                const auto ec = gateway_.on_message(ctx.connection_id, ev.body);
                if (!ec) return {200, {}, {}};
                int status = 400;
                if (ec.category() == protocol_category()) status = status_of(static_cast<protocol_errc>(ec.value()));
                return error_response(status, ec.message(), {});
            }
            case EventType::disconnect:
                gateway_.on_disconnect(ctx.connection_id);
                return {200, "Disconnected", {}};
        }
        return error_response(400, "unknown event type", {});
    } catch (const std::exception& e) {
        try {
            return error_response(500, "internal error", e.what());
        } catch (...) {
        }
    } catch (...) {
    }
    return {500, {}, {}};
}

}  // namespace wsgate::aws

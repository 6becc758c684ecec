// wsgate behind API Gateway: one binary for every Lambda function of the stack in template.yaml.
// `WSGATE_HANDLER` picks the function it serves:
//   websocket   $connect / $disconnect / $default events (WebSocketEventHandler)
//   authorizer  the $connect route's REQUEST authorizer (AuthorizerHandler)
//   broadcast   DynamoDB stream batches and direct `{"broadcast": {...}}` invocations
//   (unset)     any of them, told apart by the event's shape
// A function given an event of another kind fails the invocation with an error naming both.
// `WSGATE_STORE` (or `--store SPEC` locally) chooses the ConnectionStore through
// wsgate::make_store(): `memory` (the default), `dynamodb://TABLE?...`, `redis://...`.
//
// Locally: aws_lambda_example [--store SPEC] events/*.json   (replies are printed instead of posted)
// On Lambda (custom runtime, `bootstrap`): no arguments; events come from AWS_LAMBDA_RUNTIME_API.
// Against a real API: set WEBSOCKET_API_ENDPOINT=wss://{api}.execute-api.{region}.amazonaws.com/{stage}
// and the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN / AWS_REGION.
#include <wsgate/auth/token_authorizer.hpp>
#include <wsgate/aws.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/stores/factory.hpp>
#include <wsgate/stream/change_stream.hpp>

#include <array>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using nlohmann::json;

/// The kinds of event the stack's functions receive.
enum class EventKind { websocket, authorizer, broadcast };

/// One Lambda function of the stack: its WSGATE_HANDLER value and the events it serves.
struct HandlerMode {
    std::string_view name;
    EventKind kind;
    std::string_view serves;
};
constexpr std::array<HandlerMode, 3> handler_modes{{
    {"websocket", EventKind::websocket, "API Gateway WebSocket events ($connect, $disconnect, $default)"},
    {"authorizer", EventKind::authorizer, "REQUEST authorizer events of the $connect route"},
    {"broadcast", EventKind::broadcast, "DynamoDB stream batches and {\"broadcast\": ...} invocations"},
}};

std::string_view mode_name(EventKind kind) {
    for (const auto& m : handler_modes)
        if (m.kind == kind) return m.name;
    return "?";
}

std::string_view describe(EventKind kind) {
    switch (kind) {
    case EventKind::websocket: return "an API Gateway WebSocket event";
    case EventKind::authorizer: return "a REQUEST authorizer event";
    case EventKind::broadcast: return "a broadcast event (DynamoDB stream batch or {\"broadcast\": ...})";
    }
    return "an event";
}

/// The mode a WSGATE_HANDLER value names; nullopt for unset or empty (dispatch by shape).
/// @throws std::invalid_argument for any other value.
std::optional<HandlerMode> parse_handler_mode(const char* value) {
    if (value == nullptr || *value == '\0') return std::nullopt;
    for (const auto& m : handler_modes)
        if (m.name == value) return m;
    std::string names;
    for (const auto& m : handler_modes) names += (names.empty() ? "" : ", ") + std::string(m.name);
    throw std::invalid_argument("unknown WSGATE_HANDLER '" + std::string(value) + "': expected one of " + names +
                                " (or unset to dispatch by event shape)");
}

/// What an event is, by its shape; nullopt when it is none of the three (the WebSocket handler
/// answers those with a 400).
std::optional<EventKind> kind_of(const json& event) {
    if (!event.is_object()) return std::nullopt;
    if (event.contains("Records") || event.contains("broadcast")) return EventKind::broadcast;
    if (event.value("type", std::string{}) == "REQUEST") return EventKind::authorizer;
    if (const auto rc = event.find("requestContext"); rc != event.end() && rc->is_object() && rc->contains("eventType"))
        return EventKind::websocket;
    return std::nullopt;
}

/// An event sent to the function of another mode (a miswired route or event source mapping).
/// Thrown out of the handler, so Lambda records a failed invocation and retries stream batches
/// instead of taking a wrong answer as success.
class WrongEventKind : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Where the authorizer reads the client's token. template.yaml names the same place as the
// authorizer's identity source (`route.request.querystring.token`), so API Gateway refuses a
// $connect without it before any Lambda runs.
constexpr std::string_view token_query_parameter = "token";

// The connections table as the DynamoDB store uses it (one table; string keys `pk` / `sk`; TTL
// attribute `ttl`, docs/aws.md). template.yaml declares the same; check_template.py compares.
json table_schema() {
    return {{"KeySchema", json::array({{{"AttributeName", "pk"}, {"KeyType", "HASH"}},
                                       {{"AttributeName", "sk"}, {"KeyType", "RANGE"}}})},
            {"AttributeDefinitions", json::array({{{"AttributeName", "pk"}, {"AttributeType", "S"}},
                                                  {{"AttributeName", "sk"}, {"AttributeType", "S"}}})},
            {"BillingMode", "PAY_PER_REQUEST"},
            {"TimeToLiveAttribute", "ttl"}};
}

wsgate::GatewaySettings gateway_settings() {
    wsgate::GatewaySettings settings;
    settings.local_delivery_only = false;  // behind API Gateway every process reaches every connection
    settings.router.topic_rules.push_back({"leaderboard:*", "read_leaderboard", ""});
    return settings;
}

/// What the example tells the template checker: modes, API wiring, table schema.
json describe_stack() {
    json modes = json::array();
    for (const auto& m : handler_modes) modes.push_back({{"name", m.name}, {"serves", m.serves}});
    return {{"handlers", modes},
            {"route_selection_expression", "$request.body." + gateway_settings().router.route_key},
            {"identity_source", "route.request.querystring." + std::string(token_query_parameter)},
            {"table", table_schema()}};
}

// Prints what the @connections transport would post; used when no endpoint is configured.
class PrintingTransport final : public wsgate::Transport {
public:
    wsgate::SendStatus send(const wsgate::ConnectionId& id, const wsgate::Payload& payload) override {
        std::lock_guard lock{mu_};
        std::cout << "  POST @connections/" << id << "  " << *payload << '\n';
        return wsgate::SendStatus::ok;
    }
    void close(const wsgate::ConnectionId& id, wsgate::CloseCode, std::string_view) override {
        std::lock_guard lock{mu_};
        std::cout << "  DELETE @connections/" << id << '\n';
    }

private:
    std::mutex mu_;
};

/// HS256 session tokens when WSGATE_JWT_SECRET is set (read from `?token=` only, the identity
/// source); otherwise every client is let in as an anonymous leaderboard reader.
std::shared_ptr<wsgate::Authorizer> make_authorizer() {
    const char* secret = std::getenv("WSGATE_JWT_SECRET");
    if (secret == nullptr || *secret == '\0')
        return std::make_shared<wsgate::AnonymousAuthorizer>(std::vector<std::string>{"read_leaderboard"});
    wsgate::jwt::Verifier sessions;
    sessions.allow(wsgate::jwt::Key::hmac(wsgate::jwt::Algorithm::hs256, secret));
    wsgate::TokenAuthorizerSettings where;
    where.query_parameter = std::string(token_query_parameter);
    where.accept_bearer_header = false;
    where.accept_subprotocol = false;
    return std::make_shared<wsgate::TokenAuthorizer>(std::move(sessions), std::move(where));
}

// The application: one per process (a warm Lambda reuses it across events). The authorizer
// function needs neither the store nor the @connections transport, so it builds neither.
struct App {
    std::optional<HandlerMode> mode;
    std::shared_ptr<wsgate::Authorizer> authorizer = make_authorizer();
    std::shared_ptr<wsgate::ConnectionStore> store;
    std::shared_ptr<wsgate::Transport> transport;
    std::unique_ptr<wsgate::Gateway> gateway;
    std::unique_ptr<wsgate::aws::WebSocketEventHandler> connection_handler;
    std::unique_ptr<wsgate::aws::AuthorizerHandler> authorizer_handler;

    App(std::optional<HandlerMode> handler_mode, const std::string& store_spec) : mode(handler_mode) {
        if (!mode || mode->kind == EventKind::authorizer)
            authorizer_handler = std::make_unique<wsgate::aws::AuthorizerHandler>(authorizer);
        if (mode && mode->kind == EventKind::authorizer) return;
        try {
            store = wsgate::make_store(store_spec);
        } catch (const std::exception& e) {
            throw std::runtime_error("store '" + store_spec + "': " + e.what());
        }
        if (const char* endpoint = std::getenv("WEBSOCKET_API_ENDPOINT"); endpoint != nullptr && *endpoint != '\0') {
            wsgate::aws::ConnectionsSettings cs;
            cs.endpoint = endpoint;  // wss:// is turned into the https:// management API
            transport = std::make_shared<wsgate::aws::ConnectionsTransport>(cs);
        } else {
            transport = std::make_shared<PrintingTransport>();
        }
        // Connections the REQUEST authorizer let in carry its context; the Gateway's own
        // authorizer only runs for $connect events without one.
        gateway = std::make_unique<wsgate::Gateway>(gateway_settings(), store, transport, authorizer);
        connection_handler = std::make_unique<wsgate::aws::WebSocketEventHandler>(*gateway);
    }

    /// The broadcast handler: a DynamoDB stream batch goes through the change-stream processor
    /// and leaves as one `METRICS_UPDATE` message to everyone (seed 002); a direct
    /// `{"broadcast": {"type", "topic"?, "data"?, ...}}` is published as is.
    ///
    /// A stream batch answers `{"batchItemFailures":[…]}` (the event source mapping sets
    /// `FunctionResponseTypes: ["ReportBatchItemFailures"]`): a record that cannot be read or
    /// published is named by its SequenceNumber and Lambda retries from it (bisecting the batch
    /// when `BisectBatchOnFunctionError` is on) instead of redelivering the records before it.
    json broadcast(const json& event) {
        wsgate::BroadcastReport report;
        if (event.contains("Records")) {
            wsgate::ChangeStreamProcessor processor{
                std::make_shared<wsgate::SystemClock>(),
                [&](const wsgate::Envelope& e, const wsgate::Audience& a) {
                    report = gateway->publish(e, a);
                    // Gone connections are cleaned up and per-connection failures are counted
                    // (the seed's Promise.allSettled); a publish that may have missed part of its
                    // audience (store unreachable) is retried.
                    if (report.degraded) throw std::runtime_error("publish degraded: " + report.degraded_reason);
                },
                wsgate::ChangeStreamSettings::everyone()};
            wsgate::ChangeRecordFormat format;
            format.default_entity_type = "metrics";  // the table, for images without `entity_type`
            const auto reply = wsgate::aws::handle_dynamodb_stream_event(
                event.dump(),
                [&](const wsgate::aws::DynamoDbRecord& r) {
                    std::error_code ec;
                    auto change = wsgate::parse_change_record(r.to_change_json(), ec, format);
                    if (!change) throw std::runtime_error(ec.message());
                    if (auto pushed = processor.push(std::move(*change))) throw std::runtime_error(pushed.message());
                },
                [&] {  // one invocation is one batch
                    const auto failures = processor.stats().sink_failures;
                    processor.flush();
                    if (processor.stats().sink_failures != failures) throw std::runtime_error("delivery failed");
                });
            if (!reply.ok()) std::cerr << "stream batch: " << reply.failure << '\n';
            json out = reply.to_json();  // what Lambda reads; the rest is for the logs
            out["processed"] = reply.processed;
            out["delivered"] = report.delivered;
            out["goneRemoved"] = report.gone_removed;
            return out;
        }
        const auto& b = event.at("broadcast");
        wsgate::Envelope e{b.value("type", std::string{"broadcast"})};
        auto audience = wsgate::Audience::everyone();
        for (const auto& [key, value] : b.items()) {
            if (key == "type") continue;
            if (key == "topic") {
                e.topic(value.get<std::string>());
                audience = wsgate::Audience::topic(value.get<std::string>());
            } else if (key == "data") {
                e.data(value);
            } else {
                e.field(key, value);
            }
        }
        report = gateway->publish(e, audience);
        return {{"statusCode", 200}, {"delivered", report.delivered}, {"goneRemoved", report.gone_removed},
                {"failed", report.failed}};
    }

    /// Routes one event to its handler by shape, after checking it is this function's kind.
    /// @throws WrongEventKind for an event of another function's kind.
    json handle(const std::string& text) {
        const auto event = json::parse(text, nullptr, false);
        const auto kind = kind_of(event);
        if (mode && kind && *kind != mode->kind)
            throw WrongEventKind("WSGATE_HANDLER=" + std::string(mode->name) + " serves " + std::string(mode->serves) +
                                 ", but this is " + std::string(describe(*kind)) +
                                 ": send it to the function whose WSGATE_HANDLER is " +
                                 std::string(mode_name(*kind)));
        const auto serving = kind ? *kind : mode ? mode->kind : EventKind::websocket;
        switch (serving) {
        case EventKind::broadcast:
            try {
                return broadcast(event);
            } catch (const std::exception& e) {
                return {{"statusCode", 400}, {"body", e.what()}};
            }
        case EventKind::authorizer: return authorizer_handler->handle(text).response;
        case EventKind::websocket: break;
        }
        return connection_handler->handle(text).to_json();
    }
};

std::string read_file(const std::string& path) {
    std::ifstream in{path, std::ios::binary};
    if (!in) throw std::runtime_error("cannot read " + path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string env_or(const char* name, std::string fallback) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

constexpr std::string_view usage =
    "usage: aws_lambda_example [--store SPEC] <event.json>...   run sample events (replies are printed)\n"
    "       aws_lambda_example --list-handlers                  the WSGATE_HANDLER values\n"
    "       aws_lambda_example --describe                       handlers, API wiring and table schema as JSON\n"
    "       (no arguments, AWS_LAMBDA_RUNTIME_API set)           serve a Lambda function as its bootstrap\n"
    "environment: WSGATE_HANDLER (websocket|authorizer|broadcast; unset: by event shape),\n"
    "             WSGATE_STORE (store spec, default memory; --store wins), WEBSOCKET_API_ENDPOINT,\n"
    "             WSGATE_JWT_SECRET (HS256 session tokens in ?token=; unset: anonymous readers)\n";

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (!args.empty() && args.front() == "--list-handlers") {
        for (const auto& m : handler_modes) std::cout << m.name << '\t' << m.serves << '\n';
        return 0;
    }
    if (!args.empty() && args.front() == "--describe") {
        std::cout << describe_stack().dump(2) << '\n';
        return 0;
    }
    if (!args.empty() && (args.front() == "--help" || args.front() == "-h")) {
        std::cout << usage;
        return 0;
    }
    std::string store_spec = env_or("WSGATE_STORE", "memory");
    if (args.size() >= 2 && args.front() == "--store") {
        store_spec = args[1];
        args.erase(args.begin(), args.begin() + 2);
    }
    std::optional<HandlerMode> mode;
    try {
        mode = parse_handler_mode(std::getenv("WSGATE_HANDLER"));
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << '\n';
        return 2;
    }

    // Deployed as a Lambda custom runtime (bootstrap): serve events from the Runtime API.
    if (args.empty() && std::getenv("AWS_LAMBDA_RUNTIME_API")) {
        try {
            App app{mode, store_spec};
            wsgate::aws::run_lambda_runtime(
                [&](const wsgate::aws::Invocation& inv) { return app.handle(inv.event).dump(); });
            return 0;
        } catch (const std::exception& e) {
            std::cerr << "error: " << e.what() << '\n';
            return 1;
        }
    }
    if (args.empty() || args.front().starts_with("--")) {
        std::cerr << usage;
        return 2;
    }
    std::optional<App> app;
    try {
        app.emplace(mode, store_spec);
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << '\n';
        return 1;
    }
    if (app->store) std::cout << "store " << store_spec << '\n';
    int status = 0;
    for (const auto& path : args) {
        std::cout << "event " << path << '\n';
        try {
            const auto response = app->handle(read_file(path));
            std::cout << "  -> " << response.dump() << '\n';
        } catch (const std::exception& e) {
            // On Lambda this is the invocation's error (run_lambda_runtime posts it).
            std::cout << "  -> error: " << e.what() << '\n';
            status = 1;
        }
    }
    if (app->store) {
        try {
            std::cout << "connections left: " << app->store->count() << '\n';
        } catch (const std::exception& e) {
            std::cerr << "error: " << e.what() << '\n';
            return 1;
        }
    }
    return status;
}

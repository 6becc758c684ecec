// wsgate behind API Gateway: one handler for $connect / $disconnect / $default, one broadcast
// handler (direct invocation or a DynamoDB stream), and the REQUEST authorizer.
//
// Locally: aws_lambda_example events/*.json   (replies are printed instead of posted)
// On Lambda (custom runtime, `bootstrap`): no arguments; events come from AWS_LAMBDA_RUNTIME_API.
// Against a real API: set WEBSOCKET_API_ENDPOINT=wss://{api}.execute-api.{region}.amazonaws.com/{stage}
// and the usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN / AWS_REGION.
#include <wsgate/aws.hpp>
#include <wsgate/stream/change_stream.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/memory_store.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace {

using nlohmann::json;

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

// The application: one Gateway per process (a warm Lambda reuses it across events).
struct App {
    std::shared_ptr<wsgate::ConnectionStore> store = std::make_shared<wsgate::InMemoryConnectionStore>();
    std::shared_ptr<wsgate::Transport> transport;
    std::unique_ptr<wsgate::Gateway> gateway;
    std::unique_ptr<wsgate::aws::WebSocketEventHandler> connection_handler;
    std::unique_ptr<wsgate::aws::AuthorizerHandler> authorizer_handler;

    App() {
        if (const char* endpoint = std::getenv("WEBSOCKET_API_ENDPOINT")) {
            wsgate::aws::ConnectionsSettings cs;
            cs.endpoint = endpoint;  // wss:// is turned into the https:// management API
            transport = std::make_shared<wsgate::aws::ConnectionsTransport>(cs);
        } else {
            transport = std::make_shared<PrintingTransport>();
        }
        wsgate::GatewaySettings settings;
        settings.local_delivery_only = false;  // behind API Gateway every process reaches every connection
        settings.router.topic_rules.push_back({"leaderboard:*", "read_leaderboard", ""});
        // Connections without an upstream authorizer context are let in anonymously here; plug a
        // TokenAuthorizer (JWTs) for real deployments.
        auto authorizer = std::make_shared<wsgate::AnonymousAuthorizer>(std::vector<std::string>{"read_leaderboard"});
        gateway = std::make_unique<wsgate::Gateway>(settings, store, transport, authorizer);
        connection_handler = std::make_unique<wsgate::aws::WebSocketEventHandler>(*gateway);
        authorizer_handler = std::make_unique<wsgate::aws::AuthorizerHandler>(authorizer);
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

    /// Routes one event to its handler by shape.
    json handle(const std::string& text) {
        auto event = json::parse(text, nullptr, false);
        if (event.is_object() && (event.contains("Records") || event.contains("broadcast"))) {
            try {
                return broadcast(event);
            } catch (const std::exception& e) {
                return {{"statusCode", 400}, {"body", e.what()}};
            }
        }
        if (event.is_object() && event.value("type", std::string{}) == "REQUEST")
            return authorizer_handler->handle(text).response;
        return connection_handler->handle(text).to_json();
    }
};

std::string read_file(const char* path) {
    std::ifstream in{path, std::ios::binary};
    if (!in) throw std::runtime_error(std::string{"cannot read "} + path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
    // Deployed as a Lambda custom runtime (bootstrap): serve events from the Runtime API.
    if (argc < 2 && std::getenv("AWS_LAMBDA_RUNTIME_API")) {
        try {
            App app;
            wsgate::aws::run_lambda_runtime(
                [&](const wsgate::aws::Invocation& inv) { return app.handle(inv.event).dump(); });
            return 0;
        } catch (const std::exception& e) {
            std::cerr << "error: " << e.what() << '\n';
            return 1;
        }
    }
    if (argc < 2) {
        std::cerr << "usage: aws_lambda_example <event.json>...   (or run as a Lambda bootstrap)\n";
        return 2;
    }
    try {
        App app;
        for (int i = 1; i < argc; ++i) {
            std::cout << "event " << argv[i] << '\n';
            const auto response = app.handle(read_file(argv[i]));
            std::cout << "  -> " << response.dump() << '\n';
        }
        std::cout << "connections left: " << app.store->count() << '\n';
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << '\n';
        return 1;
    }
    return 0;
}

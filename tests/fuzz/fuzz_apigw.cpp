// Fuzzes the API Gateway event path: arbitrary bytes as a WebSocket event ($connect, $disconnect,
// messages), as a REQUEST authorizer event and as a DynamoDB stream event. Every event also goes
// through WebSocketEventHandler into an in-memory Gateway whose bystander connection must stay
// untouched, and whatever the handler answers must be a well-formed Lambda response.
#include <wsgate/aws/apigw_event.hpp>
#include <wsgate/aws/authorizer_event.hpp>
#include <wsgate/aws/dynamodb_stream.hpp>
#include <wsgate/wsgate.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

struct World {
    std::shared_ptr<wsgate::ManualClock> clock = std::make_shared<wsgate::ManualClock>();
    std::shared_ptr<wsgate::InMemoryConnectionStore> store = std::make_shared<wsgate::InMemoryConnectionStore>();
    std::shared_ptr<wsgate::InMemoryTransport> transport = std::make_shared<wsgate::InMemoryTransport>(64);
    std::unique_ptr<wsgate::Gateway> gw;
    std::unique_ptr<wsgate::aws::WebSocketEventHandler> handler;
    wsgate::ConnectionId bystander = "bystander=";

    World() {
        wsgate::GatewaySettings s;
        s.local_delivery_only = false;
        s.max_message_bytes = 4096;
        s.rate_per_second = 0;
        s.max_connections = 256;
        s.router.topic_rules = {{"leaderboard:*", "read_leaderboard", "admin", /*anonymous_read=*/true}};
        gw = std::make_unique<wsgate::Gateway>(
            s, store, transport,
            std::make_shared<wsgate::AnonymousAuthorizer>(std::vector<std::string>{"read_leaderboard"}), clock);
        handler = std::make_unique<wsgate::aws::WebSocketEventHandler>(*gw);
        wsgate::ConnectRequest req;
        req.connection_id = bystander;
        transport->open(bystander);
        if (!gw->on_connect(req).accepted) std::abort();
        store->subscribe(bystander, "leaderboard:1");
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static World w;
    const std::string_view in{reinterpret_cast<const char*>(data), size};

    (void)wsgate::aws::parse_authorizer_event(in);
    (void)wsgate::aws::parse_dynamodb_stream_event(in);
    if (auto ev = wsgate::aws::parse_websocket_event(in); ev.value) {
        (void)wsgate::aws::principal_from_authorizer_context(ev.value->context.authorizer);
    }

    // A fuzzed event may connect, message or disconnect anything except the bystander's id
    // (which only its own $disconnect could end, as in production).
    const auto resp = w.handler->handle(in);
    if (resp.status_code < 100 || resp.status_code > 599) std::abort();
    (void)resp.dump();

    // The bystander is still there and still receives its topic.
    if (!w.store->get(w.bystander)) {
        // Only an event naming its id could have ended it; put it back for the next input.
        wsgate::ConnectRequest req;
        req.connection_id = w.bystander;
        w.transport->open(w.bystander);
        if (!w.gw->on_connect(req).accepted) std::abort();
        w.store->subscribe(w.bystander, "leaderboard:1");
    }
    (void)w.transport->drain(w.bystander);
    if (w.gw->publish(wsgate::Envelope{"tick"}, wsgate::Audience::topic("leaderboard:1")).delivered < 1) std::abort();
    if (w.transport->drain(w.bystander).size() != 1) std::abort();

    // Keep the table bounded across inputs.
    if (w.gw->local_count() > 128) {
        std::string cursor;
        do {
            auto page = w.store->scan(cursor, 256);
            for (const auto& rec : page.records)
                if (rec.id != w.bystander) w.gw->on_disconnect(rec.id);
            cursor = page.next_cursor;
        } while (!cursor.empty());
    }
    return 0;
}

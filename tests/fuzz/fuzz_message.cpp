// Fuzzes the per-message path: arbitrary client bytes into Gateway::on_message on an in-memory
// gateway with topic rules, host handlers and a second connection that must stay untouched.
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
    wsgate::ConnectionId fuzzed, bystander;

    World() {
        wsgate::GatewaySettings s;
        s.max_message_bytes = 4096;
        s.rate_per_second = 0;
        // `room:*` keeps a short history with cursors and presence, so recovery, history, ack
        // and presence requests reach real streams.
        wsgate::TopicRule room{"room:*", "", "", /*anonymous_read=*/true};
        room.history_size = 16;
        room.history_ttl = std::chrono::minutes{1};
        room.device_cursors = true;
        room.presence = true;
        room.presence_events = true;
        s.router.topic_rules = {{"leaderboard:*", "read_leaderboard", "admin"}, room};
        s.router.max_subscriptions = 8;
        gw = std::make_unique<wsgate::Gateway>(s, store, transport, std::make_shared<wsgate::AnonymousAuthorizer>(),
                                               clock);
        gw->router().on("timer", "update", [](wsgate::MessageContext& ctx) {
            ctx.publish(wsgate::Envelope{"timer"}.data(ctx.message().value("timer", nlohmann::json{})),
                        wsgate::Audience::everyone().except_sender(ctx.connection()));
        });
        gw->router().on("echo", [](wsgate::MessageContext& ctx) { ctx.reply(wsgate::Envelope{"echo"}.data(ctx.message())); });
        for (int i = 0; i < 20; ++i)
            gw->publish(wsgate::Envelope{"tick"}.data(i), wsgate::Audience::topic(i % 2 ? "room:1" : "room:2"));
        fuzzed = connect();
        bystander = connect();
        store->subscribe(bystander, "room");
    }
    wsgate::ConnectionId connect() {
        wsgate::ConnectRequest req;
        req.connection_id = wsgate::make_connection_id();
        transport->open(req.connection_id);
        return gw->on_connect(req).id;
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static World w;
    const std::string_view text{reinterpret_cast<const char*>(data), size};
    w.gw->on_message(w.fuzzed, text);
    // Every reply is valid JSON with a type; the bystander's record is never disturbed.
    for (const auto& frame : w.transport->drain(w.fuzzed)) {
        auto j = nlohmann::json::parse(frame, nullptr, false);
        if (j.is_discarded() || !j.contains("type")) std::abort();
    }
    w.transport->drain(w.bystander);
    auto rec = w.store->get(w.bystander);
    if (!rec || rec->topics != std::vector<std::string>{"room"}) std::abort();
    if (!w.store->get(w.fuzzed)) w.fuzzed = w.connect();  // a policy may end it; keep fuzzing
    return 0;
}

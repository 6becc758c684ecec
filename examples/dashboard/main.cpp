// Seed 002, the ops dashboard: database change records batched into METRICS_UPDATE pushes.
//
// Dashboards connect (their source IP and user agent are stored with the connection). A
// change stream delivers INSERT / MODIFY / REMOVE records; the ChangeStreamProcessor batches up
// to 100 records or 5 s (timed by the injected clock), coalesces repeated changes to one item,
// and publishes one METRICS_UPDATE per batch per topic: `entity:<type>` hears every change of a
// type (the wall display, like the seed's broadcast) and `entity:<type>:<id>` one entity only
// (the seed's "selective subscriptions" future work: the on-call laptop follows only stream-7).
//
//   dashboard_example           prints what each dashboard receives
//   dashboard_example --check   also verifies it and exits 1 on any difference
#include <wsgate/stream/change_stream.hpp>
#include <wsgate/wsgate.hpp>

#include <cstring>
#include <iostream>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
    const bool check = argc > 1 && std::strcmp(argv[1], "--check") == 0;
    auto clock = std::make_shared<wsgate::ManualClock>(wsgate::from_unix_ms(1'704'110'400'000));
    auto store = std::make_shared<wsgate::InMemoryConnectionStore>();
    auto transport = std::make_shared<wsgate::InMemoryTransport>();
    wsgate::GatewaySettings settings;
    // The dashboards are anonymous readers of the entity topics; nobody publishes from a client.
    settings.router.topic_rules = {{"entity:*", "", "", /*anonymous_read=*/true}};
    wsgate::Gateway gateway{settings, store, transport, std::make_shared<wsgate::AnonymousAuthorizer>(), clock};

    auto connect = [&](const char* ip, const char* agent) {
        wsgate::ConnectRequest req;
        req.connection_id = wsgate::make_connection_id();
        req.source_ip = ip;
        req.headers["user-agent"] = agent;
        transport->open(req.connection_id);
        return gateway.on_connect(req).id;
    };
    auto wall = connect("198.51.100.7", "Mozilla/5.0 (ops wall display)");
    auto focused = connect("198.51.100.8", "Mozilla/5.0 (on-call laptop)");
    gateway.on_message(wall, R"({"type":"subscribe","topic":"entity:stream"})");
    gateway.on_message(focused, R"({"type":"subscribe","topic":"entity:stream:stream-7"})");
    transport->drain(wall);  // the acks
    transport->drain(focused);

    wsgate::ChangeStreamSettings cs;  // defaults: 100 records / 5 s, coalescing, both topics
    wsgate::ChangeStreamProcessor stream{
        clock, [&](const wsgate::Envelope& e, const wsgate::Audience& a) { gateway.publish(e, a); }, cs};

    auto change = [&](const char* event, const char* id, int value) {
        nlohmann::json rec = {{"eventName", event},
                              {"keys", {{"entity_id", id}}},
                              {"sequenceNumber", std::to_string(wsgate::to_unix_ms(clock->now()))},
                              {"approximateCreationDateTime", wsgate::to_unix_seconds(clock->now())}};
        if (std::strcmp(event, "REMOVE") != 0)
            rec["newImage"] = {{"entity_id", id}, {"entity_type", "stream"}, {"throughput", value}};
        else
            rec["oldImage"] = {{"entity_id", id}, {"entity_type", "stream"}};
        std::error_code ec;
        auto parsed = wsgate::parse_change_record(rec, ec);
        if (!parsed) {
            std::cerr << "bad record: " << ec.message() << '\n';
            return;
        }
        stream.push(std::move(*parsed));
        clock->advance(100ms);
    };

    change("INSERT", "stream-1", 10);
    change("INSERT", "stream-7", 70);
    change("MODIFY", "stream-7", 75);  // coalesced with the INSERT: one update, latest image
    change("MODIFY", "stream-1", 12);
    stream.poll();                     // the 5 s window is still open: nothing yet
    std::cout << "after 0.4 s: wall has " << transport->queued(wall) << " frames\n";
    clock->advance(5s);
    stream.poll();                     // window closed: one METRICS_UPDATE
    change("REMOVE", "stream-1", 0);
    stream.flush();

    std::vector<nlohmann::json> wall_frames, focused_frames;
    for (auto& f : transport->drain(wall)) wall_frames.push_back(nlohmann::json::parse(f));
    for (auto& f : transport->drain(focused)) focused_frames.push_back(nlohmann::json::parse(f));
    for (auto& j : wall_frames) std::cout << "wall     <- " << j.dump() << '\n';
    for (auto& j : focused_frames) std::cout << "on-call  <- " << j.dump() << '\n';
    auto rec = store->get(wall);
    std::cout << "wall display connected from " << rec->source_ip << " (" << rec->user_agent << ")\n";

    if (!check) return 0;
    bool ok = wall_frames.size() == 2 && focused_frames.size() == 1 && rec->source_ip == "198.51.100.7" &&
              rec->user_agent == "Mozilla/5.0 (ops wall display)";
    if (ok) {
        const auto& first = wall_frames[0];
        ok = first["type"] == "METRICS_UPDATE" && first["updates"].size() == 2 &&
             wall_frames[1]["updates"].size() == 1 && wall_frames[1]["updates"][0]["eventType"] == "REMOVE";
        for (const auto& u : first["updates"])
            if (u["data"]["entity_id"] == "stream-7") ok = ok && u["eventType"] == "INSERT" && u["data"]["throughput"] == 75;
        const auto& mine = focused_frames[0];
        ok = ok && mine["type"] == "METRICS_UPDATE" && mine["updates"].size() == 1 &&
             mine["updates"][0]["data"]["entity_id"] == "stream-7";
    }
    std::cout << (ok ? "CHECK OK\n" : "CHECK FAILED\n");
    return ok ? 0 : 1;
}

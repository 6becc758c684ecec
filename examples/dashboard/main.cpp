// Seed 002, the ops dashboard, with seed 004's events feed: database change records batched into
// METRICS_UPDATE pushes, and `event_created` / `event_deleted` / `metrics_update` messages.
//
// Dashboards connect (their source IP and user agent are stored with the connection, for 24 h as
// the seed's connection table). A change stream delivers INSERT / MODIFY / REMOVE records; the
// ChangeStreamProcessor batches up to 100 records or 5 s (timed by the injected clock), coalesces
// repeated changes to one item, and, as in the seed, sends each batch as one METRICS_UPDATE to
// every connection (ChangeStreamSettings::everyone(); dashboards never subscribe). With
// --subscriptions it publishes per topic instead: `entity:<type>` (the wall display) and
// `entity:<type>:<id>` (the seed's "selective subscriptions" future work: the on-call laptop
// follows only stream-7). The events feed (seed 004) sends `{type, data, timestamp}` messages to
// everyone: `event_created`, `event_deleted`, and the summary `metrics_update` after each.
// The change stream's statistics are printed with the Gateway's metrics, as /metrics would.
//
//   dashboard_example [--subscriptions]           prints what each dashboard receives
//   dashboard_example [--subscriptions] --check   also verifies it and exits 1 on any difference
#include <wsgate/stream/change_stream.hpp>
#include <wsgate/wsgate.hpp>

#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
    bool check = false;
    bool subscriptions = false;  // the seed sends to everyone; this shows per-entity topics instead
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--check") == 0) check = true;
        else if (std::strcmp(argv[i], "--subscriptions") == 0) subscriptions = true;
        else {
            std::cerr << "usage: dashboard_example [--subscriptions] [--check]\n";
            return 2;
        }
    }
    auto clock = std::make_shared<wsgate::ManualClock>(wsgate::from_unix_ms(1'704'110'400'000));
    auto store = std::make_shared<wsgate::InMemoryConnectionStore>();
    auto transport = std::make_shared<wsgate::InMemoryTransport>();
    wsgate::GatewaySettings settings;
    settings.ttl = 24h;  // the seed's connection records lived a day
    // Dashboards only listen. On a real server the Beast server's keep-alive pings (every 30 s by
    // default) touch the connection, so a 10 min inactivity timeout never ends one that still
    // answers them.
    settings.inactivity_timeout = 10min;
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
    if (subscriptions) {
        gateway.on_message(wall, R"({"type":"subscribe","topic":"entity:stream"})");
        gateway.on_message(focused, R"({"type":"subscribe","topic":"entity:stream:stream-7"})");
        transport->drain(wall);  // the acks
        transport->drain(focused);
    }

    // 100 records / 5 s, coalescing; to everyone (the seed) or to both kinds of topic.
    wsgate::ChangeStreamSettings cs = subscriptions ? wsgate::ChangeStreamSettings{} : wsgate::ChangeStreamSettings::everyone();
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

    // Seed 004's events feed: each change to the events table is announced, then the summary.
    std::map<std::string, std::string> events;  // id → status
    auto summary = [&] {
        nlohmann::json m{{"total_events", events.size()}, {"pending_events", 0}, {"delivered_events", 0},
                         {"failed_events", 0}};
        for (auto& [id, status] : events) m[status + "_events"] = m[status + "_events"].get<int>() + 1;
        gateway.publish(wsgate::Envelope{"metrics_update"}.data(m), wsgate::Audience::everyone());
    };
    auto create_event = [&](const std::string& id, const std::string& status) {
        events[id] = status;
        gateway.publish(wsgate::Envelope{"event_created"}.data({{"id", id}, {"status", status},
                                                                {"updated_at", wsgate::format_iso8601(clock->now())}}),
                        wsgate::Audience::everyone());
        summary();
    };
    auto delete_event = [&](const std::string& id) {
        events.erase(id);
        gateway.publish(wsgate::Envelope{"event_deleted"}.data({{"id", id}}), wsgate::Audience::everyone());
        summary();
    };
    create_event("evt_1", "delivered");
    create_event("evt_2", "failed");
    delete_event("evt_2");

    std::vector<nlohmann::json> wall_frames, focused_frames;
    for (auto& f : transport->drain(wall)) wall_frames.push_back(nlohmann::json::parse(f));
    for (auto& f : transport->drain(focused)) focused_frames.push_back(nlohmann::json::parse(f));
    for (auto& j : wall_frames) std::cout << "wall     <- " << j.dump() << '\n';
    for (auto& j : focused_frames) std::cout << "on-call  <- " << j.dump() << '\n';
    auto rec = store->get(wall);
    std::cout << "wall display connected from " << rec->source_ip << " (" << rec->user_agent << ")\n";
    const auto metrics_text = gateway.metrics().prometheus_text() + stream.prometheus_text();  // GET /metrics
    std::cout << '\n' << metrics_text;

    if (!check) return 0;
    // METRICS_UPDATE frames first (two batches), then the events feed: created, summary, created,
    // summary, deleted, summary.
    auto metrics_updates = [](const std::vector<nlohmann::json>& frames) {
        std::vector<nlohmann::json> out;
        for (auto& j : frames)
            if (j["type"] == "METRICS_UPDATE") out.push_back(j);
        return out;
    };
    auto feed = [](const std::vector<nlohmann::json>& frames) {
        std::vector<std::string> out;
        for (auto& j : frames)
            if (j["type"] != "METRICS_UPDATE" && j.contains("data") && j.contains("timestamp"))
                out.push_back(j["type"].get<std::string>() + ":" +
                              (j["type"] == "metrics_update" ? j["data"].dump() : j["data"]["id"].get<std::string>()));
        return out;
    };
    const std::vector<std::string> expected_feed = {
        "event_created:evt_1",
        R"(metrics_update:{"delivered_events":1,"failed_events":0,"pending_events":0,"total_events":1})",
        "event_created:evt_2",
        R"(metrics_update:{"delivered_events":1,"failed_events":1,"pending_events":0,"total_events":2})",
        "event_deleted:evt_2",
        R"(metrics_update:{"delivered_events":1,"failed_events":0,"pending_events":0,"total_events":1})"};
    const auto wall_batches = metrics_updates(wall_frames);
    const auto focused_batches = metrics_updates(focused_frames);
    bool ok = wall_batches.size() == 2 && focused_batches.size() == (subscriptions ? 1u : 2u) &&
              feed(wall_frames) == expected_feed && feed(focused_frames) == expected_feed &&
              wall_frames.size() == 2 + expected_feed.size() && rec->source_ip == "198.51.100.7" &&
              rec->user_agent == "Mozilla/5.0 (ops wall display)" && rec->expires_at - rec->connected_at == 24h;
    if (ok) {
        const auto& first = wall_batches[0];
        ok = first["updates"].size() == 2 && wall_batches[1]["updates"].size() == 1 &&
             wall_batches[1]["updates"][0]["eventType"] == "REMOVE" &&
             first.contains("topic") == subscriptions;  // to everyone: no topic, as the seed's message
        for (const auto& u : first["updates"])
            if (u["data"]["entity_id"] == "stream-7") ok = ok && u["eventType"] == "INSERT" && u["data"]["throughput"] == 75;
        if (subscriptions) {
            const auto& mine = focused_batches[0];
            ok = ok && mine["updates"].size() == 1 && mine["updates"][0]["data"]["entity_id"] == "stream-7";
        } else {
            ok = ok && focused_batches[0] == wall_batches[0] && focused_batches[1] == wall_batches[1];
        }
    }
    // The change stream's statistics appear with the other metrics: 5 records in, 2 coalesced,
    // 3 updates in 2 batches (one envelope each to everyone; per topic: 2 + 1 and 1 + 1).
    for (const std::string& line : std::vector<std::string>{
             "wsgate_change_stream_records_in_total 5\n", "wsgate_change_stream_records_coalesced_total 2\n",
          "wsgate_change_stream_updates_out_total 3\n", "wsgate_change_stream_batches_total 2\n",
          std::string{"wsgate_change_stream_envelopes_total "} + (subscriptions ? "5" : "2") + "\n",
          "wsgate_change_stream_sink_failures_total 0\n", "wsgate_change_stream_pending_updates 0\n",
          "# TYPE wsgate_change_stream_records_in_total counter\n", "wsgate_connects_total 2\n"})
        if (metrics_text.find(line) == std::string::npos) {
            std::cout << "missing metric: " << line;
            ok = false;
        }
    std::cout << (ok ? "CHECK OK\n" : "CHECK FAILED\n");
    return ok ? 0 : 1;
}

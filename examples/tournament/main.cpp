// Seed 000, the tournament bot: workflow steps broadcast events to every connected client.
//
// Three clients connect to an in-process Gateway (in-memory store and transport). A workflow
// runs its four steps, each broadcasting to everyone; one client vanishes without a close
// half-way, and the broadcast that finds it gone removes it (the 410 Gone cleanup) while the
// others keep receiving. Clients send `ping` (answered with `pong`) and anything else (answered
// with an ack), as the seed's $default route did.
//
//   tournament_example           prints what each client receives
//   tournament_example --check   also verifies it and exits 1 on any difference
#include <wsgate/wsgate.hpp>

#include <cstring>
#include <iostream>
#include <map>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
    const bool check = argc > 1 && std::strcmp(argv[1], "--check") == 0;

    auto store = std::make_shared<wsgate::InMemoryConnectionStore>();
    auto transport = std::make_shared<wsgate::InMemoryTransport>();
    wsgate::GatewaySettings settings;
    settings.ttl = 1h;  // the seed's connection table TTL
    settings.router.unknown_route = wsgate::UnknownRoutePolicy::ack;
    wsgate::Gateway gateway{settings, store, transport, std::make_shared<wsgate::AnonymousAuthorizer>()};

    // $connect: three browser tabs.
    std::map<std::string, wsgate::ConnectionId> clients;
    for (const char* name : {"alice", "bob", "carol"}) {
        wsgate::ConnectRequest req;
        req.connection_id = wsgate::make_connection_id();
        req.source_ip = "127.0.0.1";
        req.user_agent = std::string{"example/"} + name;
        transport->open(req.connection_id);
        auto result = gateway.on_connect(req);
        clients[name] = result.id;
    }

    // $default: ping → pong, anything else → ack.
    gateway.on_message(clients["alice"], R"({"type":"ping"})");
    gateway.on_message(clients["bob"], R"({"type":"hello"})");

    // The workflow, one broadcast per step (payloads as in the seed).
    const std::string tid = "tournament-123";
    auto step = [&](const std::string& type, nlohmann::json data) {
        auto report = gateway.publish(wsgate::Envelope{type}.field("tournamentId", tid).data(std::move(data)),
                                      wsgate::Audience::everyone());
        std::cout << "broadcast " << type << ": targets=" << report.targets << " delivered=" << report.delivered
                  << " gone_removed=" << report.gone_removed << '\n';
        return report;
    };
    step("workflow.started", {{"tournamentId", tid}, {"executionArn", "arn:aws:states:local:example"}});
    step("tournament.registered", {{"tournamentId", tid}, {"startTime", "2024-01-01T18:00:00.000Z"}});
    transport->vanish(clients["carol"]);  // carol's laptop lid closes: no close frame
    auto third = step("players.assigned", {{"tournamentId", tid}, {"teamId", "team-" + tid}, {"assignedCount", 5}});
    auto fourth = step("teams.locked", {{"tournamentId", tid}, {"teamId", "team-" + tid}, {"status", "locked"}});

    std::map<std::string, std::vector<std::string>> received;
    for (const auto& [name, id] : clients) {
        std::cout << "\n" << name << " received:\n";
        for (const auto& frame : transport->drain(id)) {
            auto j = nlohmann::json::parse(frame);
            received[name].push_back(j["type"].get<std::string>());
            std::cout << "  " << frame << '\n';
        }
    }
    std::cout << "\nconnections left: " << store->count() << "\n\n" << gateway.metrics().prometheus_text();

    if (!check) return 0;
    const std::vector<std::string> all = {"workflow.started", "tournament.registered", "players.assigned",
                                          "teams.locked"};
    std::vector<std::string> alice = {"pong"}, bob = {"ack"};
    alice.insert(alice.end(), all.begin(), all.end());
    bob.insert(bob.end(), all.begin(), all.end());
    bool ok = received["alice"] == alice && received["bob"] == bob &&
              received["carol"] == std::vector<std::string>{"workflow.started", "tournament.registered"} &&
              third.gone_removed == 1 && third.delivered == 2 && fourth.targets == 2 && store->count() == 2 &&
              gateway.metrics().gone_cleanups == 1;
    std::cout << (ok ? "CHECK OK\n" : "CHECK FAILED\n");
    return ok ? 0 : 1;
}

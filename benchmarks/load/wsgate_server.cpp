// The load benchmark's wsgate server: wsgate::beast::Server + Gateway + in-memory store, every
// client the one benchmark user, no rate limit. Subscribers send {"type":"subscribe","topic":"bench"}; the publisher
// sends {"type":"publish","topic":"bench","data":...} and the Gateway fans it out.
//
//   bench_wsgate_server --port 0 --port-file PATH [--threads 1] [--queue 1024] [--coalesce 0|1]
#include <wsgate/beast/server.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/memory_store.hpp>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

namespace {

// Admits every client as the benchmark user holding "publish" (no token check: loopback only).
class BenchAuthorizer final : public wsgate::Authorizer {
public:
    wsgate::AuthDecision authorize(const wsgate::ConnectRequest&) override {
        wsgate::Principal p;
        p.kind = wsgate::PrincipalKind::user;
        p.user_id = "bench";
        p.permissions = {"publish"};
        return wsgate::AuthDecision::allow(std::move(p));
    }
};

}  // namespace

int main(int argc, char** argv) {
    wsgate::beast::ServerSettings ss;
    ss.port = 0;
    std::string port_file;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--port") ss.port = static_cast<unsigned short>(std::stoi(argv[i + 1]));
        else if (a == "--port-file") port_file = argv[i + 1];
        else if (a == "--threads") ss.threads = std::stoul(argv[i + 1]);
        else if (a == "--queue") ss.queue_capacity = std::stoul(argv[i + 1]);
        else if (a == "--coalesce") ss.coalesce_writes = std::string{argv[i + 1]} != "0";
    }
    // The load generator opens every connection from one address.
    ss.max_connections = 0;
    ss.max_connections_per_address = 0;
    wsgate::GatewaySettings gs;
    gs.rate_per_second = 0;
    // Every client is the one benchmark user, which may read and publish `bench`.
    gs.router.topic_rules = {{"bench", "", "publish"}};
    gs.max_connections_per_user = 0;
    gs.inactivity_timeout = std::chrono::seconds(0);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

    auto server = std::make_shared<wsgate::beast::Server>(ss);
    auto gw = std::make_shared<wsgate::Gateway>(gs, std::make_shared<wsgate::InMemoryConnectionStore>(), server,
                                                std::make_shared<BenchAuthorizer>());
    server->attach(gw);
    server->start();
    if (!port_file.empty()) {
        std::ofstream(port_file + ".tmp") << server->port() << "\n";
        std::rename((port_file + ".tmp").c_str(), port_file.c_str());
    }
    int sig = 0;
    sigwait(&sigs, &sig);
    server->stop();
    std::cerr << "deliveries " << gw->metrics().deliveries.load() << ", dropped " << server->dropped_frames()
              << ", coalesced " << server->coalesced_frames() << "\n";
    return 0;
}

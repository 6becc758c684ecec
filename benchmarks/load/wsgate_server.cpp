// The load benchmark's wsgate server: wsgate::beast::Server + Gateway + in-memory store, every
// client the one benchmark user, no rate limit. Subscribers send {"type":"subscribe","topic":"bench"}; the publisher
// sends {"type":"publish","topic":"bench","data":...} and the Gateway fans it out.
//
//   bench_wsgate_server --port 0 --port-file PATH [--threads 1] [--queue 1024] [--coalesce 0|1]
//                       [--flush-delay-us N] [--thread-cpus 0,1,...] [--alloc-file PATH]
//
// On SIGUSR1 the server writes its allocation count to the --alloc-file (alloc_counter.hpp);
// SIGINT and SIGTERM stop it.
#include "alloc_counter.hpp"

#include <wsgate/beast/server.hpp>
#include <wsgate/gateway.hpp>
#include <wsgate/memory_store.hpp>

#include <chrono>
#include <algorithm>
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
    std::string alloc_file;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--port") ss.port = static_cast<unsigned short>(std::stoi(argv[i + 1]));
        else if (a == "--port-file") port_file = argv[i + 1];
        else if (a == "--threads") ss.threads = std::stoul(argv[i + 1]);
        else if (a == "--queue") ss.queue_capacity = std::stoul(argv[i + 1]);
        else if (a == "--coalesce") ss.coalesce_writes = std::string{argv[i + 1]} != "0";
        else if (a == "--flush-delay-us") ss.flush_delay = std::chrono::microseconds(std::stol(argv[i + 1]));
        else if (a == "--thread-cpus") {
            // io thread i on CPU list[i % size] (ServerSettings::thread_cpus)
            std::string list = argv[i + 1];
            for (std::size_t p = 0; p < list.size();) {
                const auto comma = std::min(list.find(',', p), list.size());
                ss.thread_cpus.push_back(std::stoi(list.substr(p, comma - p)));
                p = comma + 1;
            }
        }
        else if (a == "--alloc-file") alloc_file = argv[i + 1];
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
    sigaddset(&sigs, SIGUSR1);
    // Blocked before the io threads start, so they inherit the mask and only sigwait sees these.
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
    while (sigwait(&sigs, &sig) == 0 && sig == SIGUSR1) {
        if (!alloc_file.empty() && !wsgate::bench::write_allocations(alloc_file.c_str()))
            std::cerr << "cannot write " << alloc_file << "\n";
    }
    server->stop();
    std::cerr << "deliveries " << gw->metrics().deliveries.load() << ", dropped " << server->dropped_frames()
              << ", coalesced " << server->coalesced_frames() << "\n";
    return 0;
}

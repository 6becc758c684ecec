// The API Gateway fan-out: one broadcast to 1,000 connections through the @connections transport,
// sequential (one signed POST after another) vs parallel (libcurl multi, bounded concurrency,
// connections reused), against the local SigV4-verifying endpoint the tests use.
//
// Args: {round-trip delay the endpoint adds in ms, concurrency (0 = sequential send() loop)}.
// The endpoint is a Python process on 127.0.0.1; its delay stands in for the network round trip
// to API Gateway, which dominates a real fan-out.
#include "../tests/unit/aws/fake_server.hpp"

#include <wsgate/aws/connections_transport.hpp>

#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <mutex>

namespace {

constexpr const char* secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr int fanout = 1000;

std::vector<wsgate::ConnectionId> connection_ids() {
    std::vector<wsgate::ConnectionId> ids;
    for (int i = 0; i < fanout; ++i) ids.push_back("Conn" + std::to_string(i) + "xYz=");
    return ids;
}

// One endpoint per delay, started on first use and kept for the whole run.
wsgate::test::FakeConnectionsServer& server_with_delay(int delay_ms) {
    static std::mutex mu;
    static std::map<int, std::unique_ptr<wsgate::test::FakeConnectionsServer>> servers;
    std::lock_guard lock{mu};
    auto& s = servers[delay_ms];
    if (!s) {
        s = std::make_unique<wsgate::test::FakeConnectionsServer>(secret, std::string{}, delay_ms);
        s->add_connections(connection_ids());
    }
    return *s;
}

void BM_AwsFanout(benchmark::State& state) {
    const int delay_ms = static_cast<int>(state.range(0));
    const auto concurrency = static_cast<std::size_t>(state.range(1));
    auto& server = server_with_delay(delay_ms);
    wsgate::aws::ConnectionsSettings s;
    s.endpoint = server.endpoint();
    s.region = "us-east-1";
    s.credentials = wsgate::aws::Credentials{"AKIDEXAMPLE", secret, {}};
    s.curl.max_concurrency = concurrency == 0 ? 1 : concurrency;
    s.curl.max_host_connections = s.curl.max_concurrency;
    wsgate::aws::ConnectionsTransport transport{s};
    const auto ids = connection_ids();
    const auto payload = wsgate::make_payload(R"({"type":"teams.locked","data":{"teams":8}})");
    std::vector<wsgate::SendStatus> out(ids.size());
    std::size_t delivered = 0;
    for (auto _ : state) {
        if (concurrency == 0) {
            for (std::size_t i = 0; i < ids.size(); ++i) out[i] = transport.send(ids[i], payload);
        } else {
            transport.send_many(ids, payload, out);
        }
        for (auto st : out) delivered += st == wsgate::SendStatus::ok;
    }
    if (delivered != static_cast<std::size_t>(fanout) * state.iterations()) state.SkipWithError("not all delivered");
    state.SetItemsProcessed(static_cast<std::int64_t>(fanout) * state.iterations());
    state.counters["connections"] = fanout;
}

}  // namespace

// Sequential vs parallel, with no added delay (loopback + Python endpoint) and with 2 ms / 10 ms round trips.
BENCHMARK(BM_AwsFanout)
    ->ArgNames({"delay_ms", "concurrency"})
    ->Args({0, 0})->Args({0, 16})->Args({0, 64})
    ->Args({2, 0})->Args({2, 16})->Args({2, 64})
    ->Args({10, 0})->Args({10, 64})->Args({10, 128})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);

BENCHMARK_MAIN();

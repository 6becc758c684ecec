// Core costs: fan-out per delivery, audience-proportional publish, connect+disconnect, ping dispatch.
#include <wsgate/wsgate.hpp>

#include <benchmark/benchmark.h>

#include <atomic>

using namespace wsgate;

namespace {

/// Accepts every frame and forgets it: isolates the Gateway's own cost from queueing.
class DiscardTransport final : public Transport {
public:
    SendStatus send(const ConnectionId&, const Payload& p) override {
        bytes_ += p->size();
        return SendStatus::ok;
    }
    void send_many(std::span<const ConnectionId> ids, const Payload& p, std::span<SendStatus> out) override {
        bytes_ += ids.size() * p->size();
        std::fill(out.begin(), out.end(), SendStatus::ok);
    }
    void close(const ConnectionId&, CloseCode, std::string_view) override {}
    std::size_t bytes_ = 0;
};

struct World {
    std::shared_ptr<InMemoryConnectionStore> store = std::make_shared<InMemoryConnectionStore>();
    std::shared_ptr<Transport> transport;
    std::unique_ptr<Gateway> gw;
    std::vector<ConnectionId> ids;

    World(std::shared_ptr<Transport> t, std::size_t connections, std::size_t subscribers) : transport(std::move(t)) {
        GatewaySettings s;
        s.max_connections_per_user = 0;
        gw = std::make_unique<Gateway>(s, store, transport, std::make_shared<AnonymousAuthorizer>());
        auto* mem = dynamic_cast<InMemoryTransport*>(transport.get());
        for (std::size_t i = 0; i < connections; ++i) {
            ConnectRequest req;
            req.connection_id = make_connection_id();
            if (mem) mem->open(req.connection_id);
            ids.push_back(gw->on_connect(req).id);
            if (i < subscribers) store->subscribe(ids.back(), "room");
        }
    }
};

const Envelope& event() {
    static const Envelope e = Envelope{"leaderboard_update"}.topic("room").data({{"gameId", "g1"}, {"score", 42}});
    return e;
}

// Publish to a topic of N subscribers; reports time per delivery (items = deliveries).
void BM_publish_topic_discard(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    World w{std::make_shared<DiscardTransport>(), n, n};
    for (auto _ : state) {
        auto rep = w.gw->publish(event(), Audience::topic("room"));
        benchmark::DoNotOptimize(rep);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
    state.counters["ns_per_delivery"] = benchmark::Counter(
        static_cast<double>(state.iterations() * n), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_publish_topic_discard)->Arg(1000)->Arg(10000)->Arg(100000)->Unit(benchmark::kMillisecond);

// The same through InMemoryTransport's bounded queues (drained between publishes, untimed).
void BM_publish_topic_memory(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    auto transport = std::make_shared<InMemoryTransport>(4);
    World w{transport, n, n};
    int since_drain = 0;
    for (auto _ : state) {
        auto rep = w.gw->publish(event(), Audience::topic("room"));
        benchmark::DoNotOptimize(rep);
        if (++since_drain == 4) {
            state.PauseTiming();
            for (auto& id : w.ids) transport->drain(id);
            since_drain = 0;
            state.ResumeTiming();
        }
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
    state.counters["ns_per_delivery"] = benchmark::Counter(
        static_cast<double>(state.iterations() * n), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_publish_topic_memory)->Arg(1000)->Arg(10000)->Arg(100000)->Unit(benchmark::kMillisecond);

// A topic of 10 subscribers among `range(0)` connections: cost must follow the audience.
void BM_publish_10_of(benchmark::State& state) {
    World w{std::make_shared<DiscardTransport>(), static_cast<std::size_t>(state.range(0)), 10};
    for (auto _ : state) {
        auto rep = w.gw->publish(event(), Audience::topic("room"));
        benchmark::DoNotOptimize(rep);
    }
}
BENCHMARK(BM_publish_10_of)->Arg(10)->Arg(100000)->Unit(benchmark::kMicrosecond);

/// The in-memory store whose `resolve` fails while `down`: a store outage as publish sees it.
class ResolveSwitchStore final : public ConnectionStore {
public:
    bool down = false;
    void put(const ConnectionRecord& r) override { s_.put(r); }
    std::optional<ConnectionRecord> get(const ConnectionId& id) override { return s_.get(id); }
    bool remove(const ConnectionId& id) override { return s_.remove(id); }
    bool touch(const ConnectionId& id, TimePoint now, std::optional<TimePoint> e) override { return s_.touch(id, now, e); }
    bool subscribe(const ConnectionId& id, const std::string& t) override { return s_.subscribe(id, t); }
    SubscribeResult subscribe_capped(const ConnectionId& id, const std::string& t, std::size_t max) override {
        return s_.subscribe_capped(id, t, max);
    }
    bool unsubscribe(const ConnectionId& id, const std::string& t) override { return s_.unsubscribe(id, t); }
    std::vector<std::string> topics_of(const ConnectionId& id) override { return s_.topics_of(id); }
    std::vector<ConnectionId> subscribers(const std::string& t) override { return s_.subscribers(t); }
    std::vector<ConnectionId> connections_of_user(const std::string& u) override { return s_.connections_of_user(u); }
    ScanPage scan(const std::string& c, std::size_t n) override { return s_.scan(c, n); }
    std::vector<ConnectionRecord> expire(TimePoint now) override { return s_.expire(now); }
    std::size_t count() override { return s_.count(); }
    ResolvedAudience resolve(const Audience& a) override {
        if (down) throw StoreError(store_errc::unavailable, "down");
        return s_.resolve(a);
    }

private:
    InMemoryConnectionStore s_;
};

// Publish to `range(1)` subscribers among `range(0)` local connections, with the store up
// (range(2) == 0) or its resolve failing (1: delivery from the node's own index). The
// fallback reads the topic's local members from the index, so its cost follows range(1).
void BM_publish_store_down(benchmark::State& state) {
    const auto conns = static_cast<std::size_t>(state.range(0));
    const auto subs = static_cast<std::size_t>(state.range(1));
    auto store = std::make_shared<ResolveSwitchStore>();
    GatewaySettings gs;
    gs.max_connections_per_user = 0;
    gs.router.topic_rules.push_back(TopicRule{"room", "", "", /*anonymous_read=*/true});
    Gateway gw{gs, store, std::make_shared<DiscardTransport>(), std::make_shared<AnonymousAuthorizer>()};
    for (std::size_t i = 0; i < conns; ++i) {
        ConnectRequest req;
        req.connection_id = make_connection_id();
        auto r = gw.on_connect(req);
        if (i < subs) {
            ConnectionRecord rec;
            rec.id = r.id;
            rec.principal = r.principal;
            if (gw.subscribe(rec, "room").error) state.SkipWithError("subscribe refused");
        }
    }
    store->down = state.range(2) != 0;
    for (auto _ : state) {
        auto rep = gw.publish(event(), Audience::topic("room"));
        if (rep.delivered != subs) state.SkipWithError("not every subscriber reached");
        benchmark::DoNotOptimize(rep);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * subs));
}
BENCHMARK(BM_publish_store_down)
    ->ArgNames({"conns", "subs", "down"})
    ->Args({10'000, 10'000, 0})
    ->Args({10'000, 10'000, 1})
    ->Args({10'000, 10, 0})
    ->Args({10'000, 10, 1})
    ->Unit(benchmark::kMicrosecond);

void BM_connect_disconnect(benchmark::State& state) {
    World w{std::make_shared<DiscardTransport>(), 10000, 0};  // a realistic table size around it
    for (auto _ : state) {
        auto r = w.gw->on_connect(ConnectRequest{});
        w.gw->on_disconnect(r.id);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_connect_disconnect);

void BM_router_ping(benchmark::State& state) {
    GatewaySettings s;
    s.rate_per_second = 0;
    auto transport = std::make_shared<DiscardTransport>();
    auto store = std::make_shared<InMemoryConnectionStore>();
    Gateway gw{s, store, transport, std::make_shared<AnonymousAuthorizer>()};
    auto id = gw.on_connect(ConnectRequest{}).id;
    for (auto _ : state) {
        auto ec = gw.on_message(id, R"({"type":"ping"})");
        benchmark::DoNotOptimize(ec);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_router_ping);

// Baseline for the ping: parse + serialize a pong with nlohmann alone.
void BM_baseline_parse_and_pong(benchmark::State& state) {
    for (auto _ : state) {
        auto j = nlohmann::json::parse(R"({"type":"ping"})");
        auto out = nlohmann::json{{"type", "pong"}, {"timestamp", "2024-01-01T00:00:00.000Z"}, {"id", "x"}}.dump();
        benchmark::DoNotOptimize(j);
        benchmark::DoNotOptimize(out);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_baseline_parse_and_pong);

}  // namespace

BENCHMARK_MAIN();

// ConnectionStore throughput per backend (in-memory is the in-run baseline), Redis pipelined and
// not, subscribers(topic) for large topics, Gateway::publish to a large topic over the in-memory
// store vs over Redis (delivered from the node's own index), and cross-node publish latency
// through Redis.
// Redis benchmarks start their own redis-server on a random loopback port (tests/support).
//
// Run: build/benchmarks/bench_stores --benchmark_min_time=0.5
// Every benchmark uses wall time: for SQLite and Redis the time goes to I/O, not to this CPU.

#include "redis_server.hpp"
#include "temp_dir.hpp"

#include <wsgate/gateway.hpp>
#include <wsgate/memory_transport.hpp>
#include <wsgate/memory_store.hpp>
#include <wsgate/redis/redis_bus.hpp>
#include <wsgate/redis/redis_store.hpp>
#include <wsgate/sqlite/sqlite_store.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>

using namespace wsgate;

namespace {

const TimePoint t0 = from_unix_ms(1'700'000'000'000);

ConnectionRecord rec(std::string id, int i) {
    ConnectionRecord r;
    r.id = std::move(id);
    r.principal.kind = PrincipalKind::user;
    r.principal.user_id = "user-" + std::to_string(i % 1000);
    r.principal.device_id = "device-" + std::to_string(i);
    r.principal.permissions = {"chat", "read_leaderboard"};
    r.connected_at = t0;
    r.last_seen = t0;
    r.expires_at = t0 + std::chrono::hours{1};
    r.source_ip = "203.0.113.9";
    r.user_agent = "bench";
    r.node_id = "node-a";
    return r;
}

test::RedisServer& redis() {
    static test::RedisServer server;
    return server;
}

test::TempDir& tmp() {
    static test::TempDir dir{"wsgate-bench"};
    return dir;
}

enum class Kind { memory, sqlite, redis };

std::shared_ptr<ConnectionStore> make(Kind k) {
    static int n = 0;
    ++n;
    switch (k) {
        case Kind::memory: return std::make_shared<InMemoryConnectionStore>();
        case Kind::sqlite: return std::make_shared<SqliteConnectionStore>(tmp().file("b" + std::to_string(n) + ".db"));
        case Kind::redis: {
            RedisStoreSettings s;
            s.endpoint.host = redis().host();
            s.endpoint.port = redis().port();
            s.key_prefix = "b" + std::to_string(n) + ":";
            return std::make_shared<RedisConnectionStore>(s);
        }
    }
    return nullptr;
}

template <Kind K>
void BM_Put(benchmark::State& state) {
    auto s = make(K);
    std::vector<ConnectionRecord> rs;
    for (int i = 0; i < 10'000; ++i) rs.push_back(rec("c" + std::to_string(i), i));
    std::size_t i = 0;
    for (auto _ : state) s->put(rs[i++ % rs.size()]);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

template <Kind K>
void BM_PutRemove(benchmark::State& state) {
    auto s = make(K);
    std::vector<ConnectionRecord> rs;
    for (int i = 0; i < 1000; ++i) rs.push_back(rec("c" + std::to_string(i), i));
    std::size_t i = 0;
    for (auto _ : state) {
        const auto& r = rs[i++ % rs.size()];
        s->put(r);
        benchmark::DoNotOptimize(s->remove(r.id));
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// Redis, pipelined: put_many()/remove_many() of state.range(0) records per round trip.
void BM_RedisPutRemovePipelined(benchmark::State& state) {
    auto base = make(Kind::redis);
    auto* s = static_cast<RedisConnectionStore*>(base.get());
    const auto batch = static_cast<int>(state.range(0));
    std::vector<ConnectionRecord> rs;
    std::vector<ConnectionId> ids;
    for (int i = 0; i < batch; ++i) {
        rs.push_back(rec("p" + std::to_string(i), i));
        ids.push_back(rs.back().id);
    }
    for (auto _ : state) {
        s->put_many(rs);
        benchmark::DoNotOptimize(s->remove_many(ids));
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * batch);
}

template <Kind K>
void BM_Subscribers(benchmark::State& state) {
    auto s = make(K);
    const auto n = static_cast<int>(state.range(0));
    std::vector<ConnectionRecord> rs;
    for (int i = 0; i < n; ++i) rs.push_back(rec("s" + std::to_string(i), i));
    if (auto* r = dynamic_cast<RedisConnectionStore*>(s.get())) r->put_many(rs);
    else
        for (const auto& x : rs) s->put(x);
    for (const auto& x : rs) s->subscribe(x.id, "big");
    for (auto _ : state) {
        auto subs = s->subscribers("big");
        if (subs.size() != static_cast<std::size_t>(n)) state.SkipWithError("wrong subscriber count");
        benchmark::DoNotOptimize(subs);
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * n);
    state.counters["members"] = n;
}

template <Kind K>
void BM_ResolveTopicWithPermission(benchmark::State& state) {
    auto s = make(K);
    const auto n = static_cast<int>(state.range(0));
    std::vector<ConnectionRecord> rs;
    for (int i = 0; i < n; ++i) rs.push_back(rec("r" + std::to_string(i), i));
    if (auto* r = dynamic_cast<RedisConnectionStore*>(s.get())) r->put_many(rs);
    else
        for (const auto& x : rs) s->put(x);
    for (const auto& x : rs) s->subscribe(x.id, "leaderboard:1");
    const auto a = Audience::topic("leaderboard:1").requiring("read_leaderboard").except_device("device-7");
    for (auto _ : state) benchmark::DoNotOptimize(s->resolve(a));
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * n);
}

/// Accepts every frame and forgets it: the publish benchmarks time the Gateway, not a queue.
class DiscardTransport final : public Transport {
public:
    SendStatus send(const ConnectionId&, const Payload&) override { return SendStatus::ok; }
    void send_many(std::span<const ConnectionId>, const Payload&, std::span<SendStatus> out) override {
        std::fill(out.begin(), out.end(), SendStatus::ok);
    }
    void close(const ConnectionId&, CloseCode, std::string_view) override {}
};

// Gateway::publish to a topic of state.range(0) local subscribers, each holding the topic's read
// permission (checked per recipient). Over the in-memory store the store resolves the audience;
// over Redis (shared) the node resolves it from its own index and asks Redis nothing. `StoreResolves`
// makes Redis resolve every publish instead (local_delivery_only false, as behind API Gateway):
// the per-publish store round trip a node paid before it kept its own index.
template <Kind K, bool StoreResolves = false>
void BM_GatewayPublishTopic(benchmark::State& state) {
    const auto n = static_cast<int>(state.range(0));
    GatewaySettings gs;
    gs.node_id = "node-a";
    gs.rate_per_second = 0;
    gs.max_connections_per_user = 0;
    gs.router.topic_rules = {{"leaderboard:*", "read_leaderboard", ""}};
    if (StoreResolves) gs.local_delivery_only = false;
    auto store = make(K);
    Gateway gw{gs, store, std::make_shared<DiscardTransport>(), std::make_shared<AnonymousAuthorizer>()};
    for (int i = 0; i < n; ++i) {
        auto r = rec("g" + std::to_string(i), i);
        ConnectRequest rq;
        rq.connection_id = r.id;
        if (!gw.on_connect(rq, r.principal).accepted || gw.subscribe(r, "leaderboard:1").error) {
            state.SkipWithError("setup failed");
            return;
        }
    }
    const auto e = Envelope{"leaderboard_update"}.data({{"gameId", "g1"}, {"score", 42}});
    const auto a = Audience::topic("leaderboard:1");
    for (auto _ : state) {
        auto rep = gw.publish(e, a);
        if (rep.delivered != static_cast<std::size_t>(n)) {
            state.SkipWithError("a publish missed subscribers");
            break;
        }
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * n);
    state.counters["ns_per_delivery"] = benchmark::Counter(
        static_cast<double>(state.iterations()) * n, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// A Bus that notes when the wrapped bus handed a message to the Gateway and it returned, i.e. when
// node A has queued the frame for its local client.
class TimedBus final : public Bus {
public:
    explicit TimedBus(std::shared_ptr<RedisBus> inner) : inner_(std::move(inner)) {}
    bool publish(const BusMessage& m) override { return inner_->publish(m); }
    void set_handler(Handler h) override {
        inner_->set_handler([this, h = std::move(h)](const BusMessage& m) {
            if (h) h(m);
            std::lock_guard lk(mu_);
            ++arrived_;
            cv_.notify_all();
        });
    }
    bool wait_for(std::uint64_t n) {
        std::unique_lock lk(mu_);
        return cv_.wait_for(lk, std::chrono::seconds{5}, [&] { return arrived_ >= n; });
    }
    RedisBus& inner() { return *inner_; }

private:
    std::shared_ptr<RedisBus> inner_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::uint64_t arrived_ = 0;
};

// Node B publishes to a topic; node A's Gateway (bus thread) delivers to its local subscriber.
// One publish in flight at a time: this measures latency, not throughput.
void BM_CrossNodePublishLatency(benchmark::State& state) {
    RedisStoreSettings st;
    st.endpoint.host = redis().host();
    st.endpoint.port = redis().port();
    st.key_prefix = "lat:";
    RedisBusSettings bs;
    bs.endpoint = st.endpoint;
    bs.channel = "bench:bus";
    auto store = std::make_shared<RedisConnectionStore>(st);
    auto bus_a = std::make_shared<TimedBus>(std::make_shared<RedisBus>(bs));
    auto bus_b = std::make_shared<RedisBus>(bs);
    auto ta = std::make_shared<InMemoryTransport>(1 << 20);
    auto tb = std::make_shared<InMemoryTransport>(1 << 20);
    GatewaySettings ga, gb;
    ga.node_id = "node-a";
    gb.node_id = "node-b";
    ga.rate_per_second = gb.rate_per_second = 0;
    ga.router.topic_rules = gb.router.topic_rules = {{"*", "", "", /*anonymous_read=*/true}};
    Gateway a{ga, store, ta, std::make_shared<AnonymousAuthorizer>(), std::make_shared<SystemClock>(), bus_a};
    Gateway b{gb, std::make_shared<RedisConnectionStore>(st), tb, std::make_shared<AnonymousAuthorizer>(),
              std::make_shared<SystemClock>(), bus_b};
    bus_a->inner().wait_subscribed(std::chrono::seconds{5});
    bus_b->wait_subscribed(std::chrono::seconds{5});
    ConnectRequest rq;
    rq.connection_id = "a-client";
    ta->open("a-client");
    Principal p;
    p.kind = PrincipalKind::user;
    p.user_id = "u";
    (void)a.on_connect(rq, p);
    (void)a.on_message("a-client", R"({"type":"subscribe","topic":"ticks"})");
    (void)ta->drain("a-client");

    std::vector<double> us;
    std::uint64_t n = 0;
    for (auto _ : state) {
        const auto start = std::chrono::steady_clock::now();
        b.publish(Envelope{"tick"}.topic("ticks").data(n), Audience::topic("ticks"));
        if (!bus_a->wait_for(++n)) {
            state.SkipWithError("a publish did not arrive");
            break;
        }
        us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
        if (ta->queued("a-client") > 1000) (void)ta->drain("a-client");
    }
    if (!us.empty()) {
        std::sort(us.begin(), us.end());
        state.counters["p50_us"] = us[us.size() / 2];
        state.counters["p99_us"] = us[std::min(us.size() - 1, us.size() * 99 / 100)];
    }
}

}  // namespace

BENCHMARK(BM_Put<Kind::memory>)->Name("put/memory")->UseRealTime();
BENCHMARK(BM_Put<Kind::sqlite>)->Name("put/sqlite")->UseRealTime();
BENCHMARK(BM_Put<Kind::redis>)->Name("put/redis")->UseRealTime();
BENCHMARK(BM_PutRemove<Kind::memory>)->Name("put+remove/memory")->UseRealTime();
BENCHMARK(BM_PutRemove<Kind::sqlite>)->Name("put+remove/sqlite")->UseRealTime();
BENCHMARK(BM_PutRemove<Kind::redis>)->Name("put+remove/redis")->UseRealTime();
BENCHMARK(BM_RedisPutRemovePipelined)->Name("put+remove/redis_pipelined")->Arg(100)->UseRealTime();
BENCHMARK(BM_Subscribers<Kind::memory>)->Name("subscribers/memory")->Arg(1000)->Arg(10'000)->UseRealTime();
BENCHMARK(BM_Subscribers<Kind::sqlite>)->Name("subscribers/sqlite")->Arg(1000)->Arg(10'000)->UseRealTime();
BENCHMARK(BM_Subscribers<Kind::redis>)->Name("subscribers/redis")->Arg(1000)->Arg(10'000)->UseRealTime();
BENCHMARK(BM_ResolveTopicWithPermission<Kind::memory>)->Name("resolve_topic/memory")->Arg(10'000)->UseRealTime();
BENCHMARK(BM_ResolveTopicWithPermission<Kind::sqlite>)->Name("resolve_topic/sqlite")->Arg(10'000)->UseRealTime();
BENCHMARK(BM_ResolveTopicWithPermission<Kind::redis>)->Name("resolve_topic/redis")->Arg(10'000)->UseRealTime();
BENCHMARK(BM_GatewayPublishTopic<Kind::memory>)->Name("gateway_publish_topic/memory")->Arg(1000)->Arg(10'000)
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_GatewayPublishTopic<Kind::redis>)->Name("gateway_publish_topic/redis_local_index")->Arg(1000)->Arg(10'000)
    ->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_GatewayPublishTopic<Kind::redis, true>)->Name("gateway_publish_topic/redis_store_resolve")->Arg(1000)
    ->Arg(10'000)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_CrossNodePublishLatency)->Name("cross_node_publish/redis")->Iterations(2000)->UseRealTime();

BENCHMARK_MAIN();

// The store operations a connection's life costs, per backend in one run: SQLite (file), Redis
// (a redis-server on loopback) and DynamoDB (dynalite on loopback, a local DynamoDB
// implementation). For DynamoDB each row also reports `requests/op`: the HTTP requests one
// operation makes, which is what costs money and latency against AWS (dynalite's own speed says
// little about DynamoDB's). The servers are started by the benchmark (tests/support harness).
//
// Run: build/dev/benchmarks/bench_store_requests --benchmark_min_time=0.2

#include "dynalite_server.hpp"
#include "redis_server.hpp"
#include "temp_dir.hpp"

#include <wsgate/dynamodb/dynamodb_store.hpp>
#include <wsgate/redis/redis_store.hpp>
#include <wsgate/sqlite/sqlite_store.hpp>

#include <benchmark/benchmark.h>

#include <string>

using namespace wsgate;

namespace {

const TimePoint t0 = std::chrono::time_point_cast<TimePoint::duration>(std::chrono::system_clock::now());

ConnectionRecord rec(const std::string& id, int i) {
    ConnectionRecord r;
    r.id = id;
    r.principal.kind = PrincipalKind::user;
    r.principal.user_id = "user-" + std::to_string(i % 1000);
    r.principal.device_id = "device-" + std::to_string(i);
    r.principal.permissions = {"chat", "read_leaderboard"};
    r.connected_at = t0;
    r.last_seen = t0;
    r.expires_at = t0 + std::chrono::hours{1};
    r.node_id = "node-a";
    return r;
}

test::RedisServer& redis() {
    static test::RedisServer server;
    return server;
}

test::DynaliteServer& dynalite() {
    static test::DynaliteServer server;
    return server;
}

test::TempDir& tmp() {
    static test::TempDir dir{"wsgate-bench-requests"};
    return dir;
}

enum class Kind { sqlite, redis, dynamodb };

std::shared_ptr<ConnectionStore> make(Kind k) {
    static int n = 0;
    ++n;
    switch (k) {
        case Kind::sqlite: return std::make_shared<SqliteConnectionStore>(tmp().file("r" + std::to_string(n) + ".db"));
        case Kind::redis: {
            RedisStoreSettings s;
            s.endpoint.host = redis().host();
            s.endpoint.port = redis().port();
            s.key_prefix = "r" + std::to_string(n) + ":";
            return std::make_shared<RedisConnectionStore>(s);
        }
        case Kind::dynamodb: {
            DynamoDbStoreSettings s;
            s.table = "bench" + std::to_string(n);
            s.endpoint = dynalite().endpoint();
            s.region = "us-east-1";
            s.credentials = aws::Credentials{"bench", "bench", ""};
            (void)create_dynamodb_table(s);
            return std::make_shared<DynamoDbConnectionStore>(s);
        }
    }
    return nullptr;
}

// HTTP requests made since the last call (DynamoDB only; 0 for the others).
struct RequestCounter {
    ConnectionStore& store;
    std::uint64_t base = now();
    [[nodiscard]] std::uint64_t now() const {
        if (auto* d = dynamic_cast<DynamoDbConnectionStore*>(&store)) return d->stats().requests;
        return 0;
    }
    void report(benchmark::State& state, std::int64_t ops) const {
        if (!dynamic_cast<DynamoDbConnectionStore*>(&store) || ops == 0) return;
        state.counters["requests/op"] = static_cast<double>(now() - base) / static_cast<double>(ops);
    }
};

// A connect and its end: put + remove.
template <Kind K>
void BM_ConnectEnd(benchmark::State& state) {
    auto s = make(K);
    int i = 0;
    RequestCounter requests{*s};
    for (auto _ : state) {
        const auto r = rec("c" + std::to_string(i), i);
        ++i;
        s->put(r);
        benchmark::DoNotOptimize(s->remove(r.id));
    }
    state.SetItemsProcessed(state.iterations());
    requests.report(state, state.iterations());
}

// A subscribe and its unsubscribe on one live connection.
template <Kind K>
void BM_SubscribeUnsubscribe(benchmark::State& state) {
    auto s = make(K);
    s->put(rec("sub", 1));
    int i = 0;
    RequestCounter requests{*s};
    for (auto _ : state) {
        const auto topic = "room:" + std::to_string(i++ % 64);
        benchmark::DoNotOptimize(s->subscribe_capped("sub", topic, 100));
        benchmark::DoNotOptimize(s->unsubscribe("sub", topic));
    }
    state.SetItemsProcessed(state.iterations());
    requests.report(state, state.iterations());
}

// What a publish asks of the store: the audience of a topic with state.range(0) members,
// filtered by a permission and one excluded device.
template <Kind K>
void BM_ResolveTopic(benchmark::State& state) {
    auto s = make(K);
    const auto n = static_cast<int>(state.range(0));
    for (int i = 0; i < n; ++i) {
        const auto r = rec("m" + std::to_string(i), i);
        s->put(r);
        s->subscribe(r.id, "leaderboard:1");
    }
    const auto a = Audience::topic("leaderboard:1").requiring("read_leaderboard").except_device("device-7");
    RequestCounter requests{*s};
    for (auto _ : state) {
        const auto got = s->resolve(a);
        if (got.ids.size() != static_cast<std::size_t>(n - 1)) state.SkipWithError("wrong audience size");
        benchmark::DoNotOptimize(got);
    }
    state.SetItemsProcessed(state.iterations() * n);
    requests.report(state, state.iterations());
}

}  // namespace

BENCHMARK(BM_ConnectEnd<Kind::sqlite>)->Name("connect+end/sqlite")->UseRealTime();
BENCHMARK(BM_ConnectEnd<Kind::redis>)->Name("connect+end/redis")->UseRealTime();
BENCHMARK(BM_ConnectEnd<Kind::dynamodb>)->Name("connect+end/dynamodb")->UseRealTime();
BENCHMARK(BM_SubscribeUnsubscribe<Kind::sqlite>)->Name("subscribe+unsubscribe/sqlite")->UseRealTime();
BENCHMARK(BM_SubscribeUnsubscribe<Kind::redis>)->Name("subscribe+unsubscribe/redis")->UseRealTime();
BENCHMARK(BM_SubscribeUnsubscribe<Kind::dynamodb>)->Name("subscribe+unsubscribe/dynamodb")->UseRealTime();
BENCHMARK(BM_ResolveTopic<Kind::sqlite>)->Name("resolve_topic/sqlite")->Arg(1000)->UseRealTime();
BENCHMARK(BM_ResolveTopic<Kind::redis>)->Name("resolve_topic/redis")->Arg(1000)->UseRealTime();
BENCHMARK(BM_ResolveTopic<Kind::dynamodb>)->Name("resolve_topic/dynamodb")->Arg(1000)->UseRealTime();

BENCHMARK_MAIN();

// Delivery guarantees per store (docs/benchmarks-delivery.md): what a topic's history costs a
// publish, how long a recovery of 1,000 missed publications takes, and what presence of a
// 10,000-member topic costs — each against a baseline timed in the same iteration.
//
// Run: taskset -c 1 build-rel/benchmarks/bench_delivery --benchmark_min_time=0.5
// (presence on SQLite and Redis runs a fixed 15 iterations: one takes up to half a second).
//
// Every benchmark times its baseline and its subject back to back in each iteration (manual
// time, steady_clock), so a load spike on a shared machine hits both; the counters are medians
// of those per-iteration samples and their ratio. Google Benchmark's own time column is the
// subject's mean. SQLite and Redis are measured only when built (WSGATE_BENCH_STORES) and when
// the store keeps topic streams; Redis runs against its own redis-server (tests/support).

#include <wsgate/gateway.hpp>
#include <wsgate/memory_store.hpp>

#if WSGATE_BENCH_STORES
#include "redis_server.hpp"
#include "temp_dir.hpp"

#include <wsgate/redis/redis_store.hpp>
#include <wsgate/sqlite/sqlite_store.hpp>

#include <sched.h>
#include <unistd.h>
#endif

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

using namespace wsgate;

namespace {

using Clock = std::chrono::steady_clock;

double us_since(Clock::time_point start) {
    return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
}

// `stem` + `i`, appended (GCC 12 misreads `"x" + std::to_string(i)` as an overlapping memcpy).
std::string numbered(std::string_view stem, int i) {
    std::string s{stem};
    s += std::to_string(i);
    return s;
}

/// Accepts every frame and forgets it, counting frames: the Gateway's cost without queueing.
class DiscardTransport final : public Transport {
public:
    SendStatus send(const ConnectionId&, const Payload& p) override {
        ++frames;
        bytes += p->size();
        return SendStatus::ok;
    }
    void send_many(std::span<const ConnectionId> ids, const Payload& p, std::span<SendStatus> out) override {
        frames += ids.size();
        bytes += ids.size() * p->size();
        std::fill(out.begin(), out.end(), SendStatus::ok);
    }
    void close(const ConnectionId&, CloseCode, std::string_view) override {}
    std::size_t frames = 0;
    std::size_t bytes = 0;
};

enum class Kind { memory, sqlite, redis };

#if WSGATE_BENCH_STORES
// Under `taskset -c 1` the forked redis-server would inherit core 1 and could only take turns
// with the benchmark; it may run on any core instead, as a Redis host would have its own.
void release_affinity(pid_t pid) {
    cpu_set_t all;
    CPU_ZERO(&all);
    const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    for (long c = 0; c < online && c < CPU_SETSIZE; ++c) CPU_SET(c, &all);
    (void)::sched_setaffinity(pid, sizeof all, &all);
}

test::RedisServer& redis() {
    static test::RedisServer server;
    static const bool moved = (release_affinity(server.pid()), true);
    (void)moved;
    return server;
}

test::TempDir& tmp() {
    static test::TempDir dir{"wsgate-bench-delivery"};
    return dir;
}
#endif

std::shared_ptr<ConnectionStore> make_store(Kind k) {
    static int n = 0;
    ++n;
    switch (k) {
        case Kind::memory: return std::make_shared<InMemoryConnectionStore>();
#if WSGATE_BENCH_STORES
        case Kind::sqlite: return std::make_shared<SqliteConnectionStore>(tmp().file(numbered("d", n) + ".db"));
        case Kind::redis: {
            RedisStoreSettings s;
            s.endpoint.host = redis().host();
            s.endpoint.port = redis().port();
            s.key_prefix = numbered("d", n) + ":";
            return std::make_shared<RedisConnectionStore>(s);
        }
#else
        default: break;
#endif
    }
    return nullptr;
}

Principal user(int i) {
    Principal p;
    p.kind = PrincipalKind::user;
    p.user_id = numbered("user-", i / 2);
    p.device_id = numbered("device-", i);
    return p;
}

/// A Gateway on one store: topics `hist:*` keep 1,000 publications, `pres:*` have presence,
/// everything else is a plain topic. Null gateway (and `why`) when the store keeps no streams.
struct World {
    std::shared_ptr<ConnectionStore> store;
    std::shared_ptr<DiscardTransport> transport = std::make_shared<DiscardTransport>();
    std::unique_ptr<Gateway> gw;
    std::string why;

    explicit World(Kind k) : store(make_store(k)) {
        if (!store) {
            why = "store not built";
            return;
        }
        if (!store->supports_streams()) {
            why = "this store keeps no topic streams in this build";
            return;
        }
        GatewaySettings s;
        s.node_id = "bench";
        s.rate_per_second = 0;
        s.max_connections_per_user = 0;
        TopicRule hist, pres, plain;
        hist.pattern = "hist:*";
        hist.history_size = 1000;
        pres.pattern = "pres:*";
        pres.presence = true;
        plain.pattern = "*";
        s.router.topic_rules = {hist, pres, plain};
        gw = std::make_unique<Gateway>(s, store, transport, std::make_shared<AnonymousAuthorizer>());
    }

    ConnectionId connect(int i) {
        ConnectRequest rq;
        rq.connection_id = numbered("c", i);
        return gw->on_connect(rq, user(i)).id;
    }
};

Envelope score(int n) { return Envelope{"score"}.data({{"gameId", "g1"}, {"player", "p7"}, {"score", n}}); }

// 1. Publish of one envelope to 10 subscribers, topic with a 1,000-entry history vs a plain topic.
void BM_publish_history(benchmark::State& state, Kind k) {
    World w{k};
    if (!w.gw) {
        state.SkipWithError(w.why.c_str());
        return;
    }
    for (int i = 0; i < 10; ++i) {
        const auto id = w.connect(i);
        // Through the Gateway: over a shared store a node delivers from its own index.
        const auto rec = w.store->get(id);
        if (!rec || w.gw->subscribe(*rec, "hist:room").error || w.gw->subscribe(*rec, "plain:room").error) {
            state.SkipWithError("subscribe failed");
            return;
        }
    }
    const auto hist = Audience::topic("hist:room");
    const auto plain = Audience::topic("plain:room");
    // Fill the history first: the steady state trims one entry per append.
    for (int i = 0; i < 1000; ++i) (void)w.gw->publish(score(i), hist);

    std::vector<double> off, on;
    int n = 0;
    for (auto _ : state) {
        auto t = Clock::now();
        auto a = w.gw->publish(score(++n), plain);
        off.push_back(us_since(t));
        t = Clock::now();
        auto b = w.gw->publish(score(n), hist);
        on.push_back(us_since(t));
        state.SetIterationTime(on.back() / 1e6);
        if (a.delivered != 10 || b.delivered != 10 || b.offset == 0) {
            state.SkipWithError("a publish did not reach its 10 subscribers with a position");
            break;
        }
    }
    state.counters["off_us"] = median(off);
    state.counters["on_us"] = median(on);
    state.counters["on/off"] = median(on) / median(off);
}

// 2. Recovery: subscribe with `since` 1,000 publications back, timed until on_message returns,
// which is right after the last replayed frame was handed to the transport. Baseline: a
// subscribe to the same topic without `since` (its ack carries the stream's position).
void BM_recovery_1000(benchmark::State& state, Kind k) {
    World w{k};
    if (!w.gw) {
        state.SkipWithError(w.why.c_str());
        return;
    }
    const std::string topic = "hist:feed";
    for (int i = 0; i < 1200; ++i) (void)w.gw->publish(score(i), Audience::topic(topic));
    const auto top = w.store->read_stream(topic, 0, 0, TimePoint{}).top;
    const auto id = w.connect(0);
    const std::string plain = R"({"type":"subscribe","topic":")" + topic + R"("})";
    const std::string since = R"({"type":"subscribe","topic":")" + topic + R"(","since":{"offset":)" +
                              std::to_string(top.offset - 1000) + R"(,"epoch":")" + top.epoch + R"("}})";

    std::vector<double> base, rec;
    for (auto _ : state) {
        auto before = w.transport->frames;
        auto t = Clock::now();
        auto e1 = w.gw->on_message(id, plain);
        base.push_back(us_since(t));
        const auto plain_frames = w.transport->frames - before;
        (void)w.gw->unsubscribe(id, topic);

        before = w.transport->frames;
        t = Clock::now();
        auto e2 = w.gw->on_message(id, since);
        rec.push_back(us_since(t));
        const auto since_frames = w.transport->frames - before;
        (void)w.gw->unsubscribe(id, topic);
        state.SetIterationTime(rec.back() / 1e6);
        if (e1 || e2 || plain_frames != 1 || since_frames != 1001) {
            state.SkipWithError("expected 1 ack, then 1 ack + 1,000 replayed frames");
            break;
        }
    }
    state.counters["subscribe_us"] = median(base);
    state.counters["recover_us"] = median(rec);
    state.counters["ratio"] = median(rec) / median(base);
    // (recovery - subscribe) in µs over 1,000 frames is the same number in ns per frame; the
    // median of the per-iteration differences.
    std::vector<double> extra(rec.size());
    for (std::size_t i = 0; i < rec.size(); ++i) extra[i] = rec[i] - base[i];
    state.counters["ns_per_frame"] = median(extra);
}

// 3. Presence of a 10,000-member topic: ConnectionStore::presence() alone, Gateway::presence()
// (which also groups members per user and device) and the `presence` message (which also
// serializes the reply), against resolve(Audience::topic) of the same topic.
void BM_presence_10k(benchmark::State& state, Kind k) {
    World w{k};
    if (!w.gw) {
        state.SkipWithError(w.why.c_str());
        return;
    }
    const std::string topic = "pres:lobby";
    const auto now = SystemClock{}.now();
    for (int i = 0; i < 10'000; ++i) {
        ConnectionRecord r;
        r.id = numbered("m", i);
        r.principal = user(i);
        r.connected_at = r.last_seen = now;
        r.expires_at = now + std::chrono::hours{2};
        r.node_id = "bench";
        w.store->put(r);
        w.store->subscribe(r.id, topic);
    }
    const auto asker = w.connect(99'999);
    const auto reader = user(99'999);
    const std::string msg = R"({"type":"presence","topic":")" + topic + R"("})";
    const auto audience = Audience::topic(topic);

    std::vector<double> res, raw, pre, wire;
    for (auto _ : state) {
        auto t = Clock::now();
        auto r = w.store->resolve(audience);
        res.push_back(us_since(t));
        t = Clock::now();
        auto m = w.store->presence(topic);
        raw.push_back(us_since(t));
        t = Clock::now();
        auto p = w.gw->presence(reader, topic);
        pre.push_back(us_since(t));
        const auto before = w.transport->bytes;
        t = Clock::now();
        auto e = w.gw->on_message(asker, msg);
        wire.push_back(us_since(t));
        state.SetIterationTime(pre.back() / 1e6);
        if (r.ids.size() != 10'000 || m.size() != 10'000 || p.error || p.connections != 10'000 || p.users != 5'000 || e ||
            w.transport->bytes - before < 10'000 * 20) {
            state.SkipWithError("presence or resolve did not see the 10,000 members");
            break;
        }
    }
    state.counters["resolve_us"] = median(res);
    state.counters["store_presence_us"] = median(raw);
    state.counters["presence_us"] = median(pre);
    state.counters["message_us"] = median(wire);
    state.counters["presence/resolve"] = median(pre) / median(res);
    state.counters["message/resolve"] = median(wire) / median(res);
}

}  // namespace

BENCHMARK_CAPTURE(BM_publish_history, memory, Kind::memory)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_recovery_1000, memory, Kind::memory)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_presence_10k, memory, Kind::memory)->UseManualTime()->Unit(benchmark::kMicrosecond);
#if WSGATE_BENCH_STORES
BENCHMARK_CAPTURE(BM_publish_history, sqlite, Kind::sqlite)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_recovery_1000, sqlite, Kind::sqlite)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_presence_10k, sqlite, Kind::sqlite)->Iterations(15)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_publish_history, redis, Kind::redis)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_recovery_1000, redis, Kind::redis)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_presence_10k, redis, Kind::redis)->Iterations(15)->UseManualTime()->Unit(benchmark::kMicrosecond);
#endif

BENCHMARK_MAIN();

// RedisConnectionStore beyond the contract: key layout, native TTL, stale index members,
// several nodes on one server, a server that goes away.

#include "catch.hpp"
#include "raw_redis.hpp"
#include "redis_server.hpp"

#include <wsgate/error.hpp>
#include <wsgate/redis/redis_store.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

using namespace wsgate;
using namespace std::chrono_literals;
using wsgate::test::RawRedis;
using wsgate::test::RedisServer;

namespace {

const TimePoint t0 = from_unix_ms(1'700'000'000'000);

ConnectionRecord rec(const std::string& id, const std::string& user = "u1", const std::string& node = "node-a",
                     Duration ttl = 1h) {
    ConnectionRecord r;
    r.id = id;
    r.principal.kind = PrincipalKind::user;
    r.principal.user_id = user;
    r.principal.device_id = "dev-" + id;
    r.connected_at = t0;
    r.last_seen = t0;
    r.expires_at = t0 + ttl;
    r.node_id = node;
    return r;
}

RedisStoreSettings settings_for(const RedisServer& s, std::string prefix = "wsgate:") {
    RedisStoreSettings st;
    st.endpoint.host = s.host();
    st.endpoint.port = s.port();
    st.key_prefix = std::move(prefix);
    return st;
}

template <class Pred>
bool eventually(Pred p, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (p()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return p();
}

}  // namespace

TEST_CASE("redis store: the documented key layout, with the owning node on every record", "[store][redis]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    RawRedis raw{server.port()};
    CHECK(s.shared());
    CHECK(s.ping());
    s.put(rec("c1", "u1", "node-a"));
    REQUIRE(s.subscribe("c1", "news"));

    CHECK(raw.cmd({"TYPE", "wsgate:conn:c1"}).str == "hash");
    CHECK(raw.cmd({"HGET", "wsgate:conn:c1", "node"}).str == "node-a");
    CHECK(raw.cmd({"HGET", "wsgate:conn:c1", "user"}).str == "u1");
    CHECK(raw.cmd({"SMEMBERS", "wsgate:topic:news"}).items == std::vector<std::string>{"c1"});
    CHECK(raw.cmd({"SMEMBERS", "wsgate:user:u1"}).items == std::vector<std::string>{"c1"});
    CHECK(raw.cmd({"SMEMBERS", "wsgate:subs:c1"}).items == std::vector<std::string>{"news"});
    CHECK(raw.cmd({"ZSCORE", "wsgate:expiry", "c1"}).str == std::to_string(to_unix_ms(t0 + 1h)));
    CHECK(raw.integer({"HEXISTS", "wsgate:meta", "c1"}) == 1);  // liveness + filter fields
    CHECK(raw.cmd({"SMEMBERS", "wsgate:node:node-a"}).items == std::vector<std::string>{"c1"});
    // native TTLs: nothing the store writes per connection is immortal
    for (const char* key : {"wsgate:conn:c1", "wsgate:subs:c1", "wsgate:topic:news", "wsgate:user:u1",
                            "wsgate:node:node-a"}) {
        const auto ttl = raw.integer({"PTTL", key});
        INFO(key);
        CHECK(ttl > 0);
        CHECK(ttl <= 3660000);
    }
    // touch with a new expiry moves the sorted set and the key TTL
    REQUIRE(s.touch("c1", t0 + 30min, t0 + 3h));
    CHECK(raw.cmd({"ZSCORE", "wsgate:expiry", "c1"}).str == std::to_string(to_unix_ms(t0 + 3h)));
    CHECK(raw.integer({"PTTL", "wsgate:conn:c1"}) > 9'000'000);
    CHECK(raw.integer({"PTTL", "wsgate:topic:news"}) > 9'000'000);

    CHECK(s.remove("c1"));
    CHECK(raw.integer({"EXISTS", "wsgate:conn:c1", "wsgate:subs:c1", "wsgate:topic:news", "wsgate:user:u1",
                       "wsgate:node:node-a"}) == 0);
    CHECK(raw.integer({"ZCARD", "wsgate:expiry"}) == 0);
    CHECK(raw.integer({"ZCARD", "wsgate:ids"}) == 0);
    CHECK(raw.integer({"HLEN", "wsgate:meta"}) == 0);
}

TEST_CASE("redis store: records of a node that died vanish by key TTL; stale index members are filtered and removed", "[store][redis]") {
    RedisServer server;
    auto st = settings_for(server);
    st.key_ttl_grace = 200ms;
    RawRedis raw{server.port()};
    RedisConnectionStore live{settings_for(server)};
    {
        RedisConnectionStore dying{st};  // its records live 100 ms + 200 ms grace, and nobody sweeps them
        dying.put(rec("dead-1", "u1", "node-dead", 100ms));
        dying.put(rec("dead-2", "u1", "node-dead", 100ms));
        REQUIRE(dying.subscribe("dead-1", "news"));
    }
    live.put(rec("alive", "u1", "node-live"));
    REQUIRE(live.subscribe("alive", "news"));

    REQUIRE(eventually([&] { return raw.integer({"EXISTS", "wsgate:conn:dead-1", "wsgate:conn:dead-2"}) == 0; }));
    CHECK(raw.integer({"EXISTS", "wsgate:subs:dead-1"}) == 0);
    // the indexes still name them until someone reads
    CHECK(raw.integer({"SCARD", "wsgate:topic:news"}) == 2);
    CHECK(live.subscribers("news") == std::vector<std::string>{"alive"});
    CHECK(raw.integer({"SCARD", "wsgate:topic:news"}) == 1);  // lazily cleaned
    CHECK(live.connections_of_user("u1") == std::vector<std::string>{"alive"});
    CHECK(raw.integer({"SCARD", "wsgate:user:u1"}) == 1);
    CHECK(live.resolve(Audience::everyone()).ids == std::vector<std::string>{"alive"});
    CHECK_FALSE(live.get("dead-1"));
    // expire() cleans what is left and returns only records it could read
    CHECK(live.expire(t0 + 1s).empty());
    CHECK(live.count() == 1);
    CHECK(raw.integer({"ZCARD", "wsgate:expiry"}) == 1);
    CHECK(raw.integer({"HLEN", "wsgate:meta"}) == 1);
}

TEST_CASE("redis store: nodes sharing one server share the view; racing removers across nodes get one true", "[store][redis]") {
    RedisServer server;
    RedisConnectionStore a{settings_for(server)};
    RedisConnectionStore b{settings_for(server)};
    RedisConnectionStore other_app{settings_for(server, "other:")};
    a.put(rec("a-1", "u1", "node-a"));
    b.put(rec("b-1", "u1", "node-b"));
    REQUIRE(b.subscribe("a-1", "news"));  // any node may write any record
    CHECK(a.count() == 2);
    CHECK(b.get("a-1")->node_id == "node-a");
    CHECK(a.get("b-1")->node_id == "node-b");
    auto users = a.connections_of_user("u1");
    std::sort(users.begin(), users.end());
    CHECK(users == std::vector<std::string>{"a-1", "b-1"});
    CHECK(a.subscribers("news") == std::vector<std::string>{"a-1"});
    CHECK(other_app.count() == 0);  // the key prefix separates deployments
    CHECK(other_app.connections_of_user("u1").empty());

    constexpr int n = 200;
    std::vector<ConnectionRecord> many;
    for (int i = 0; i < n; ++i) many.push_back(rec("r" + std::to_string(i), "u2"));
    a.put_many(many);
    CHECK(b.count() == n + 2);
    std::vector<std::atomic<int>> wins(n);
    auto remover = [&](RedisConnectionStore& s) {
        for (int i = 0; i < n; ++i)
            if (s.remove("r" + std::to_string(i))) wins[i].fetch_add(1);
    };
    std::thread ta([&] { remover(a); });
    std::thread tb([&] { remover(b); });
    std::thread tc([&] { remover(a); });
    ta.join();
    tb.join();
    tc.join();
    for (int i = 0; i < n; ++i) CHECK(wins[i].load() == 1);
    CHECK(a.count() == 2);
    std::vector<ConnectionId> ids{"a-1", "b-1", "ghost"};
    CHECK(b.remove_many(ids) == 2);
    CHECK(a.count() == 0);
}

TEST_CASE("redis store: subscribers of a 10k-member topic come back in one round trip", "[store][redis]") {
    RedisServer server;
    auto st = settings_for(server);
    st.pool_size = 1;
    RedisConnectionStore s{st};
    RawRedis raw{server.port()};
    std::vector<ConnectionRecord> batch;
    for (int i = 0; i < 10'000; ++i) {
        batch.push_back(rec("m" + std::to_string(i), "u" + std::to_string(i % 100)));
        if (batch.size() == 1000) {
            s.put_many(batch);
            batch.clear();
        }
    }
    for (int i = 0; i < 10'000; ++i) REQUIRE(s.subscribe("m" + std::to_string(i), "big"));

    const auto evalsha_before = raw.calls("evalsha");
    const auto eval_before = raw.calls("eval");
    const auto smembers_client_before = raw.calls("smembers");
    auto subs = s.subscribers("big");
    CHECK(subs.size() == 10'000);
    CHECK(raw.calls("evalsha") - evalsha_before == 1);  // one request...
    CHECK(raw.calls("eval") - eval_before == 0);
    CHECK(raw.calls("smembers") - smembers_client_before == 1);  // ...whose script read the set once
    auto resolved = s.resolve(Audience::topic("big").requiring("nothing-held"));
    CHECK(resolved.ids.empty());
    CHECK(resolved.filtered == 10'000);
}

TEST_CASE("redis store: a frozen server costs one timeout per retry interval; calls in between fail at once",
          "[store][redis]") {
    RedisServer server;
    auto st = settings_for(server);
    st.endpoint.command_timeout = 300ms;
    st.retry_after = 3s;
    st.pool_size = 1;
    RedisConnectionStore s{st};
    s.put(rec("c1"));
    server.pause();  // SIGSTOP: the socket stays open, nothing answers
    auto message_of = [&](auto fn) -> std::string {
        try {
            fn();
        } catch (const StoreError& e) {
            CHECK(e.code() == make_error_code(store_errc::unavailable));
            return e.what();
        }
        return "no error";
    };
    // The first call waits out the command timeout; the next ones do not try.
    const auto first = message_of([&] { (void)s.get("c1"); });
    CHECK(first.find("retrying") == std::string::npos);
    CHECK(first != "no error");
    CHECK(message_of([&] { (void)s.get("c1"); }).find("retrying shortly") != std::string::npos);
    CHECK(message_of([&] { s.put(rec("c2")); }).find("retrying shortly") != std::string::npos);
    server.resume();
    // After the interval a call tries again and finds the server answering, data intact.
    CHECK(eventually([&] {
        try {
            return s.get("c1").has_value();
        } catch (const StoreError&) {
            return false;
        }
    }));
    CHECK_FALSE(s.get("c2"));
}

TEST_CASE("redis store: a server that goes away gives unavailable, and the store reconnects when it is back", "[store][redis]") {
    RedisServer server;
    auto st = settings_for(server);
    st.endpoint.connect_timeout = 200ms;
    st.endpoint.command_timeout = 500ms;
    RedisConnectionStore s{st};
    s.put(rec("c1"));
    server.stop();
    auto code_of = [&](auto fn) {
        try {
            fn();
        } catch (const StoreError& e) {
            return static_cast<store_errc>(e.code().value());
        }
        return store_errc::not_found;
    };
    CHECK(code_of([&] { (void)s.get("c1"); }) == store_errc::unavailable);
    CHECK(code_of([&] { s.put(rec("c2")); }) == store_errc::unavailable);
    CHECK(code_of([&] { (void)s.count(); }) == store_errc::unavailable);
    CHECK_FALSE(s.ping());
    server.start();  // same port, empty (no persistence in tests)
    CHECK(eventually([&] { return s.ping(); }));
    // Every pooled connection was opened to the old server: none may fail a call on its socket.
    for (std::size_t i = 0; i < 2 * st.pool_size; ++i) CHECK_NOTHROW(s.count());
    s.put(rec("c3"));
    CHECK(s.get("c3"));
    CHECK(s.count() == 1);

    // nothing listens on this port: construction still succeeds, calls fail cleanly
    RedisStoreSettings nowhere = st;
    nowhere.endpoint.port = 1;
    RedisConnectionStore dead{nowhere};
    CHECK(code_of([&] { (void)dead.subscribers("x"); }) == store_errc::unavailable);
}

TEST_CASE("redis store: keys of the wrong type are reported corrupt, not crashed on", "[store][redis]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    RawRedis raw{server.port()};
    raw.cmd({"SET", "wsgate:topic:t", "not a set"});
    raw.cmd({"SET", "wsgate:conn:c9", "not a hash"});
    raw.cmd({"HSET", "wsgate:conn:bad", "id", "bad", "principal", "{not json", "attributes", "{}"});
    auto code_of = [&](auto fn) {
        try {
            fn();
        } catch (const StoreError& e) {
            return static_cast<store_errc>(e.code().value());
        }
        return store_errc::not_found;
    };
    CHECK(code_of([&] { (void)s.subscribers("t"); }) == store_errc::corrupt);
    CHECK(code_of([&] { (void)s.get("c9"); }) == store_errc::corrupt);
    CHECK(code_of([&] { (void)s.get("bad"); }) == store_errc::corrupt);
    // the connection survives the failures
    s.put(rec("ok"));
    CHECK(s.get("ok"));
}

TEST_CASE("redis store: node leases run on the server's clock, so a skewed client clock reaps no live node", "[store][redis][lease]") {
    RedisServer server;
    RedisConnectionStore s{settings_for(server)};
    RawRedis raw{server.port()};
    s.put(rec("c1", "u1", "node-a"));
    // A client clock years behind the server's: the lease still runs from the server's now.
    s.renew_lease("node-a", t0 - std::chrono::hours{24 * 365 * 5}, 1h);
    const auto server_ms = std::stoll(raw.cmd({"TIME"}).items.at(0)) * 1000;
    const auto deadline = std::stoll(raw.cmd({"ZSCORE", "wsgate:leases", "node-a"}).str);
    CHECK(deadline > server_ms + 3'500'000);
    CHECK(deadline < server_ms + 3'700'000);
    // A client clock years ahead reaps nothing either.
    CHECK(s.reap_expired_nodes(t0 + std::chrono::hours{24 * 365 * 50}, 1000) == 0);
    CHECK(s.get("c1"));
    // Once the node stops renewing and its lease runs out, its records and lease go.
    s.renew_lease("node-a", t0, 1ms);
    REQUIRE(eventually([&] { return s.reap_expired_nodes(t0, 1000) == 1; }));
    CHECK_FALSE(s.get("c1"));
    CHECK(raw.integer({"EXISTS", "wsgate:node:node-a", "wsgate:user:u1"}) == 0);
    CHECK(raw.integer({"ZCARD", "wsgate:leases"}) == 0);
}


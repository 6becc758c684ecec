#pragma once
// The ConnectionStore implementations the contract suite runs against.

#include "temp_dir.hpp"

#include <wsgate/memory_store.hpp>
#ifdef WSGATE_TEST_REDIS
#include "redis_cluster.hpp"
#include "redis_server.hpp"
#include <wsgate/redis/redis_store.hpp>
#endif
#ifdef WSGATE_TEST_SQLITE
#include <wsgate/sqlite/sqlite_store.hpp>
#endif
#ifdef WSGATE_TEST_DYNAMODB
#include "dynalite_server.hpp"
#include <wsgate/clock.hpp>
#include <wsgate/dynamodb/dynamodb_store.hpp>
#endif

#include <atomic>
#include <memory>
#include <string>

namespace wsgate::test {

struct MemoryStoreFactory {
    static constexpr const char* name = "memory";
    std::shared_ptr<ConnectionStore> make() { return std::make_shared<InMemoryConnectionStore>(); }
};

#ifdef WSGATE_TEST_SQLITE
struct SqliteStoreFactory {
    static constexpr const char* name = "sqlite";
    TempDir dir{"wsgate-sqlite"};
    int n = 0;
    std::shared_ptr<ConnectionStore> make() {
        return std::make_shared<SqliteConnectionStore>(dir.file("store" + std::to_string(n++) + ".db"));
    }
};

#endif

#ifdef WSGATE_TEST_REDIS
/// One redis-server per test process; each store gets its own key prefix, so tests never share keys.
inline RedisServer& shared_redis() {
    static RedisServer server;
    return server;
}

struct RedisStoreFactory {
    static constexpr const char* name = "redis";
    std::shared_ptr<ConnectionStore> make() {
        static std::atomic<int> counter{0};
        RedisStoreSettings s;
        s.endpoint.host = shared_redis().host();
        s.endpoint.port = shared_redis().port();
        s.key_prefix = "t" + std::to_string(counter++) + ":";
        return std::make_shared<RedisConnectionStore>(s);
    }
};

/// One three-master Redis Cluster per test process, started on first use.
inline RedisCluster& shared_redis_cluster() {
    static RedisCluster cluster{3};
    return cluster;
}

/// The store on a Redis Cluster: every store gets its own prefix, hence its own slot, so the
/// stores of one run spread over the three masters.
struct RedisClusterStoreFactory {
    static constexpr const char* name = "redis-cluster";
    std::shared_ptr<ConnectionStore> make() {
        static std::atomic<int> counter{0};
        RedisStoreSettings s;
        s.endpoint.host = shared_redis_cluster().host();
        s.endpoint.port = shared_redis_cluster().port();
        s.endpoint.cluster = true;
        s.key_prefix = "c" + std::to_string(counter++) + ":";
        return std::make_shared<RedisConnectionStore>(s);
    }
};

#endif

#ifdef WSGATE_TEST_DYNAMODB
/// One dynalite per test process; each store gets its own table, so tests never share items.
inline DynaliteServer& shared_dynalite() {
    static DynaliteServer server;
    return server;
}

struct DynamoDbStoreFactory {
    static constexpr const char* name = "dynamodb";
    std::shared_ptr<ConnectionStore> make() {
        static std::atomic<int> counter{0};
        DynamoDbStoreSettings s;
        s.table = "contract-" + std::to_string(counter++);
        s.endpoint = shared_dynalite().endpoint();
        s.region = "us-east-1";
        s.credentials = aws::Credentials{"test-key", "test-secret", {}};
        // The suite's records live around 2023-11-14 (t0): the store's liveness clock stands
        // before them, as if the suite ran then (`now` passed to calls is honoured as given).
        s.clock = std::make_shared<ManualClock>(from_unix_ms(1'600'000'000'000));
        create_dynamodb_table(s);
        return std::make_shared<DynamoDbConnectionStore>(s);
    }
};
#endif

}  // namespace wsgate::test

// make_store()/make_bus(): specs build the stores the contract covers; bad specs are refused clearly.

#include "catch.hpp"
#include "temp_dir.hpp"

#include <wsgate/stores/factory.hpp>
#include <wsgate/memory_store.hpp>

#ifdef WSGATE_TEST_REDIS
#include "redis_server.hpp"
#include <wsgate/redis/redis_bus.hpp>
#include <wsgate/redis/redis_store.hpp>
#endif
#ifdef WSGATE_TEST_SQLITE
#include <wsgate/sqlite/sqlite_store.hpp>
#endif

#include <stdexcept>

using namespace wsgate;

TEST_CASE("factory: memory, and specs that are refused with invalid_argument", "[store][factory]") {
    auto m = make_store("memory");
    REQUIRE(m);
    CHECK(dynamic_cast<InMemoryConnectionStore*>(m.get()) != nullptr);
    CHECK_FALSE(m->shared());
    CHECK(make_bus("none") == nullptr);
    CHECK(make_bus("") == nullptr);
    CHECK(store_backend_available("memory"));
    CHECK_FALSE(store_backend_available("mongodb"));

    for (const char* spec : {"", "Memory", "memory:", "sqlite:", "sqlite", "mongodb://x", "redis://", "redis://:6379",
                             "redis://host:0", "redis://host:65536", "redis://host:12ab", "redis://host:6379/x",
                             "redis://host?prefix", "redis://host?colour=red", "redis://[::1", "redis://host?pool=0",
                             "redis://host?timeout_ms=0", "redis://host?retry_ms=-1", "redis://host?timeout_ms=1s"}) {
        INFO(spec);
        CHECK_THROWS_AS(make_store(spec), std::invalid_argument);
    }
    for (const char* spec : {"memory", "redis://", "redis://h?prefix=x", "sqlite:/tmp/x.db", "redis://h?channel=", "redis://h?timeout_ms=0", "redis://h?retry_ms=5",
                             "redis://h?channels=", "redis://h?channels=per-topic"}) {
        INFO(spec);
        CHECK_THROWS_AS(make_bus(spec), std::invalid_argument);
    }
}

#ifdef WSGATE_TEST_SQLITE
TEST_CASE("factory: sqlite:PATH opens a SQLite store", "[store][factory][sqlite]") {
    wsgate::test::TempDir dir;
    auto s = make_store("sqlite:" + dir.file("f.db"));
    auto* sq = dynamic_cast<SqliteConnectionStore*>(s.get());
    REQUIRE(sq != nullptr);
    CHECK(sq->path() == dir.file("f.db"));
    CHECK(store_backend_available("sqlite"));
}
#endif

#ifdef WSGATE_TEST_REDIS
TEST_CASE("factory: redis:// URLs build a Redis store and bus", "[store][factory][redis]") {
    wsgate::test::RedisServer server;
    const auto base = "redis://127.0.0.1:" + std::to_string(server.port());
    auto s = make_store(base + "/0?prefix=app1:&pool=2");
    auto* rs = dynamic_cast<RedisConnectionStore*>(s.get());
    REQUIRE(rs != nullptr);
    CHECK(rs->settings().key_prefix == "app1:");
    CHECK(rs->settings().pool_size == 2);
    auto timed = make_store(base + "?timeout_ms=250&retry_ms=0");
    CHECK(dynamic_cast<RedisConnectionStore*>(timed.get())->settings().endpoint.command_timeout ==
          std::chrono::milliseconds(250));
    CHECK(dynamic_cast<RedisConnectionStore*>(timed.get())->settings().endpoint.connect_timeout ==
          std::chrono::milliseconds(250));
    CHECK(dynamic_cast<RedisConnectionStore*>(timed.get())->settings().retry_after == std::chrono::milliseconds(0));
    CHECK(rs->settings().endpoint.port == server.port());
    CHECK(s->shared());
    CHECK(rs->ping());

    auto b = make_bus(base + "?channel=c1");
    auto* rb = dynamic_cast<RedisBus*>(b.get());
    REQUIRE(rb != nullptr);
    CHECK(rb->settings().channel == "c1");
    CHECK(dynamic_cast<RedisBus*>(make_bus(base, "override").get())->settings().channel == "override");
    CHECK(dynamic_cast<RedisBus*>(make_bus(base).get())->settings().channel == "wsgate:bus");
    CHECK(dynamic_cast<RedisBus*>(make_bus(base).get())->settings().per_topic_channels);
    CHECK(dynamic_cast<RedisBus*>(make_bus(base + "?channels=routed").get())->settings().per_topic_channels);
    CHECK_FALSE(dynamic_cast<RedisBus*>(make_bus(base + "?channels=single").get())->settings().per_topic_channels);
    CHECK(dynamic_cast<RedisBus*>(make_bus(base + "?timeout_ms=300").get())->settings().endpoint.command_timeout ==
          std::chrono::milliseconds(300));

    auto v6 = make_store("redis://:secret@[::1]:7000/3");
    auto* r6 = dynamic_cast<RedisConnectionStore*>(v6.get());
    REQUIRE(r6 != nullptr);
    CHECK(r6->settings().endpoint.host == "::1");
    CHECK(r6->settings().endpoint.port == 7000);
    CHECK(r6->settings().endpoint.database == 3);
    CHECK(r6->settings().endpoint.password == "secret");
    CHECK(store_backend_available("redis"));
}
#endif

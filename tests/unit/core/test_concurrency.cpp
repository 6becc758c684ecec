#include "catch.hpp"
#include "gateway_fixture.hpp"

#include <atomic>
#include <thread>

using namespace wsgate;
using wsgate::test::GatewayFixture;

TEST_CASE("concurrent connect, subscribe, publish and disconnect", "[gateway][concurrency]") {
    GatewaySettings s;
    s.rate_per_second = 0;
    s.max_connections_per_user = 0;
    s.router.topic_rules = {{"room", "", "chat"}};
    GatewayFixture f{s, 100000};
    constexpr int threads = 4;
    constexpr int per_thread = 200;
    std::atomic<int> published{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            std::vector<ConnectionId> mine;
            for (int i = 0; i < per_thread; ++i) {
                auto id = f.connect("user:u" + std::to_string(t) + ":d" + std::to_string(i % 3) + ":chat");
                if (id.empty()) continue;
                mine.push_back(id);
                f.gw->on_message(id, R"({"type":"subscribe","topic":"room"})");
                f.gw->on_message(id, R"({"type":"publish","topic":"room","data":1})");
                f.gw->publish(Envelope{"tick"}, Audience::topic("room"));
                ++published;
                if (i % 2 == 0) {
                    f.gw->on_disconnect(mine.back());
                    f.gw->end(mine.back(), EndReason::kicked);  // racing a second reason: harmless
                    mine.pop_back();
                }
                if (i % 50 == 0) f.gw->sweep();
            }
        });
    }
    // a reaper thread racing the workers
    std::atomic<bool> stop{false};
    std::thread sweeper([&] {
        while (!stop) {
            f.gw->sweep();
            f.gw->publish(Envelope{"all"}, Audience::everyone());
        }
    });
    for (auto& th : pool) th.join();
    stop = true;
    sweeper.join();

    const auto& m = f.gw->metrics();
    const auto expected_live = static_cast<std::size_t>(threads * per_thread / 2);
    CHECK(f.store->count() == expected_live);
    CHECK(f.gw->local_count() == expected_live);
    CHECK(m.active_connections == static_cast<std::int64_t>(expected_live));
    CHECK(m.disconnects == static_cast<std::uint64_t>(threads * per_thread / 2));
    CHECK(f.store->subscribers("room").size() == expected_live);
    CHECK(published == threads * per_thread);
}

TEST_CASE("many threads ending one connection: exactly one wins", "[gateway][concurrency][reaper]") {
    for (int round = 0; round < 50; ++round) {
        GatewayFixture f;
        auto id = f.connect();
        std::atomic<int> wins{0};
        std::vector<std::thread> pool;
        for (int t = 0; t < 4; ++t)
            pool.emplace_back([&, t] {
                if (f.gw->end(id, t % 2 ? EndReason::gone : EndReason::idle)) ++wins;
            });
        for (auto& th : pool) th.join();
        REQUIRE(wins == 1);
        REQUIRE(f.gw->metrics().disconnects == 1);
        REQUIRE(f.transport->close_count(id) <= 1);
    }
}

// ReconnectingClient recovering a stream topic against a real wsgate::beast::App over loopback:
// the dropped connection comes back with `since` and receives exactly what it missed, in order;
// a server with a fresh store (a new epoch) makes it report that the host must resync.
#include "catch.hpp"

#include <wsgate/beast/app.hpp>
#include <wsgate/beast/reconnecting_client.hpp>
#include <wsgate/memory_store.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using wsgate::beast::App;
using wsgate::beast::AppSettings;
using wsgate::client::ConnectionState;
using wsgate::client::RecoveryInfo;

constexpr const char* kTopic = "news:1";

AppSettings stream_settings(unsigned short port) {
    AppSettings s;
    s.server.port = port;
    s.handle_signals = false;
    s.server.shutdown_timeout = 2s;
    wsgate::TopicRule news{"news:*", "", "", /*anonymous_read=*/true};
    news.history_size = 100;
    s.gateway.router.topic_rules = {news};
    return s;
}

// An App running on its own thread; the destructor stops it and waits.
struct Running {
    Running(unsigned short port, std::shared_ptr<wsgate::ConnectionStore> store)
        : app(stream_settings(port), std::make_shared<wsgate::AnonymousAuthorizer>(), plugins(std::move(store))),
          done(std::async(std::launch::async, [this] { app.run(); })) {
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (app.port() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
        REQUIRE(app.port() != 0);
    }
    ~Running() { stop(); }
    static wsgate::beast::AppPlugins plugins(std::shared_ptr<wsgate::ConnectionStore> store) {
        wsgate::beast::AppPlugins p;
        p.store = std::move(store);
        return p;
    }
    void stop() {
        app.stop();
        if (done.valid()) done.wait();
    }
    std::string ws_url() const { return "ws://127.0.0.1:" + std::to_string(app.port()) + "/ws"; }
    std::vector<wsgate::ConnectionId> subscribers() { return app.gateway().store().subscribers(kTopic); }
    void publish(int n) { app.publish(wsgate::Envelope{"activity"}.data(n), wsgate::Audience::topic(kTopic)); }

    App app;
    std::future<void> done;
};

bool eventually(const std::function<bool()>& ok, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (ok()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return ok();
}

// What the host saw: the `data` of each publication on the topic, in order, and the recovery reports.
struct Host {
    std::mutex mu;
    std::vector<int> received;
    std::vector<RecoveryInfo> recoveries;
    std::size_t non_json = 0;

    void attach(wsgate::beast::ReconnectingClient& c) {
        c.on_message([this](std::string_view m) {
            const auto j = json::parse(m, nullptr, false);
            std::lock_guard lock(mu);
            if (!j.is_object()) {
                ++non_json;
                return;
            }
            if (j.value("topic", "") == kTopic && j.value("type", "") == "activity" && j.contains("data") &&
                j["data"].is_number_integer())
                received.push_back(j["data"].get<int>());
        });
        c.on_recovery([this](const RecoveryInfo& r) {
            std::lock_guard lock(mu);
            recoveries.push_back(r);
        });
    }
    std::size_t count() {
        std::lock_guard lock(mu);
        return received.size();
    }
    std::vector<int> seen() {
        std::lock_guard lock(mu);
        return received;
    }
    std::vector<RecoveryInfo> reports() {
        std::lock_guard lock(mu);
        return recoveries;
    }
    std::size_t not_json() {
        std::lock_guard lock(mu);
        return non_json;
    }
};

wsgate::beast::ReconnectingClientSettings quick_reconnect() {
    wsgate::beast::ReconnectingClientSettings s;
    s.machine.reconnect.initial_delay = 300ms;
    s.machine.reconnect.max_delay = 1s;
    s.machine.reconnect.max_jitter = 0ms;
    s.machine.reconnect.max_attempts = 50;
    return s;
}

std::vector<int> range(int from, int to) {
    std::vector<int> v;
    for (int i = from; i <= to; ++i) v.push_back(i);
    return v;
}

}  // namespace

TEST_CASE("a client whose connection was dropped receives exactly the publications it missed, in order",
          "[beast][client][recovery]") {
    auto store = std::make_shared<wsgate::InMemoryConnectionStore>();
    Running server{0, store};
    wsgate::beast::ReconnectingClient client{server.ws_url(), quick_reconnect()};
    Host host;
    host.attach(client);
    client.subscribe(kTopic);
    client.start();
    REQUIRE(eventually([&] { return server.subscribers().size() == 1; }));

    for (int i = 1; i <= 3; ++i) server.publish(i);
    REQUIRE(eventually([&] { return host.count() == 3; }));
    const auto before = client.position(kTopic);
    REQUIRE(before);
    CHECK(before->offset == 3);
    CHECK_FALSE(before->epoch.empty());
    CHECK(host.reports().empty());  // a first subscription reports no recovery

    // The server drops the connection; what is published now reaches nobody until the client
    // is back (it waits 300 ms before reconnecting).
    const auto gone = server.subscribers();
    REQUIRE(gone.size() == 1);
    REQUIRE(server.app.gateway().end(gone[0], wsgate::EndReason::kicked));
    for (int i = 4; i <= 7; ++i) server.publish(i);

    REQUIRE(eventually([&] { return host.count() >= 7; }));
    REQUIRE(eventually([&] { return client.state() == ConnectionState::connected; }));
    server.publish(8);  // live again after the replay
    REQUIRE(eventually([&] { return host.count() >= 8; }));
    std::this_thread::sleep_for(100ms);  // anything extra (a duplicate) would arrive by now

    CHECK(host.seen() == range(1, 8));
    CHECK(client.connections_opened() == 2);
    const auto reports = host.reports();
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].topic == kTopic);
    CHECK(reports[0].recovered);
    CHECK(reports[0].missed == 4);
    CHECK(reports[0].reason.empty());
    CHECK(reports[0].resumed_from == "since");
    CHECK(reports[0].position.epoch == before->epoch);
    CHECK(client.position(kTopic) == wsgate::StreamPosition{8, before->epoch});
    CHECK(client.duplicates_dropped() == 0);
    client.stop();
}

TEST_CASE("a server that lost the stream's history (a new epoch) makes the client report a resync",
          "[beast][client][recovery]") {
    auto first_store = std::make_shared<wsgate::InMemoryConnectionStore>();
    auto first = std::make_unique<Running>(0, first_store);
    const auto port = first->app.port();
    wsgate::beast::ReconnectingClient client{first->ws_url(), quick_reconnect()};
    Host host;
    host.attach(client);
    client.subscribe(kTopic);
    client.start();
    REQUIRE(eventually([&] { return first->subscribers().size() == 1; }));
    for (int i = 1; i <= 2; ++i) first->publish(i);
    REQUIRE(eventually([&] { return host.count() == 2; }));
    const auto before = client.position(kTopic);
    REQUIRE(before);
    CHECK(before->offset == 2);

    // Restart on the same port with a fresh in-memory store: the stream starts a new epoch.
    first.reset();
    REQUIRE(eventually([&] { return client.state() != ConnectionState::connected; }));
    Running second{port, std::make_shared<wsgate::InMemoryConnectionStore>()};
    REQUIRE(eventually([&] { return host.reports().size() == 1; }, 15s));
    const auto r = host.reports()[0];
    CHECK(r.topic == kTopic);
    CHECK_FALSE(r.recovered);
    CHECK(r.reason == "epoch_changed");
    CHECK(r.missed == 0);
    CHECK(r.position.epoch != before->epoch);
    // The client continues from the new stream's position, and the next resubscription would
    // resume from there.
    REQUIRE(eventually([&] { return client.position(kTopic) && client.position(kTopic)->epoch == r.position.epoch; }));
    CHECK(client.position(kTopic)->offset == r.position.offset);

    REQUIRE(eventually([&] { return second.subscribers().size() == 1; }));
    second.publish(3);
    REQUIRE(eventually([&] { return host.count() == 3; }));
    CHECK(host.seen() == range(1, 3));
    const auto after = client.position(kTopic);
    REQUIRE(after);
    CHECK(after->offset == 1);
    CHECK_FALSE(after->epoch.empty());
    CHECK(after->epoch != before->epoch);
    client.stop();
}

TEST_CASE("frames that are not JSON or carry mistyped positions reach the host and do not stop the client",
          "[beast][client][recovery]") {
    auto store = std::make_shared<wsgate::InMemoryConnectionStore>();
    Running server{0, store};
    wsgate::beast::ReconnectingClient client{server.ws_url(), quick_reconnect()};
    Host host;
    host.attach(client);
    client.subscribe(kTopic);
    client.start();
    REQUIRE(eventually([&] { return server.subscribers().size() == 1; }));
    server.publish(1);
    REQUIRE(eventually([&] { return host.count() == 1; }));

    const auto id = server.subscribers().at(0);
    auto& transport = server.app.gateway().transport();
    REQUIRE(client.position(kTopic));
    const std::string epoch = client.position(kTopic)->epoch;
    for (const std::string& frame :
         {std::string{"not json \"offset\""}, std::string{R"({"topic":"news:1","offset":)"},
          R"({"type":"activity","topic":"news:1","offset":"1","epoch":")" + epoch + R"(","data":100})",
          R"({"type":"activity","topic":"news:1","offset":-5,"epoch":")" + epoch + R"(","data":101})",
          std::string{R"({"type":"ack","action":"subscribe","topic":"news:1","recovered":"yes","position":7})"}})
        transport.send(id, wsgate::make_payload(frame));
    // A replayed copy of publication 1 is a duplicate and is dropped.
    transport.send(id, wsgate::make_payload(R"({"type":"activity","topic":"news:1","data":1,"offset":1,"epoch":")" +
                                            epoch + R"("})"));
    server.publish(2);
    REQUIRE(eventually([&] { return host.count() >= 4; }));
    std::this_thread::sleep_for(100ms);
    CHECK(host.seen() == std::vector<int>{1, 100, 101, 2});
    CHECK(host.not_json() == 2);
    CHECK(host.reports().empty());
    CHECK(client.duplicates_dropped() == 1);
    CHECK(client.state() == ConnectionState::connected);
    CHECK(client.position(kTopic) == wsgate::StreamPosition{2, epoch});
    client.stop();
}

// ReconnectingClient recovering a stream topic against a real wsgate::beast::App over loopback:
// the dropped connection comes back with `since` and receives exactly what it missed, in order;
// a server with a fresh store (a new epoch) makes it report that the host must resync. Then the
// client's own recovery: retry() and start() after giving up, slow probes after the cap, the
// per-step deadlines (a handshake never answered, a token provider that hangs), typed handlers.
#include "catch.hpp"

#include <wsgate/beast/app.hpp>
#include <wsgate/beast/reconnecting_client.hpp>
#include <wsgate/memory_store.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <string>
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

namespace {

namespace net = boost::asio;
using net::ip::tcp;
using wsgate::beast::ReconnectingClient;
using wsgate::beast::ReconnectingClientSettings;
using wsgate::beast::ReconnectingClientStatus;

// A loopback port nobody listens on (bound once, then released).
unsigned short free_port() {
    net::io_context io;
    tcp::acceptor a{io, tcp::endpoint{net::ip::make_address("127.0.0.1"), 0}};
    return a.local_endpoint().port();
}

std::string url_of(unsigned short port) { return "ws://127.0.0.1:" + std::to_string(port) + "/ws"; }

// Accepts TCP connections and never says a word: every WebSocket handshake hangs.
struct SilentListener {
    net::io_context io;
    tcp::acceptor acceptor{io, tcp::endpoint{net::ip::make_address("127.0.0.1"), 0}};
    std::vector<std::shared_ptr<tcp::socket>> held;  // io thread only
    std::atomic<int> accepted{0};
    std::thread thread;

    SilentListener() {
        accept();
        thread = std::thread([this] { io.run(); });
    }
    ~SilentListener() {
        io.stop();
        thread.join();
    }
    void accept() {
        auto s = std::make_shared<tcp::socket>(io);
        acceptor.async_accept(*s, [this, s](boost::system::error_code ec) {
            if (ec) return;
            held.push_back(s);
            ++accepted;
            accept();
        });
    }
    unsigned short port() const { return acceptor.local_endpoint().port(); }
};

// Completes WebSocket handshakes and reads every frame, but never answers one.
struct MuteServer {
    net::io_context io;
    tcp::acceptor acceptor{io, tcp::endpoint{net::ip::make_address("127.0.0.1"), 0}};
    std::atomic<int> accepted{0};
    std::mutex mu;
    std::vector<std::string> frames;
    std::thread thread;

    MuteServer() {
        accept();
        thread = std::thread([this] { io.run(); });
    }
    ~MuteServer() {
        io.stop();
        thread.join();
    }
    void accept() {
        acceptor.async_accept([this](boost::system::error_code ec, tcp::socket sock) {
            if (ec) return;
            auto ws = std::make_shared<boost::beast::websocket::stream<tcp::socket>>(std::move(sock));
            ws->async_accept([this, ws](boost::system::error_code e) {
                if (e) return;
                ++accepted;
                read(ws, std::make_shared<boost::beast::flat_buffer>());
            });
            accept();
        });
    }
    void read(std::shared_ptr<boost::beast::websocket::stream<tcp::socket>> ws,
              std::shared_ptr<boost::beast::flat_buffer> buf) {
        ws->async_read(*buf, [this, ws, buf](boost::system::error_code ec, std::size_t) {
            if (ec) return;
            {
                std::lock_guard lock(mu);
                frames.push_back(boost::beast::buffers_to_string(buf->data()));
            }
            buf->consume(buf->size());
            read(ws, buf);
        });
    }
    unsigned short port() const { return acceptor.local_endpoint().port(); }
    std::vector<std::string> received() {
        std::lock_guard lock(mu);
        return frames;
    }
};

// Fast backoff and deadlines: a whole outage plays out in well under a second.
ReconnectingClientSettings fast(std::size_t max_attempts, std::chrono::milliseconds probe) {
    ReconnectingClientSettings s;
    s.machine.reconnect.initial_delay = 50ms;
    s.machine.reconnect.max_delay = 100ms;
    s.machine.reconnect.max_jitter = 0ms;
    s.machine.reconnect.max_attempts = max_attempts;
    s.machine.probe_interval = probe;
    s.connect_timeout = 500ms;
    s.handshake_timeout = 500ms;
    s.token_timeout = 500ms;
    s.subscribe_ack_timeout = 1s;
    return s;
}

// Every status the client published, for checking the failures it went through.
struct StatusLog {
    std::mutex mu;
    std::vector<ReconnectingClientStatus> seen;

    void attach(ReconnectingClient& c) {
        c.on_status([this](const ReconnectingClientStatus& s) {
            std::lock_guard lock(mu);
            seen.push_back(s);
        });
    }
    bool saw_failure(const std::string& text) {
        std::lock_guard lock(mu);
        for (const auto& s : seen)
            if (s.last_failure == text) return true;
        return false;
    }
};

}  // namespace

TEST_CASE("after giving up, retry() reconnects at once with a fresh backoff", "[beast][client][retry]") {
    const auto port = free_port();
    ReconnectingClient client{url_of(port), fast(2, 0ms)};
    client.start();
    REQUIRE(eventually([&] { return client.status().gave_up; }, 5s));
    auto s = client.status();
    CHECK(s.state == ConnectionState::disconnected);
    CHECK_FALSE(s.probing);
    CHECK(s.polling);
    CHECK(s.attempt == 2);
    CHECK(s.max_attempts == 2);
    CHECK_FALSE(s.next_attempt_at);
    CHECK(s.last_failure.rfind("TCP connect failed: ", 0) == 0);
    CHECK(client.should_poll());

    Running server{port, std::make_shared<wsgate::InMemoryConnectionStore>()};
    std::this_thread::sleep_for(200ms);  // no probing: it stays given up
    CHECK(client.state() == ConnectionState::disconnected);
    client.retry();
    REQUIRE(eventually([&] { return client.state() == ConnectionState::connected; }, 5s));
    s = client.status();
    CHECK_FALSE(s.gave_up);
    CHECK(s.attempt == 0);
    CHECK(s.last_failure.empty());
    CHECK(s.connections_opened == 1);
    CHECK_FALSE(client.should_poll());
    client.stop();
}

TEST_CASE("after giving up, start() reconnects; after stop(), start() runs again", "[beast][client][retry]") {
    const auto port = free_port();
    ReconnectingClient client{url_of(port), fast(1, 0ms)};
    client.start();
    REQUIRE(eventually([&] { return client.status().gave_up; }, 5s));
    Running server{port, std::make_shared<wsgate::InMemoryConnectionStore>()};
    client.start();
    REQUIRE(eventually([&] { return client.state() == ConnectionState::connected; }, 5s));
    client.stop();
    CHECK(client.state() == ConnectionState::disconnected);
    client.start();
    REQUIRE(eventually([&] { return client.state() == ConnectionState::connected; }, 5s));
    CHECK(client.connections_opened() == 2);
    client.stop();
}

TEST_CASE("after the cap, probes bring the client back by itself once a server listens", "[beast][client][probe]") {
    const auto port = free_port();
    ReconnectingClient client{url_of(port), fast(1, 150ms)};
    StatusLog log;
    log.attach(client);
    client.subscribe(kTopic);
    client.start();
    REQUIRE(eventually([&] { return client.status().gave_up; }, 5s));
    CHECK(client.status().probing);
    CHECK(client.status().next_attempt_at);

    Running server{port, std::make_shared<wsgate::InMemoryConnectionStore>()};
    REQUIRE(eventually([&] { return client.state() == ConnectionState::connected; }, 5s));
    REQUIRE(eventually([&] { return server.subscribers().size() == 1; }, 5s));  // re-subscribed
    const auto s = client.status();
    CHECK_FALSE(s.gave_up);
    CHECK_FALSE(s.probing);
    CHECK(client.connections_opened() == 1);
    client.stop();
}

TEST_CASE("a server that never answers the handshake fails each attempt in time and the backoff goes on",
          "[beast][client][deadline]") {
    SilentListener silent;
    auto settings = fast(50, 0ms);
    settings.handshake_timeout = 150ms;
    ReconnectingClient client{url_of(silent.port()), settings};
    StatusLog log;
    log.attach(client);
    const auto t0 = std::chrono::steady_clock::now();
    client.start();
    REQUIRE(eventually([&] { return silent.accepted.load() >= 3; }, 5s));
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);  // 3 × (150 ms + backoff ≤ 100 ms), with slack
    CHECK(log.saw_failure("handshake timed out"));
    const auto s = client.status();
    CHECK(s.attempt >= 2);
    CHECK(s.connections_opened == 0);
    CHECK_FALSE(s.gave_up);
    client.stop();
}

TEST_CASE("a token provider that hangs past token_timeout fails that attempt and the next one proceeds",
          "[beast][client][deadline][token]") {
    Running server{0, std::make_shared<wsgate::InMemoryConnectionStore>()};
    auto settings = fast(10, 0ms);
    settings.token_timeout = 100ms;
    settings.machine.reconnect.initial_delay = 300ms;  // the hung call has returned by the next attempt
    settings.machine.reconnect.max_delay = 300ms;
    ReconnectingClient client{server.ws_url(), settings};
    StatusLog log;
    log.attach(client);
    std::atomic<int> calls{0};
    client.set_token_provider([&] {
        if (++calls == 1) std::this_thread::sleep_for(250ms);  // a frozen token endpoint
        return std::string{"tok"};
    });
    client.start();
    REQUIRE(eventually([&] { return client.state() == ConnectionState::connected; }, 5s));
    CHECK(log.saw_failure("token request timed out"));
    CHECK(calls.load() == 2);
    CHECK(client.connections_opened() == 1);
    CHECK(client.status().last_failure.empty());
    client.stop();
}

TEST_CASE("a typed handler receives its type; other messages go to on_message", "[beast][client][dispatch]") {
    Running server{0, std::make_shared<wsgate::InMemoryConnectionStore>()};
    ReconnectingClient client{server.ws_url(), quick_reconnect()};
    std::mutex mu;
    std::vector<int> typed;
    std::vector<std::string> others;
    client.on("activity", [&](const json& m) {
        std::lock_guard lock(mu);
        typed.push_back(m.at("data").get<int>());
    });
    client.on_message([&](std::string_view m) {
        const auto j = json::parse(m, nullptr, false);
        std::lock_guard lock(mu);
        others.push_back(j.is_object() ? j.value("type", std::string{"?"}) : std::string{"not json"});
    });
    client.subscribe(kTopic);
    client.start();
    REQUIRE(eventually([&] { return server.subscribers().size() == 1; }));
    server.publish(1);
    server.app.publish(wsgate::Envelope{"notice"}.data("hello"), wsgate::Audience::topic(kTopic));
    server.publish(2);
    REQUIRE(eventually([&] {
        std::lock_guard lock(mu);
        return typed.size() == 2 && others.size() >= 2;
    }));
    std::lock_guard lock(mu);
    CHECK(typed == std::vector<int>{1, 2});
    CHECK(std::find(others.begin(), others.end(), "activity") == others.end());
    CHECK(std::find(others.begin(), others.end(), "ack") != others.end());  // the subscribe ack
    CHECK(std::find(others.begin(), others.end(), "notice") != others.end());
    client.stop();
}

TEST_CASE("a subscribe never acknowledged fails the connection, and the backoff keeps growing",
          "[beast][client][deadline]") {
    MuteServer mute;
    auto settings = fast(50, 0ms);
    settings.subscribe_ack_timeout = 100ms;
    settings.machine.heartbeat_enabled = false;
    ReconnectingClient client{url_of(mute.port()), settings};
    StatusLog log;
    log.attach(client);
    client.subscribe(kTopic);
    client.start();
    REQUIRE(eventually([&] { return client.connections_opened() >= 3; }, 5s));
    CHECK(log.saw_failure("subscribe to 'news:1' not acknowledged in time"));
    // Opened sockets that never got their ack are failed attempts: the count is not reset.
    REQUIRE(eventually([&] { return client.status().attempt >= 2; }, 5s));
    const auto frames = mute.received();
    REQUIRE_FALSE(frames.empty());
    const auto first = json::parse(frames.front(), nullptr, false);
    CHECK(first.value("type", "") == "subscribe");
    CHECK(first.value("topic", "") == kTopic);
    CHECK(first.contains("ref"));
    client.stop();
}

TEST_CASE("with subscribe_ack_timeout 0 a server that sends no acks keeps the connection", "[beast][client][deadline]") {
    MuteServer mute;
    auto settings = fast(50, 0ms);
    settings.subscribe_ack_timeout = 0ms;
    settings.machine.heartbeat_enabled = false;
    ReconnectingClient client{url_of(mute.port()), settings};
    client.subscribe(kTopic);
    client.start();
    REQUIRE(eventually([&] { return !mute.received().empty(); }, 5s));
    std::this_thread::sleep_for(200ms);
    CHECK(client.state() == ConnectionState::connected);
    CHECK(client.connections_opened() == 1);
    CHECK(client.status().attempt == 0);
    CHECK_FALSE(json::parse(mute.received().front()).contains("ref"));
    client.stop();
}

TEST_CASE("settings that make no sense are refused at construction", "[beast][client]") {
    const auto refused = [](const std::function<void(ReconnectingClientSettings&)>& change) {
        ReconnectingClientSettings s;
        change(s);
        try {
            ReconnectingClient c{"ws://127.0.0.1:1/ws", s};
        } catch (const std::invalid_argument&) {
            return true;
        }
        return false;
    };
    CHECK(refused([](auto& s) { s.token_timeout = 0ms; }));
    CHECK(refused([](auto& s) { s.connect_timeout = -1ms; }));
    CHECK(refused([](auto& s) { s.handshake_timeout = std::chrono::hours{25}; }));
    CHECK(refused([](auto& s) { s.subscribe_ack_timeout = -1ms; }));
    CHECK(refused([](auto& s) { s.token_query_parameter.clear(); }));
    CHECK(refused([](auto& s) { s.machine.probe_interval = -1s; }));
    CHECK_FALSE(refused([](auto& s) { s.subscribe_ack_timeout = 0ms; }));
    CHECK_THROWS_AS(ReconnectingClient("http://127.0.0.1:1/ws"), std::invalid_argument);
    CHECK_THROWS_AS(ReconnectingClient("ws://127.0.0.1:1/ws", {}, nullptr), std::invalid_argument);
}

// wsgate::beast::App over loopback sockets with real WebSocket and HTTP clients: routes, HTTP
// routes, every(), post(), the built-in sweep, stop() and SIGTERM, and set-up errors.
#include "catch.hpp"

#include <wsgate/beast/app.hpp>
#include <wsgate/beast/client.hpp>
#include <wsgate/memory_store.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <future>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace {

using namespace std::chrono_literals;
using wsgate::beast::App;
using wsgate::beast::AppSettings;

AppSettings test_settings() {
    AppSettings s;
    s.server.port = 0;
    s.handle_signals = false;
    s.server.shutdown_timeout = 2s;
    s.gateway.router.topic_rules = {{"news:*", "", "", /*anonymous_read=*/true}};
    return s;
}

std::shared_ptr<wsgate::Authorizer> anonymous() { return std::make_shared<wsgate::AnonymousAuthorizer>(); }

// Runs app.run() on its own thread; the destructor stops it and waits.
struct Running {
    explicit Running(App& a) : app(a), done(std::async(std::launch::async, [&a] { a.run(); })) {
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (app.port() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
        REQUIRE(app.port() != 0);
    }
    ~Running() {
        app.stop();
        if (done.valid()) done.wait();
    }
    // True if run() returned within `timeout` (rethrowing what it threw).
    bool returned(std::chrono::milliseconds timeout) {
        if (done.wait_for(timeout) != std::future_status::ready) return false;
        done.get();
        return true;
    }
    std::string ws_url() const { return "ws://127.0.0.1:" + std::to_string(app.port()) + "/ws"; }

    App& app;
    std::future<void> done;
};

// One HTTP/1.1 request over a fresh loopback connection.
boost::beast::http::response<boost::beast::http::string_body> http_request(unsigned short port,
                                                                           boost::beast::http::verb method,
                                                                           const std::string& target) {
    namespace http = boost::beast::http;
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::socket s{ioc};
    s.connect({boost::asio::ip::make_address("127.0.0.1"), port});
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.keep_alive(false);
    http::write(s, req);
    boost::beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(s, buf, res);
    return res;
}

// The message of the E that `f` throws, or a marker if it throws none.
template <class E, class F>
std::string thrown(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    return "(nothing thrown)";
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

nlohmann::json next_json(wsgate::beast::Client& c) {
    auto frame = c.receive(5s);
    REQUIRE(frame.has_value());
    return nlohmann::json::parse(*frame);
}

}  // namespace

TEST_CASE("an App route handler answers a real client on the io thread", "[beast][app]") {
    App app{test_settings(), anonymous()};
    std::mutex mu;
    std::thread::id handler_thread;
    app.on(
        "hello",
        [&](wsgate::MessageContext& m) {
            {
                std::lock_guard lk(mu);
                handler_thread = std::this_thread::get_id();
            }
            m.ack({{"greeting", "hi " + m.message().value("name", std::string{})}});
        },
        wsgate::RouteAccess::include_anonymous);
    std::promise<std::thread::id> posted;
    app.post([&] { posted.set_value(std::this_thread::get_id()); });  // queued before run()
    Running r{app};
    auto loop_thread = posted.get_future();
    REQUIRE(loop_thread.wait_for(5s) == std::future_status::ready);
    const auto loop_id = loop_thread.get();
    CHECK(loop_id != std::this_thread::get_id());

    wsgate::beast::Client c;
    REQUIRE_FALSE(c.connect(r.ws_url()));
    REQUIRE_FALSE(c.send(R"({"type":"hello","name":"ann"})"));
    auto reply = next_json(c);
    CHECK(reply["type"] == "ack");
    CHECK(reply["greeting"] == "hi ann");
    std::lock_guard lk(mu);
    CHECK(handler_thread == loop_id);  // one io thread: handlers and post() share it
}

TEST_CASE("an App route needs the access it was registered with", "[beast][app]") {
    App app{test_settings(), anonymous()};
    app.on("secret", [](wsgate::MessageContext& m) { m.ack(); });  // authenticated only
    Running r{app};
    wsgate::beast::Client c;
    REQUIRE_FALSE(c.connect(r.ws_url()));
    REQUIRE_FALSE(c.send(R"({"type":"secret"})"));
    auto reply = next_json(c);
    CHECK(reply["type"] == "error");
    CHECK(reply["status"] == 403);
}

TEST_CASE("an App HTTP route answers a real request; others get 404", "[beast][app]") {
    App app{test_settings(), anonymous()};
    app.http("GET", "/hello", [](const wsgate::beast::HttpRequest& req) {
        return wsgate::beast::HttpResponse::json(200, nlohmann::json{{"q", req.query.count("q") ? req.query.at("q") : ""}}.dump());
    });
    Running r{app};
    namespace http = boost::beast::http;
    auto res = http_request(app.port(), http::verb::get, "/hello?q=42");
    CHECK(res.result_int() == 200);
    CHECK(nlohmann::json::parse(res.body())["q"] == "42");
    CHECK(http_request(app.port(), http::verb::get, "/nothing").result_int() == 404);
    CHECK(http_request(app.port(), http::verb::post, "/hello").result_int() == 405);
}

TEST_CASE("every() fires repeatedly on the io thread and publish() reaches subscribers", "[beast][app]") {
    App app{test_settings(), anonymous()};
    std::atomic<int> ticks{0};
    std::promise<std::thread::id> loop;
    app.post([&] { loop.set_value(std::this_thread::get_id()); });
    std::mutex mu;
    std::thread::id tick_thread;
    app.every(20ms, [&] {
        {
            std::lock_guard lk(mu);
            tick_thread = std::this_thread::get_id();
        }
        const int n = ++ticks;
        app.publish(wsgate::Envelope{"tick"}.data(n), wsgate::Audience::topic("news:1"));
    });
    Running r{app};
    wsgate::beast::Client c;
    REQUIRE_FALSE(c.connect(r.ws_url()));
    REQUIRE_FALSE(c.send(R"({"type":"subscribe","topic":"news:1"})"));
    CHECK(next_json(c)["type"] == "ack");
    int seen = 0;
    for (int i = 0; i < 50 && seen < 3; ++i) {
        auto m = next_json(c);
        if (m["type"] == "tick") ++seen;
    }
    CHECK(seen == 3);
    CHECK(ticks.load() >= 3);
    std::lock_guard lk(mu);
    CHECK(tick_thread == loop.get_future().get());
}

TEST_CASE("every() and post() called from another thread while running run on the io thread", "[beast][app]") {
    App app{test_settings(), anonymous()};
    std::promise<std::thread::id> first;
    app.post([&] { first.set_value(std::this_thread::get_id()); });
    Running r{app};
    const auto loop_id = first.get_future().get();
    std::promise<std::thread::id> later;
    app.post([&] { later.set_value(std::this_thread::get_id()); });
    auto later_id = later.get_future();
    REQUIRE(later_id.wait_for(5s) == std::future_status::ready);
    CHECK(later_id.get() == loop_id);
    std::atomic<int> ticks{0};
    std::atomic<bool> off_loop{false};
    app.every(10ms, [&] {
        if (std::this_thread::get_id() != loop_id) off_loop = true;
        ++ticks;
    });
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (ticks.load() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    CHECK(ticks.load() >= 3);
    CHECK_FALSE(off_loop.load());
}

TEST_CASE("every() keeps firing after its callback threw", "[beast][app]") {
    App app{test_settings(), anonymous()};
    std::atomic<int> calls{0};
    app.every(10ms, [&] {
        ++calls;
        throw std::runtime_error("callback failure");
    });
    Running r{app};
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (calls.load() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    CHECK(calls.load() >= 3);
}

TEST_CASE("App::stop() closes clients with 1001 and run() returns", "[beast][app]") {
    App app{test_settings(), anonymous()};
    std::atomic<bool> on_stop_called{false};
    app.on_stop([&] { on_stop_called = true; });
    Running r{app};
    wsgate::beast::Client c;
    REQUIRE_FALSE(c.connect(r.ws_url()));
    // stop() from an io thread is allowed: it only asks run() to stop.
    app.post([&] { app.stop(); });
    REQUIRE(r.returned(10s));
    REQUIRE(c.wait_closed(5s));
    CHECK(c.close_code() == 1001);
    CHECK(on_stop_called.load());
    CHECK(app.server().connection_count() == 0);
}

TEST_CASE("SIGTERM and SIGINT stop an App that handles signals: clients get 1001, run() returns",
          "[beast][app][signal]") {
    for (int sig : {SIGTERM, SIGINT}) {
        CAPTURE(sig);
        auto s = test_settings();
        s.handle_signals = true;
        App app{s, anonymous()};
        std::atomic<bool> on_stop_called{false};
        app.on_stop([&] { on_stop_called = true; });
        Running r{app};
        wsgate::beast::Client c;
        REQUIRE_FALSE(c.connect(r.ws_url()));
        REQUIRE(std::raise(sig) == 0);
        REQUIRE(r.returned(10s));
        REQUIRE(c.wait_closed(5s));
        CHECK(c.close_code() == 1001);
        CHECK(on_stop_called.load());
    }
}

TEST_CASE("an App keeps its records in the store the host gave it", "[beast][app]") {
    auto store = std::make_shared<wsgate::InMemoryConnectionStore>();
    wsgate::beast::AppPlugins plugins;
    plugins.store = store;
    App app{test_settings(), anonymous(), plugins};
    Running r{app};
    wsgate::beast::Client c;
    REQUIRE_FALSE(c.connect(r.ws_url()));
    CHECK(store->count() == 1);
    REQUIRE_FALSE(c.close());
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (store->count() != 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    CHECK(store->count() == 0);
}

TEST_CASE("the built-in sweep ends a connection whose TTL ran out", "[beast][app]") {
    auto s = test_settings();
    s.gateway.ttl = 300ms;
    s.sweep_interval = 50ms;
    App app{s, anonymous()};
    Running r{app};
    wsgate::beast::Client c;
    REQUIRE_FALSE(c.connect(r.ws_url()));
    CHECK(c.is_open());
    REQUIRE(c.wait_closed(5s));
    CHECK(c.close_code() == 1000);  // EndReason::ttl_expired
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (app.gateway().local_count() != 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(5ms);
    CHECK(app.gateway().local_count() == 0);
}

TEST_CASE("a listen-only client that answers pings outlives the idle timeout; one that does not is ended",
          "[beast][app][liveness]") {
    using wsgate::EndReason;
    auto s = test_settings();
    s.sweep_interval = 50ms;
    s.gateway.inactivity_timeout = 900ms;
    const auto ended = [](App& a, EndReason why) { return a.gateway().metrics().ended_total(why).load(); };
    const auto until = [](auto&& done, std::chrono::milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
        return done();
    };

    SECTION("with keep-alive pings, each pong counts as activity") {
        // A ping after 600 ms of silence: a client answering it is touched well inside 900 ms, while
        // one that never answers reaches the idle timeout (900 ms) before the heartbeat (1.2 s).
        s.server.heartbeat_timeout = 1200ms;
        App app{s, anonymous()};
        Running r{app};
        const auto start = std::chrono::steady_clock::now();
        wsgate::beast::Client listener;  // never sends; its I/O thread reads, so pings are answered
        REQUIRE_FALSE(listener.connect(r.ws_url()));

        // A peer that completes the handshake and then never reads, so it never answers a ping.
        namespace websocket = boost::beast::websocket;
        boost::asio::io_context ioc;
        websocket::stream<boost::asio::ip::tcp::socket> mute{ioc};
        mute.next_layer().connect({boost::asio::ip::make_address("127.0.0.1"), app.port()});
        mute.handshake("127.0.0.1", "/ws");
        REQUIRE(until([&] { return app.gateway().local_count() == 2; }, 2s));

        CHECK(until([&] { return ended(app, EndReason::idle) == 1; }, 5s));
        CHECK(ended(app, EndReason::heartbeat) == 0);
        // The listener stays through more than three idle periods.
        std::this_thread::sleep_until(start + 3s);
        CHECK(listener.is_open());
        CHECK(app.gateway().local_count() == 1);
        CHECK(ended(app, EndReason::idle) == 1);
        CHECK(app.server().metrics().pongs.load() >= 4);
    }
    SECTION("without pings, the same listener is ended as idle") {
        s.server.heartbeat_timeout = 0ms;
        s.gateway.inactivity_timeout = 300ms;
        App app{s, anonymous()};
        Running r{app};
        wsgate::beast::Client listener;
        REQUIRE_FALSE(listener.connect(r.ws_url()));
        REQUIRE(listener.wait_closed(5s));
        CHECK(listener.close_code() == 1001);
        CHECK(ended(app, EndReason::idle) == 1);
    }
}

TEST_CASE("App set-up mistakes are clear errors", "[beast][app]") {
    SECTION("no authorizer") {
        CHECK(contains(thrown<std::invalid_argument>([] { App a(test_settings(), nullptr); }), "authorizer"));
    }
    SECTION("invalid settings name the field") {
        auto s = test_settings();
        s.sweep_interval = 0ms;
        CHECK(contains(thrown<std::invalid_argument>([&] { App a(s, anonymous()); }), "sweep_interval"));
        s = test_settings();
        s.server.queue_capacity = 0;
        CHECK(contains(thrown<std::invalid_argument>([&] { App a(s, anonymous()); }), "queue_capacity"));
        s = test_settings();
        s.server.ws_path = "ws";
        CHECK(contains(thrown<std::invalid_argument>([&] { App a(s, anonymous()); }), "ws_path"));
        s = test_settings();
        s.server.flush_delay = std::chrono::microseconds(-1);
        CHECK(contains(thrown<std::invalid_argument>([&] { App a(s, anonymous()); }), "flush_delay"));
        s.server.flush_delay = std::chrono::seconds(2);
        CHECK(contains(thrown<std::invalid_argument>([&] { App a(s, anonymous()); }), "flush_delay"));
        s = test_settings();
        s.server.thread_cpus = {0, -1};
        CHECK(contains(thrown<std::invalid_argument>([&] { App a(s, anonymous()); }), "thread_cpus"));
        s.server.thread_cpus = {1 << 20};
        CHECK(contains(thrown<std::invalid_argument>([&] { App a(s, anonymous()); }), "thread_cpus"));
    }
    SECTION("an HTTP route registered twice") {
        App app{test_settings(), anonymous()};
        auto h = [](const wsgate::beast::HttpRequest&) { return wsgate::beast::HttpResponse::json(200, "{}"); };
        app.http("GET", "/x", h);
        CHECK(contains(thrown<std::invalid_argument>([&] { app.http("GET", "/x", h); }), "already registered"));
        CHECK_NOTHROW(app.http("POST", "/x", h));
        CHECK_THROWS_AS(app.http("get", "/y", h), std::invalid_argument);
        CHECK_THROWS_AS(app.http("GET", "y", h), std::invalid_argument);
        CHECK_THROWS_AS(app.http("GET", "/z", nullptr), std::invalid_argument);
    }
    SECTION("timers and posts need a function and a positive interval") {
        App app{test_settings(), anonymous()};
        CHECK_THROWS_AS(app.every(0ms, [] {}), std::invalid_argument);
        CHECK_THROWS_AS(app.every(10ms, nullptr), std::invalid_argument);
        CHECK_THROWS_AS(app.post(nullptr), std::invalid_argument);
    }
    SECTION("routes after run() and a second run()") {
        App app{test_settings(), anonymous()};
        Running r{app};
        auto h = [](const wsgate::beast::HttpRequest&) { return wsgate::beast::HttpResponse::json(200, "{}"); };
        CHECK_THROWS_AS(app.http("GET", "/late", h), std::logic_error);
        CHECK_THROWS_AS(app.run(), std::logic_error);
    }
}

TEST_CASE("App::run() throws when the port is taken", "[beast][app]") {
    App first{test_settings(), anonymous()};
    Running r{first};
    auto s = test_settings();
    s.server.port = first.port();
    App second{s, anonymous()};
    CHECK_THROWS_AS(second.run(), std::system_error);
}

TEST_CASE("App::stop() before run() makes run() return at once", "[beast][app]") {
    App app{test_settings(), anonymous()};
    app.stop();
    auto done = std::async(std::launch::async, [&] { app.run(); });
    REQUIRE(done.wait_for(10s) == std::future_status::ready);
    CHECK_NOTHROW(done.get());
}
